"""The examnode CLI in real subprocesses: init, status, verify, config errors, help."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import lmdb
import msgpack
import pytest

from node.store import layout
from tests.conftest import run_cli

COMMANDS = ["init", "run", "status", "verify", "config-example"]


def test_version_and_help() -> None:
    from node import __version__

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"examnode {__version__}"
    for cmd in COMMANDS:
        result = run_cli(cmd, "--help")
        assert result.returncode == 0, cmd
        assert "usage: examnode" in result.stdout


def test_init_creates_a_private_node(node_dir: Path) -> None:
    key = node_dir / "node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    assert (node_dir / "node.toml").exists()
    assert (node_dir / "store" / "data.mdb").exists()
    status = run_cli("status", "--data", node_dir, "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["center"] == "DEMO"
    assert info["name"] == "hall-1"
    assert info["records"] == 0


def test_init_prints_node_id_and_refuses_to_overwrite(tmp_path: Path) -> None:
    data = tmp_path / "n"
    first = run_cli("init", "--data", data, "--center", "C01", "--mdns-interface", "none",
                    "--peer", "http://127.0.0.1:8701")
    assert first.returncode == 0, first.stderr
    node_id = first.stdout.strip().splitlines()[-1]
    assert len(node_id) == 31 and node_id.count("-") == 3
    key_before = (data / "node.key").read_bytes()
    again = run_cli("init", "--data", data, "--center", "C01")
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr
    assert (data / "node.key").read_bytes() == key_before
    cfg = (data / "node.toml").read_text()
    assert "mdns = false" in cfg and "http://127.0.0.1:8701" in cfg


@pytest.mark.parametrize("args", [
    ["--center", "bad code"],
    ["--center", "C1", "--listen", "nohost"],
    ["--center", "C1", "--listen", "127.0.0.1:99999"],
    ["--center", "C1", "--mdns-interface", "eth0"],
])
def test_init_rejects_bad_options(tmp_path: Path, args: list[str]) -> None:
    result = run_cli("init", "--data", tmp_path / "n", *args)
    assert result.returncode == 2
    assert result.stderr.strip()
    assert not (tmp_path / "n" / "node.key").exists()


def test_bad_config_exits_2_naming_file_and_field(node_dir: Path) -> None:
    cfg = node_dir / "node.toml"
    cfg.write_text(cfg.read_text().replace("port = ", "port = -"))
    result = run_cli("status", "--data", node_dir)
    assert result.returncode == 2
    assert str(cfg) in result.stderr
    assert "http.port" in result.stderr


def test_missing_data_dir(tmp_path: Path) -> None:
    result = run_cli("status", "--data", tmp_path / "nothing")
    assert result.returncode == 2
    assert "not found" in result.stderr


def test_world_readable_key_is_refused(node_dir: Path) -> None:
    os.chmod(node_dir / "node.key", 0o644)
    result = run_cli("status", "--data", node_dir)
    assert result.returncode == 2
    assert "owner-only" in result.stderr


def test_verify_detects_tampering(node_dir: Path) -> None:
    import asyncio

    from node.runtime import open_context

    ctx = open_context(node_dir)
    ctx.store.open()
    try:
        async def write() -> None:
            for i in range(5):
                await ctx.store.put(f"candidates/{i}", {"name": f"C{i}"}, scope="DEMO")
        asyncio.run(write())
    finally:
        ctx.store.close()
    ok = run_cli("verify", "--data", node_dir)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verify: OK" in ok.stdout
    assert "deltas 5" in ok.stdout

    # Change one view behind the store's back: verify must notice.
    env = lmdb.open(str(node_dir / "store"), max_dbs=16)
    views = env.open_db(b"views")
    with env.begin(write=True) as txn:
        view = msgpack.unpackb(txn.get(b"candidates/3", db=views), raw=False)
        view["data"]["name"] = "Mallory"
        txn.put(b"candidates/3", msgpack.packb(view), db=views)
    env.close()
    bad = run_cli("verify", "--data", node_dir)
    assert bad.returncode == 1
    assert "candidates/3" in bad.stdout

    # Flip a byte of a stored delta's update: its signature no longer verifies.
    env = lmdb.open(str(node_dir / "store"), max_dbs=16)
    log_db = env.open_db(b"log")
    with env.begin(write=True) as txn:
        key, raw = next(iter(txn.cursor(db=log_db)))
        fields = msgpack.unpackb(raw)
        fields[6] = fields[6][:-1] + bytes([fields[6][-1] ^ 1])
        txn.put(key, msgpack.packb(fields, use_bin_type=True), db=log_db)
    env.close()
    bad = run_cli("verify", "--data", node_dir)
    assert bad.returncode == 1
    assert "signature does not verify" in bad.stdout
    assert layout.split_log_key(bytes(key))[2] == 1


def test_config_example_matches_repo() -> None:
    result = run_cli("config-example")
    assert result.returncode == 0
    root = Path(__file__).resolve().parent.parent.parent
    assert result.stdout == (root / "node.toml.example").read_text()
