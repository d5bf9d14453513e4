"""Join tokens over the network: single use, short-lived, unforgeable (DESIGN.md s3)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from node.identity import Identity
from node.services.invites import create_invite, join_mac, parse_token
from node.trust.certs import der, load_pem_chain, verify_chain
from node.trust.material import load_trust
from tests.replication.conftest import HOST, Cluster, Node, wait_until

JOIN = "/api/cluster/join/"


def _invite(node: Node, expires_in: int = 600, now: float | None = None) -> str:
    trust = load_trust(node.data)
    return create_invite(node.data, trust, f"{HOST}:{node.http_port}", expires_in,
                         now=now).encode()


def _unused(node: Node) -> list[str]:
    invites = json.loads((node.data / "invites.json").read_text())
    return [tid for tid, e in invites.items() if e["used_by"] is None]


def _body(token: str, identity: Identity) -> dict[str, str]:
    inv = parse_token(token)
    return {"token_id": inv.token_id.hex(), "public_key": identity.public_key.hex(),
            "mac": join_mac(inv.secret, inv.token_id, identity.public_key).hex()}


def _left_nothing(cluster: Cluster, name: str) -> bool:
    data: Path = cluster.root / name
    return not data.exists() or not any(data.iterdir())


async def test_a_token_admits_one_machine_once(cluster: Cluster) -> None:
    a = await (await cluster.init("a")).start()
    token = await cluster.invite(a)
    first = await cluster.try_join("n1", token)
    assert first.code == 0, first.err
    trust = load_trust(cluster.root / "n1")
    assert trust.me.center == "DEMO" and trust.me.role == "node"
    assert trust.signer is None  # a joined machine cannot admit others
    second = await cluster.try_join("n2", token)
    assert second.code == 1 and "already used" in second.err
    assert _left_nothing(cluster, "n2")
    # The same over HTTP: 409 with the stable error shape, even with a valid proof.
    status, body = await cluster.post(a, JOIN, _body(token, Identity.generate()))
    assert status == 409 and body["code"] == "conflict" and "already used" in body["detail"]
    # The joined node's certificate verifies against the deployment's authority.
    root = load_pem_chain((a.data / "authority.crt").read_bytes())[0]
    chain = load_pem_chain((cluster.root / "n1" / "node.crt").read_bytes())
    assert verify_chain([der(c) for c in chain], root).node_id == Identity.load(
        cluster.root / "n1").node_id


async def test_an_expired_token_is_refused(cluster: Cluster) -> None:
    a = await (await cluster.init("a")).start()
    stale = _invite(a, expires_in=60, now=time.time() - 120)
    result = await cluster.try_join("late", stale)
    assert result.code == 1 and "expired" in result.err
    assert _left_nothing(cluster, "late")
    status, body = await cluster.post(a, JOIN, _body(stale, Identity.generate()))
    assert status == 403 and body["code"] == "token_refused" and "expired" in body["detail"]
    # A short-lived token works at once, and no longer after it expires.
    quick = _invite(a, expires_in=5)
    ok = await cluster.try_join("quick", quick)
    assert ok.code == 0, ok.err
    quick2 = _invite(a, expires_in=1)
    expires = parse_token(quick2).expires
    await wait_until(lambda: time.time() > expires + 0.05, timeout=3)
    result = await cluster.try_join("quick2", quick2)
    assert result.code == 1 and "expired" in result.err


async def test_a_forged_token_is_refused_and_does_not_burn_the_real_one(
        cluster: Cluster) -> None:
    a = await (await cluster.init("a")).start()
    token = await cluster.invite(a)
    inv = parse_token(token)
    forged = dataclasses.replace(inv, secret=inv.secret[:-1] + bytes([inv.secret[-1] ^ 1]))
    result = await cluster.try_join("forged", forged.encode())
    assert result.code == 1 and "proof does not match" in result.err
    assert _left_nothing(cluster, "forged")
    unknown = dataclasses.replace(inv, token_id=bytes(16))
    result = await cluster.try_join("unknown", unknown.encode())
    assert result.code == 1 and "unknown join token" in result.err
    # A token whose authority fingerprint was swapped (a man in the middle's answer would
    # not match it): the joiner refuses the answer.
    swapped = dataclasses.replace(inv, authority_sha256=bytes(32))
    result = await cluster.try_join("swapped", swapped.encode())
    assert result.code == 1 and "authority does not match" in result.err
    assert _left_nothing(cluster, "swapped")


async def test_the_real_token_survives_forgeries(cluster: Cluster) -> None:
    a = await (await cluster.init("a")).start()
    token = await cluster.invite(a)
    inv = parse_token(token)
    forged = dataclasses.replace(inv, secret=bytes(32))
    for i in range(3):
        result = await cluster.try_join(f"forged{i}", forged.encode())
        assert result.code == 1 and "proof does not match" in result.err
    assert _unused(a) == [inv.token_id.hex()]
    ok = await cluster.try_join("real", token)
    assert ok.code == 0, ok.err
    assert _unused(a) == []


async def test_garbage_tokens_are_a_usage_error(cluster: Cluster) -> None:
    a = await (await cluster.init("a")).start()
    real = await cluster.invite(a)
    for i, bad in enumerate(["hello", "exn1.", "exn1.!!!!", "exn1." + "A" * 40,
                             real[:-12], "exn1." + "x" * 2000, real.replace("exn1.", "exn2.")]):
        result = await cluster.try_join(f"bad{i}", bad)
        assert result.code == 2, (bad, result)
        assert "invalid token" in result.err
        assert _left_nothing(cluster, f"bad{i}")
    status, body = await cluster.post(a, JOIN, {"token_id": "zz", "public_key": "00",
                                                "mac": "00"})
    assert status == 400 and body["code"] == "invalid"
    # A token for a node that is not running fails cleanly.
    b = await cluster.init("b")
    result = await cluster.try_join("nobody", _invite(b))
    assert result.code == 1 and "cannot reach" in result.err
    assert _left_nothing(cluster, "nobody")
