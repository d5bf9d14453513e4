"""``examnode candidates import|export|validate``.

While the node is stopped these work on its data directory directly. While
it runs, ``import`` goes through the node's API (sign in with ``--username``
and ``--password-stdin``), because the running node's writer owns the live
records; ``export`` only reads, so it works either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from node.cli.errors import CliError
from node.runlock import is_running

OPERATOR = "operator"


def _operator() -> Any:
    from node.services.auth.permissions import Principal, Role

    # Whoever can read the data directory already holds every record: the CLI acts as admin.
    return Principal(OPERATOR, Role.ADMIN, None, "")


def _bar(done: int, total: int, width: int = 30) -> None:
    frac = done / total if total else 1.0
    fill = int(frac * width)
    sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {frac:6.1%} {done}/{total}")
    sys.stderr.flush()


def _mapping(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        header, sep, field = item.rpartition("=")
        if not sep or not header or not field:
            raise CliError(f"--map expects 'Header=field', got {item!r}", code=2)
        out[header] = field
    return out


def _print_report(report: dict[str, Any]) -> None:
    print(f"\n{report['status']}: {report['total']} rows: created {report['created']}, "
          f"updated {report['updated']}, unchanged {report['unchanged']}, "
          f"rejected {report['rejected']}" + (" (dry run: nothing written)"
                                              if report["dry_run"] else ""))
    if report.get("ignored_columns"):
        print(f"ignored columns: {', '.join(report['ignored_columns'])}")
    if report.get("detail"):
        print(f"error: {report['detail']}")
    for err in report.get("errors", [])[:20]:
        print(f"  row {err['row']}: {err['error']}")


def cmd_import(args: argparse.Namespace) -> int:
    """Import candidates from an .xlsx or .csv file (upsert by roll number)."""
    try:
        data = args.file.read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {args.file}: {e.strerror}", code=2) from e
    mapping = _mapping(args.map)
    rejected_path = args.rejected or args.file.with_suffix(".rejected.xlsx")
    if is_running(args.data):
        report, rejected = _import_via_api(args, data, mapping)
    else:
        report, rejected = _import_offline(args, data, mapping)
    _print_report(report)
    if rejected:
        rejected_path.write_bytes(rejected)
        print(f"rejected rows with an 'error' column: {rejected_path} (fix and import again)")
    if report["status"] != "done":
        return 1
    return 1 if report["rejected"] else 0


def _import_offline(args: argparse.Namespace, data: bytes,
                    mapping: dict[str, str]) -> tuple[dict[str, Any], bytes | None]:
    from node.runtime import open_offline
    from node.services.candidates.importer import ImportJob

    ctx, _ = open_offline(args.data)
    try:
        center = args.center or (None if ctx.config.node.role == "hq" else ctx.center)
        job = ImportJob("cli", OPERATOR, center, str(args.file), args.dry_run)
        asyncio.run(ctx.candidates.importer.run(
            job, None, data, mapping, progress=lambda j: _bar(j.processed, j.total)))
    finally:
        ctx.store.close()
    return job.report(), job.rejected_xlsx


def _api(base: str, path: str, *, token: str | None = None, data: bytes | None = None,
         ctype: str = "application/json") -> Any:
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=data, headers=headers,  # noqa: S310
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=600) as r:  # noqa: S310 - own node's API
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" \
                else body
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail", e.reason)
        except ValueError:
            detail = e.reason
        raise CliError(f"the node refused: {detail}") from e
    except OSError as e:
        raise CliError(f"the node is running but its API does not answer: {e}") from e


def _import_via_api(args: argparse.Namespace, data: bytes,
                    mapping: dict[str, str]) -> tuple[dict[str, Any], bytes | None]:
    from node.config import load_config

    if not args.username or not args.password_stdin:
        raise CliError("the node is running: sign in with --username and --password-stdin "
                       "(or stop the node)", code=2)
    password = sys.stdin.readline().rstrip("\n")
    cfg = load_config(args.data).http
    base = f"http://{cfg.host}:{cfg.port}"
    token = _api(base, "/api/auth/login/", data=json.dumps(
        {"username": args.username, "password": password}).encode())["access"]
    query = urllib.parse.urlencode({k: v for k, v in {
        "dry_run": str(args.dry_run).lower(), "center": args.center or "",
        "map": json.dumps(mapping) if mapping else ""}.items() if v})
    job = _api(base, f"/api/candidates/import/?{query}", token=token, data=data,
               ctype="application/octet-stream")
    while job["status"] in ("queued", "running"):
        _bar(job["processed"], job["total"])
        time.sleep(0.5)
        job = _api(base, f"/api/candidates/import/{job['id']}/", token=token)
    _bar(job["processed"], job["total"])
    rejected = None
    if job.get("has_rejected_file"):
        rejected = _api(base, f"/api/candidates/import/{job['id']}/rejected.xlsx/", token=token)
    return job, rejected


def cmd_export(args: argparse.Namespace) -> int:
    """Export candidates to .xlsx or .csv (with the list filters)."""
    from node.runtime import open_offline
    from node.services.candidates.exporter import export

    ctx, _ = open_offline(args.data)
    try:
        query = {k: v for k, v in {"center": args.center, "status": args.status,
                                   "search": args.search}.items() if v}
        data, _media = export(ctx.candidates.records, _operator(), query, args.format)
    finally:
        ctx.store.close()
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes)")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Re-evaluate every candidate's eligibility with the [candidates] rules."""
    if is_running(args.data):
        raise CliError("the node is running; stop it to revalidate from the command line")
    from node.runtime import open_offline

    ctx, _ = open_offline(args.data)
    try:
        counts = asyncio.run(ctx.candidates.records.revalidate())
    finally:
        ctx.store.close()
    print(f"eligible {counts['eligible']}, ineligible {counts['ineligible']}, "
          f"changed {counts['changed']}")
    return 0


def add_commands(sub: Any, data_arg: Any) -> None:
    """Register ``examnode candidates ...``."""
    group = sub.add_parser("candidates", help="import, export, validate candidates",
                           description=__doc__)
    csub = group.add_subparsers(dest="candidates_command", required=True, metavar="ACTION")

    p = csub.add_parser("import", help="import an .xlsx or .csv file",
                        description=cmd_import.__doc__)
    data_arg(p)
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--dry-run", action="store_true", help="validate and count, write nothing")
    p.add_argument("--center", help="centre for rows without one")
    p.add_argument("--map", action="append", metavar="HEADER=FIELD",
                   help="map a column of the file to a template field (repeatable)")
    p.add_argument("--rejected", type=Path, help="where to write rejected rows "
                                                 "(default FILE.rejected.xlsx)")
    p.add_argument("--username", help="sign in as (when the node is running)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_import)

    p = csub.add_parser("export", help="export to .xlsx or .csv", description=cmd_export.__doc__)
    data_arg(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    p.add_argument("--center")
    p.add_argument("--status")
    p.add_argument("--search")
    p.set_defaults(func=cmd_export)

    p = csub.add_parser("validate", help="re-evaluate eligibility",
                        description=cmd_validate.__doc__)
    data_arg(p)
    p.set_defaults(func=cmd_validate)
