"""Cluster commands: provision, invite, join, revoke."""

from __future__ import annotations

import argparse
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from node.cli.errors import CliError
from node.config import DiscoverySection, HttpSection, NodeConfig, NodeSection, write_config
from node.errors import ConfigError
from node.identity import KEY_FILE, Identity

DURATION = re.compile(r"^(\d+)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Parse ``90``, ``90s``, ``10m``, ``2h`` or ``1d`` into seconds."""
    m = DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration like 10m or 2h, got {text!r}")
    return int(m.group(1)) * UNITS[m.group(2)]


def cmd_provision(args: argparse.Namespace) -> int:
    """Write a provisioning file that makes the first node of a centre (HQ only)."""
    from node.trust.material import provision_center

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", args.center) or args.center == "global":
        raise CliError(f"invalid centre code {args.center!r}", code=2)
    data = provision_center(args.data, args.center)
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    print(f"wrote {args.out} for centre {args.center}; carry it like a key and run "
          f"'examnode init --data DIR --from {args.out}' on the centre's first machine")
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    """Print a single-use join token for a new machine of this centre."""
    from node.config import load_config
    from node.services.invites import create_invite
    from node.trust.material import load_trust

    config = load_config(args.data)
    trust = load_trust(args.data)
    try:
        invite = create_invite(args.data, trust, f"{config.http.host}:{config.http.port}",
                               args.expires)
    except ConfigError:
        raise
    except Exception as e:
        raise CliError(str(getattr(e, "detail", e))) from e
    print(invite.encode())
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    """Create a node certified for a centre, using a join token."""
    from node.services.invites import authority_fingerprint, join_mac, parse_token
    from node.trust.certs import CertificateError, der, load_pem_chain, verify_chain
    from node.trust.material import save_joined

    data: Path = args.data
    if (data / KEY_FILE).exists() or (data.exists() and any(data.iterdir())):
        raise CliError(f"{data} is not empty; refusing to overwrite it")
    try:
        invite = parse_token(args.token)
    except Exception as e:
        raise CliError(f"invalid token: {getattr(e, 'detail', e)}", code=2) from e
    identity = Identity.generate()
    body = json.dumps({
        "token_id": invite.token_id.hex(), "public_key": identity.public_key.hex(),
        "mac": join_mac(invite.secret, invite.token_id, identity.public_key).hex(),
        "name": args.name or "",
    }).encode()
    req = urllib.request.Request(f"http://{invite.api}/api/cluster/join/", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - http to inviter
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail", e.reason)
        except ValueError:
            detail = e.reason
        raise CliError(f"the inviting node refused: {detail}") from e
    except OSError as e:
        raise CliError(f"cannot reach the inviting node at {invite.api}: {e}") from e
    try:
        root = load_pem_chain(answer["authority"].encode())[0]
        chain = [load_pem_chain(p.encode())[0] for p in answer["chain"]]
        if authority_fingerprint(root) != invite.authority_sha256:
            raise CertificateError("the authority does not match the token's fingerprint")
        me = verify_chain([der(c) for c in chain], root)
        if me.public_key != identity.public_key:
            raise CertificateError("the certificate is not for this node's key")
    except (KeyError, ValueError, TypeError, CertificateError) as e:
        raise CliError(f"the inviting node's answer is not trustworthy: "
                       f"{getattr(e, 'detail', e)}") from e
    try:
        http = HttpSection(host=args.listen[0], port=args.listen[1]) if args.listen \
            else HttpSection()
        discovery = DiscoverySection(peers=list(answer.get("peers", [])),
                                     mdns=args.mdns_interface != "none",
                                     mdns_interface=args.mdns_interface)
        config = NodeConfig(node=NodeSection(center=me.center, name=args.name or ""),
                            http=http, discovery=discovery)
    except ValueError as e:
        raise CliError(f"invalid option: {e}", code=2) from e
    if args.replication_port is not None:
        config.replication.port = args.replication_port
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity.save(data)
    write_config(data, config)
    save_joined(data, root, chain)
    from node.runtime import store_options
    from node.store import Store

    with Store(data, identity, store_options(config)):
        pass
    print(f"joined centre {me.center} as node {me.node_id} in {data}")
    print(me.node_id)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """Revoke a node (a stolen or retired machine): peers refuse it from now on."""
    import asyncio

    from node.runtime import open_offline
    from node.trust.policy import REVOCATIONS

    ctx, policy = open_offline(args.data)
    try:
        assert ctx.trust is not None
        target = policy.node_by_id(args.node_id)
        if target is None:
            raise CliError(f"unknown node {args.node_id}")
        if target.node_id == ctx.node_id:
            raise CliError("a node cannot revoke itself; revoke it from another node")
        me = ctx.trust.me
        if me.role != "hq" and target.center != me.center:
            raise CliError(f"node {target.node_id} belongs to centre {target.center}")
        key = f"{REVOCATIONS}/{target.node_id}"
        if ctx.store.get(key) is not None:
            raise CliError(f"node {target.node_id} is already revoked")
        scope = "global" if target.role == "hq" else target.center
        from node.store.hlc import hlc_millis

        at_ms = hlc_millis(ctx.store.clock.now())
        asyncio.run(ctx.store.put(key, {
            "node_id": target.node_id, "public_key": target.public_key.hex(),
            "revoked_at_ms": at_ms, "reason": args.reason or "", "by": ctx.node_id},
            scope=scope))
    finally:
        ctx.store.close()
    print(f"revoked node {target.node_id}; peers refuse it once this record reaches them")
    return 0
