"""Data commands: export, import, backup, restore."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from node.cli.errors import CliError
from node.runlock import is_running


def parse_since(text: str) -> float:
    """Parse an ISO date/time (UTC if no zone) or a duration ago (``2h``, ``1d``)."""
    from node.cli.cluster import DURATION, parse_duration

    if DURATION.match(text.strip()):
        return dt.datetime.now(dt.UTC).timestamp() - parse_duration(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected an ISO time or a duration, got {text!r}") \
            from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _open(data: Path) -> Any:
    from node.runtime import open_offline

    return open_offline(data)


def cmd_export(args: argparse.Namespace) -> int:
    """Write this node's signed deltas to a bundle file (USB transfer)."""
    from node.replication.bundle import write_bundle

    ctx, policy = _open(args.data)
    try:
        recipient = None
        if args.to:
            recipient = policy.node_by_id(args.to)
            if recipient is None:
                raise CliError(f"unknown node {args.to}: it must have replicated with this "
                               "centre, or its certificate must be known here")
        data = write_bundle(ctx.store, policy, ctx.trust.me,
                            scopes=set(args.scope) if args.scope else None, since=args.since,
                            recipient=recipient, clear=args.unencrypted)
    finally:
        ctx.store.close()
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    print(f"wrote {args.out} ({len(data)} bytes)"
          + (f", encrypted for {recipient.node_id}" if recipient else ""))
    return 0


def _print_report(report: dict[str, Any]) -> None:
    print(f"from {report['source']}: applied {report['applied']}, "
          f"already present {report['duplicate']}, held back {report['held']}, "
          f"forks quarantined {report['forked']}")
    for reason, n in sorted(report["refused"].items()):
        print(f"refused ({reason}): {n}")
    if report["skipped_scopes"]:
        print(f"skipped scopes this node does not hold: {', '.join(report['skipped_scopes'])}")


def cmd_import(args: argparse.Namespace) -> int:
    """Apply a bundle file with the same verification as the network; idempotent."""
    try:
        data = args.file.read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {args.file}: {e.strerror}", code=2) from e
    if is_running(args.data):
        report = _import_via_api(args.data, data)
    else:
        from node.replication.bundle import import_bundle

        ctx, policy = _open(args.data)
        try:
            rep = import_bundle(ctx.store, policy, ctx.identity, ctx.trust.me, data)
        finally:
            ctx.store.close()
        report = {**vars(rep), "skipped_scopes": sorted(rep.skipped_scopes)}
    _print_report(report)
    return 1 if report["refused"] or report["forked"] else 0


def _import_via_api(data_dir: Path, data: bytes) -> dict[str, Any]:
    from node.config import load_config

    cfg = load_config(data_dir).http
    req = urllib.request.Request(f"http://{cfg.host}:{cfg.port}/api/replication/import/",
                                 data=data, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:  # noqa: S310 - own node
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail", e.reason)
        except ValueError:
            detail = e.reason
        raise CliError(f"the running node refused the bundle: {detail}") from e
    except OSError as e:
        raise CliError(f"the node is running but its API does not answer: {e}") from e


def cmd_backup(args: argparse.Namespace) -> int:
    """Write a consistent hot backup (works while the node serves)."""
    from node.store.backup import backup

    size = backup(args.data, args.out)
    print(f"wrote {args.out} ({size} bytes); it holds the node's keys: keep it safe")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a backup into a new data directory."""
    from node.store.backup import restore

    restore(args.file, args.data, standalone=args.standalone)
    print(f"restored into {args.data}"
          + ("" if args.standalone else "; writes resume once a peer has returned this "
             "node's later changes (use --standalone if this node has no peers)"))
    return 0


def add_commands(sub: Any, data_arg: Any) -> None:
    """Register the data commands on the CLI parser."""
    p = sub.add_parser("export", help="write signed deltas to a bundle file",
                       description=cmd_export.__doc__)
    data_arg(p)
    p.add_argument("--out", type=Path, required=True, help="bundle file to write")
    p.add_argument("--scope", action="append", metavar="SCOPE",
                   help="only this scope (centre code or 'global'; repeatable)")
    p.add_argument("--since", type=parse_since, metavar="WHEN",
                   help="only deltas made since WHEN (ISO time, or a duration ago: 2h, 1d)")
    p.add_argument("--to", metavar="NODE_ID", help="encrypt for this node (e.g. the HQ node)")
    p.add_argument("--unencrypted", action="store_true",
                   help="write centre data in clear (only for a trusted, local transfer)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="apply a bundle file", description=cmd_import.__doc__)
    data_arg(p)
    p.add_argument("file", type=Path, metavar="FILE")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("backup", help="hot backup of a node", description=cmd_backup.__doc__)
    data_arg(p)
    p.add_argument("--out", type=Path, required=True, help="backup file to write (new)")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="restore a backup into a new data directory",
                       description=cmd_restore.__doc__)
    data_arg(p)
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--standalone", action="store_true",
                   help="this node has no peers: allow writes at once")
    p.set_defaults(func=cmd_restore)
