"""``examnode``: init, run, status and verify a node.

Exit codes: 0 success, 1 the command failed (for example ``verify`` found a
problem or the node already exists), 2 bad usage or a bad configuration file.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from node import __version__
from node.cli import accounts, candidates, cluster, ops
from node.cli.errors import CliError
from node.config import (
    CONFIG_FILE,
    DiscoverySection,
    HttpSection,
    NodeConfig,
    NodeSection,
    example_toml,
    load_config,
    write_config,
)
from node.errors import ConfigError, ExamnodeError
from node.identity import KEY_FILE, Identity
from node.runlock import is_running

log = logging.getLogger(__name__)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{host!r} is not an IP address") from e
    return host, int(port)


def _mdns_iface(text: str) -> str:
    if text != "none":
        try:
            ipaddress.ip_address(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected an IP address or 'none', got {text!r}") \
                from e
    return text


def cmd_init(args: argparse.Namespace) -> int:
    """Create a new node's data directory."""
    data: Path = args.data
    if (data / CONFIG_FILE).exists() or (data / KEY_FILE).exists():
        raise CliError(f"{data} already holds a node; refusing to overwrite it")
    if data.exists() and any(data.iterdir()):
        raise CliError(f"{data} is not empty; choose a new directory")
    provision = None
    if args.from_file is not None:
        from node.trust.material import read_provision

        try:
            provision = args.from_file.read_bytes()
        except OSError as e:
            raise CliError(f"cannot read {args.from_file}: {e.strerror}", code=2) from e
        center = read_provision(provision)[0]
        if args.center and args.center != center:
            raise CliError(f"{args.from_file} provisions centre {center}, not {args.center}", 2)
        args.center = center
    if args.hq:
        args.center = args.center or "HQ"
    if not args.center:
        raise CliError("--center is required (or --hq, or --from FILE)", code=2)
    try:
        node = NodeSection(center=args.center, name=args.name or "",
                           role="hq" if args.hq else "node")
        http = HttpSection(host=args.listen[0], port=args.listen[1]) if args.listen \
            else HttpSection()
        discovery = DiscoverySection(peers=args.peer or [], mdns=args.mdns_interface != "none",
                                     mdns_interface=args.mdns_interface)
    except ValueError as e:
        raise CliError(f"invalid option: {e}", code=2) from e
    config = NodeConfig(node=node, http=http, discovery=discovery)
    if args.replication_port is not None:
        try:
            config.replication.port = args.replication_port
        except ValueError as e:
            raise CliError(f"invalid option: {e}", code=2) from e
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = Identity.generate()
    identity.save(data)
    write_config(data, config)
    from node.trust.material import create_authority, init_from_provision

    known: list[list[bytes]] = []
    if provision is not None:
        known.append(init_from_provision(data, identity, provision))
    else:
        create_authority(data, identity, config.node.center, config.node.role)
    from node.runtime import open_offline

    ctx, policy = open_offline(data)
    try:
        policy.admit_sync([c for c in known if c])
    finally:
        ctx.store.close()
    print(f"initialised node {identity.node_id} for centre {config.node.center} in {data}")
    print(identity.node_id)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Serve the node until SIGINT/SIGTERM."""
    from node.runtime import serve

    config = load_config(args.data)
    logging.getLogger().setLevel(config.log.level)
    asyncio.run(serve(args.data))
    return 0


def _open_store(data: Path) -> Any:
    from node.runtime import open_offline

    return open_offline(data)[0]


def cmd_status(args: argparse.Namespace) -> int:
    """Print this node's identity, store counts and version vector."""
    ctx = _open_store(args.data)
    try:
        stats = ctx.store.stats()
        vv = ctx.store.version_vector()
        from node.identity import node_id_of

        out = {
            "node_id": ctx.node_id, "center": ctx.center, "role": ctx.config.node.role,
            "name": ctx.config.node.name, "version": __version__,
            "listen": f"{ctx.config.http.host}:{ctx.config.http.port}",
            "records": stats["views_entries"], "deltas": stats["log_entries"],
            "pending": stats["pending_entries"], "quarantined": stats["quarantine_entries"],
            "blobs": stats["blobs_entries"], "store_bytes": stats["used_bytes"],
            "version_vector": [{"origin": node_id_of(o), "scope": s, "seq": n}
                               for (o, s), n in sorted(vv.items())],
        }
    finally:
        ctx.store.close()
    out["running"] = is_running(args.data)
    out["peers"] = _running_peers(ctx.config) if out["running"] else []
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for k, v in out.items():
        if k not in ("version_vector", "peers"):
            print(f"{k:12} {v}")
    print("version vector:")
    for row in out["version_vector"]:
        print(f"  {row['origin']}  {row['scope']:10} {row['seq']}")
    print("peers:" if out["peers"] else "peers: none connected")
    for p in out["peers"]:
        print(f"  {p['node_id']}  {p['address']:21} {p['state']:10} "
              f"behind out {p['behind_out']} in {p['behind_in']}  "
              f"offset {p['clock_offset_ms']} ms")
    return 0


