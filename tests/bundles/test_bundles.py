"""Bundles (USB transfer) between an HQ and its centres: round trip, encryption, refusals."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from node.cli.main import main as cli
from node.replication.bundle import read_header
from node.runtime import open_offline
from node.store.verify import verify_store


def init(data: Path, *args: str) -> None:
    assert cli(["init", "--data", str(data), "--mdns-interface", "none", *args]) == 0


def node_id(data: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert cli(["status", "--data", str(data), "--json"]) == 0
    return str(json.loads(capsys.readouterr().out)["node_id"])


def write(data: Path, prefix: str, n: int, scope: str) -> None:
    ctx, _ = open_offline(data)
    try:
        async def puts() -> None:
            for i in range(n):
                await ctx.store.put(f"{prefix}/{i:03d}", {"i": i, "name": f"Név {i}"},
                                    scope=scope)
        asyncio.run(puts())
    finally:
        ctx.store.close()


def snapshot(data: Path) -> dict[str, Any]:
    ctx, _ = open_offline(data)
    try:
        vv = ctx.store.version_vector()
        views = {}
        for coll in ("cand", "notes", "exams"):
            views.update({v.key: v.data for v in ctx.store.scan(coll)})
        report = verify_store(ctx.store)
        assert report.ok, report.problems
        return {"vv": vv, "views": views, "scopes": {s for _o, s in vv}}
    finally:
        ctx.store.close()


def export(data: Path, out: Path, *args: str) -> int:
    return cli(["export", "--data", str(data), "--out", str(out), *args])


def import_(data: Path, file: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli(["import", "--data", str(data), str(file)])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


@pytest.fixture
def deployment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """An HQ and the first nodes of centres A and B, provisioned by file."""
    hq, a1, b1 = tmp_path / "hq", tmp_path / "a1", tmp_path / "b1"
    init(hq, "--hq")
    for center, node in (("A", a1), ("B", b1)):
        prov = tmp_path / f"{center}.prov"
        assert cli(["provision", "--data", str(hq), "--center", center, "--out", str(prov)]) == 0
        init(node, "--from", str(prov))
    ids = {name: node_id(path, capsys) for name, path in (("hq", hq), ("a1", a1), ("b1", b1))}
    return {"hq": hq, "a1": a1, "b1": b1, "ids": ids, "tmp": tmp_path}


def test_round_trip_through_hq_keeps_centres_apart(deployment: dict[str, Any],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    d = deployment
    hq, a1, b1, tmp = d["hq"], d["a1"], d["b1"], d["tmp"]
    write(a1, "cand", 20, "A")
    write(b1, "cand", 5, "B")  # keys collide with A's on purpose: scopes keep them apart
    write(hq, "exams", 3, "global")

    # A centre's data is personal: no recipient, no bundle.
    assert export(a1, tmp / "a.bundle") == 1
    assert not (tmp / "a.bundle").exists()
    assert export(a1, tmp / "a.bundle", "--to", d["ids"]["hq"]) == 0
    header, _ = read_header((tmp / "a.bundle").read_bytes())
    assert header["encrypted"] is True
    assert header["recipient"] == d["ids"]["hq"]
    assert b"N\xc3\xa9v" not in (tmp / "a.bundle").read_bytes()  # names are not in clear

    rc, out = import_(hq, tmp / "a.bundle", capsys)
    assert rc == 0, out
    assert "applied 20" in out
    rc, out = import_(hq, tmp / "a.bundle", capsys)  # importing twice changes nothing
    assert rc == 0
    assert "applied 0, already present 20" in out
    assert snapshot(hq)["views"] == {**snapshot(a1)["views"], **snapshot(hq)["views"]}

    # B's collision on cand/000 is not merged into A's record; HQ holds B in scope B.
    assert export(b1, tmp / "b.bundle", "--to", d["ids"]["hq"]) == 0
    rc, out = import_(hq, tmp / "b.bundle", capsys)
    assert "applied 5" in out
    assert "scope_conflict" not in out

    # HQ sends everything to A: A takes global and A, and skips B.
    assert export(hq, tmp / "to-a.bundle", "--to", d["ids"]["a1"]) == 0
    rc, out = import_(a1, tmp / "to-a.bundle", capsys)
    assert rc == 0, out
    assert "skipped scopes this node does not hold: B" in out
    a_state = snapshot(a1)
    assert a_state["scopes"] == {"A", "global"}
    assert {k for k in a_state["views"] if k.startswith("exams/")} == \
        {"exams/000", "exams/001", "exams/002"}

    # A global-only bundle may travel in clear.
    assert export(hq, tmp / "global.bundle", "--scope", "global") == 0
    rc, out = import_(b1, tmp / "global.bundle", capsys)
    assert rc == 0, out
    assert snapshot(b1)["scopes"] == {"B", "global"}


def test_encrypted_bundle_only_opens_for_its_recipient(deployment: dict[str, Any],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    d = deployment
    write(d["a1"], "cand", 3, "A")
    bundle = d["tmp"] / "a.bundle"
    assert export(d["a1"], bundle, "--to", d["ids"]["hq"]) == 0
    rc, out = import_(d["b1"], bundle, capsys)
    assert rc == 1
    assert "encrypted for node" in out
    raw = bytearray(bundle.read_bytes())
    raw[-10] ^= 0xFF
    bundle.write_bytes(bytes(raw))
    rc, out = import_(d["hq"], bundle, capsys)
    assert rc == 1
    assert "does not decrypt" in out
    assert snapshot(d["hq"])["scopes"] <= {"global"}


def _rewrite_items(path: Path, change: Any) -> None:
    header, body = read_header(path.read_bytes())
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(body)
    msgs = list(unpacker)
    for m in msgs:
        if m.get("t") == "chain":
            change(m)
    path.write_bytes(msgpack.packb(header, use_bin_type=True)
                     + b"".join(msgpack.packb(m, use_bin_type=True) for m in msgs))


def test_tampered_and_unknown_signer_deltas_are_refused(deployment: dict[str, Any],
                                                        tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    d = deployment
    write(d["hq"], "exams", 4, "global")
    bundle = tmp_path / "g.bundle"
    assert export(d["hq"], bundle, "--scope", "global") == 0

    def tamper(m: dict[str, Any]) -> None:
        item = m["d"][2]
        item[2] = item[2][:-1] + bytes([item[2][-1] ^ 1])  # one bit of the CRDT update

    _rewrite_items(bundle, tamper)
    rc, out = import_(d["a1"], bundle, capsys)
    assert rc == 1
    assert "refused (bad_signature): 1" in out
    # The deltas before the tampered one are kept, nothing after it.
    ctx, _ = open_offline(d["a1"])
    try:
        assert [v.key for v in ctx.store.scan("exams")] == ["exams/000", "exams/001"]
    finally:
        ctx.store.close()

    # A node of another deployment: its certificate is refused, so its deltas are too.
    stranger = tmp_path / "stranger"
    init(stranger, "--center", "A")
    write(stranger, "cand", 2, "A")
    assert export(stranger, tmp_path / "s.bundle", "--unencrypted") == 0
    rc, out = import_(d["a1"], tmp_path / "s.bundle", capsys)
    assert rc == 1
    assert "unknown_signer" in out
    assert "cand/000" not in snapshot(d["a1"])["views"]


def test_revoked_signer_is_refused_after_revocation(deployment: dict[str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    d = deployment
    hq, a1, tmp = d["hq"], d["a1"], d["tmp"]
    write(a1, "cand", 3, "A")
    assert export(a1, tmp / "1.bundle", "--to", d["ids"]["hq"]) == 0
    assert import_(hq, tmp / "1.bundle", capsys)[0] == 0
    assert cli(["revoke", "--data", str(hq), d["ids"]["a1"], "--reason", "stolen"]) == 0
    write(a1, "cand", 6, "A")  # made after the revocation
    assert export(a1, tmp / "2.bundle", "--to", d["ids"]["hq"]) == 0
    rc, out = import_(hq, tmp / "2.bundle", capsys)
    assert rc == 1
    assert "already present 3" in out
    assert "refused (revoked)" in out
    views = snapshot(hq)["views"]
    assert {k for k in views if k.startswith("cand/")} == {"cand/000", "cand/001", "cand/002"}


def test_since_bundle_is_held_until_the_rest_arrives(deployment: dict[str, Any],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import time

    d = deployment
    a1, hq, tmp = d["a1"], d["hq"], d["tmp"]
    write(a1, "cand", 5, "A")
    time.sleep(0.05)
    cut = time.time()
    time.sleep(0.05)
    write(a1, "notes", 4, "A")
    assert export(a1, tmp / "late.bundle", "--to", d["ids"]["hq"], "--since",
                  time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cut))
                  + f".{int(cut % 1 * 1e6):06d}") == 0
    header, _ = read_header((tmp / "late.bundle").read_bytes())
    assert header["deltas"] == 4
    rc, out = import_(hq, tmp / "late.bundle", capsys)
    assert "held back 4" in out
    assert not any(k.startswith("notes/") for k in snapshot(hq)["views"])
    assert export(a1, tmp / "all.bundle", "--to", d["ids"]["hq"]) == 0
    rc, out = import_(hq, tmp / "all.bundle", capsys)
    assert rc == 0, out
    views = snapshot(hq)["views"]
    assert sum(k.startswith("notes/") for k in views) == 4
    assert sum(k.startswith("cand/") for k in views) == 5


def test_garbage_files_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = tmp_path / "n"
    init(node, "--center", "C1")
    for i, blob in enumerate([b"", b"hello", msgpack.packb({"kind": "examnode-bundle-v1"}),
                              msgpack.packb([1, 2, 3])]):
        f = tmp_path / f"g{i}"
        f.write_bytes(blob)
        rc, out = import_(node, f, capsys)
        assert rc == 1, out
        assert "bundle" in out
    rc, out = import_(node, tmp_path / "missing", capsys)
    assert rc == 2