def _running_peers(config: NodeConfig) -> list[dict[str, Any]]:
    """Ask the running node for its peer sessions (over loopback)."""
    import urllib.request

    url = f"http://{config.http.host}:{config.http.port}/api/replication/status/"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            peers: list[dict[str, Any]] = json.loads(r.read())["peers"]
            return peers
    except (OSError, ValueError, KeyError):
        return []


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-check every delta and recompute every view; exit 1 on any problem."""
    from node.store.verify import verify_store

    ctx = _open_store(args.data)
    try:
        report = verify_store(ctx.store)
    finally:
        ctx.store.close()
    print(f"deltas {report.deltas}, chains {report.chains}, records {report.records}, "
          f"index entries {report.index_entries}, pending {report.pending}, "
          f"quarantined {report.quarantined}")
    for p in report.problems:
        print(f"PROBLEM: {p}")
    if report.ok:
        print("verify: OK")
        return 0
    print(f"verify: {len(report.problems)} problem(s)")
    return 1


def cmd_config_example(args: argparse.Namespace) -> int:
    """Print a node.toml listing every setting with its default."""
    sys.stdout.write(example_toml())
    return 0


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="the node's data directory")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every command."""
    parser = argparse.ArgumentParser(prog="examnode", description="Examnode hall node.")
    parser.add_argument("--version", action="version", version=f"examnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create a new node", description=cmd_init.__doc__)
    _data_arg(p)
    p.add_argument("--center", help="centre code, e.g. DEMO")
    p.add_argument("--hq", action="store_true",
                   help="make this node the HQ and the deployment's authority")
    p.add_argument("--from", dest="from_file", type=Path, metavar="FILE",
                   help="provisioning file from HQ ('examnode provision'): first node of a "
                        "centre")
    p.add_argument("--name", help="human name of this machine")
    p.add_argument("--listen", type=_listen, metavar="HOST:PORT",
                   help="API address (default 127.0.0.1:8700)")
    p.add_argument("--peer", action="append", metavar="URL", help="static peer (repeatable)")
    p.add_argument("--replication-port", type=int, metavar="PORT",
                   help="peer port (default 8701)")
    p.add_argument("--mdns-interface", type=_mdns_iface, default="127.0.0.1", metavar="IP|none",
                   help="interface for mDNS (default 127.0.0.1; 'none' disables mDNS)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", help="serve the node", description=cmd_run.__doc__)
    _data_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="show node status", description=cmd_status.__doc__)
    _data_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("verify", help="verify signatures, chains and views",
                       description=cmd_verify.__doc__)
    _data_arg(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("provision", help="write a centre provisioning file (HQ)",
                       description=cluster.cmd_provision.__doc__)
    _data_arg(p)
    p.add_argument("--center", required=True, help="centre code")
    p.add_argument("--out", type=Path, required=True, help="file to write (must not exist)")
    p.set_defaults(func=cluster.cmd_provision)

    p = sub.add_parser("invite", help="print a join token for a new machine",
                       description=cluster.cmd_invite.__doc__)
    _data_arg(p)
    p.add_argument("--expires", type=cluster.parse_duration, default=600, metavar="DURATION",
                   help="how long the token is valid (default 10m; e.g. 90s, 2h, 1d)")
    p.set_defaults(func=cluster.cmd_invite)

    p = sub.add_parser("join", help="create a node from a join token",
                       description=cluster.cmd_join.__doc__)
    _data_arg(p)
    p.add_argument("--token", required=True, help="the token 'examnode invite' printed")
    p.add_argument("--name", help="human name of this machine")
    p.add_argument("--listen", type=_listen, metavar="HOST:PORT",
                   help="API address (default 127.0.0.1:8700)")
    p.add_argument("--replication-port", type=int, metavar="PORT",
                   help="peer port (default 8701)")
    p.add_argument("--mdns-interface", type=_mdns_iface, default="127.0.0.1", metavar="IP|none",
                   help="interface for mDNS (default 127.0.0.1; 'none' disables mDNS)")
    p.set_defaults(func=cluster.cmd_join)

    p = sub.add_parser("revoke", help="revoke a node (stolen or retired machine)",
                       description=cluster.cmd_revoke.__doc__)
    _data_arg(p)
    p.add_argument("node_id", metavar="NODE_ID")
    p.add_argument("--reason", help="why, for the audit trail")
    p.set_defaults(func=cluster.cmd_revoke)

    ops.add_commands(sub, _data_arg)
    accounts.add_commands(sub, _data_arg)
    candidates.add_commands(sub, _data_arg)

    p = sub.add_parser("config-example", help="print node.toml with every setting",
                       description=cmd_config_example.__doc__)
    p.set_defaults(func=cmd_config_example)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``examnode`` command line; return its exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as e:
        print(f"examnode: configuration error: {e.detail}", file=sys.stderr)
        return 2
    except CliError as e:
        print(f"examnode: {e}", file=sys.stderr)
        return e.code
    except ExamnodeError as e:
        print(f"examnode: {e.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
