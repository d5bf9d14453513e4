"""Hot backup under write load, restore, and catch-up from a peer before writing again."""

from __future__ import annotations

import asyncio
import socket
import tarfile
from pathlib import Path

import pytest

from node.cli.main import main as cli
from node.errors import NodeRecovering
from node.runtime import RunningNode, open_context, open_offline
from node.services.invites import create_invite
from node.store.verify import verify_store
from node.trust.material import load_trust
from tests.conftest import run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(cond: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_backup_under_load_restore_catch_up(tmp_path: Path) -> None:
    r1, r2, r1b, bk = tmp_path / "r1", tmp_path / "r2", tmp_path / "r1b", tmp_path / "bk.tgz"
    api1 = free_port()
    assert cli(["init", "--data", str(r1), "--center", "DEMO", "--listen", f"127.0.0.1:{api1}",
                "--replication-port", str(free_port()), "--mdns-interface", "none"]) == 0
    n1 = RunningNode(open_context(r1))
    await n1.start()
    n2: RunningNode | None = None
    n1b: RunningNode | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        token = create_invite(r1, load_trust(r1), f"127.0.0.1:{api1}", 600).encode()
        rc = await asyncio.to_thread(cli, [
            "join", "--data", str(r2), "--token", token, "--listen", f"127.0.0.1:{free_port()}",
            "--replication-port", str(free_port()), "--mdns-interface", "none"])
        assert rc == 0
        n2 = RunningNode(open_context(r2))
        await n2.start()
        s1, s2 = n1.ctx.store, n2.ctx.store

        acked: dict[str, int] = {}
        stop = asyncio.Event()

        async def writer(w: int) -> None:
            i = 0
            while not stop.is_set():
                key = f"cand/{w}-{i}"
                await s1.put(key, {"i": i, "w": w}, scope="DEMO")
                acked[key] = i
                i += 1

        writers = [asyncio.create_task(writer(w)) for w in range(8)]
        tasks.extend(writers)
        await wait_until(lambda: len(acked) >= 300)
        # A real second process, as an operator would run it beside the serving node.
        done = await asyncio.to_thread(run_cli, "backup", "--data", r1, "--out", bk)
        assert done.returncode == 0, done.stderr
        at_backup = len(acked)
        await wait_until(lambda: len(acked) >= at_backup + 300)
        stop.set()
        await asyncio.gather(*writers)
        assert bk.stat().st_mode & 0o077 == 0
        with tarfile.open(bk) as tar:
            assert {"node.key", "node.toml", "store/data.mdb"} <= set(tar.getnames())

        def peer_has_all() -> bool:
            return all((v := s2.get(k)) is not None and v.data["i"] == i
                       for k, i in acked.items())

        await wait_until(peer_has_all)
        await n1.stop()

        assert cli(["restore", "--data", str(r1b), str(bk)]) == 0
        ctx, _ = open_offline(r1b)
        try:
            assert ctx.store.restored
            assert verify_store(ctx.store).ok
            behind = sum(1 for k in acked if ctx.store.get(k) is None)
            assert behind > 0  # the backup predates the last writes
            with pytest.raises(NodeRecovering):
                await ctx.store.put("cand/too-early", {"x": 1}, scope="DEMO")
        finally:
            ctx.store.close()

        n1b = RunningNode(open_context(r1b))
        await n1b.start()
        sb = n1b.ctx.store
        await wait_until(lambda: not sb.restored)
        for key, i in acked.items():
            view = sb.get(key)
            assert view is not None
            assert view.data["i"] == i
        after = await sb.put("cand/after-restore", {"x": 1}, scope="DEMO")
        assert after.changed
        await wait_until(lambda: s2.get("cand/after-restore") is not None)
        assert verify_store(sb).ok
        assert verify_store(s2).ok
        assert sb.quarantined() == []
        assert s2.quarantined() == []
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for node in (n1b, n2):
            if node is not None:
                await node.stop()
        if n1.lock._fd is not None:
            await n1.stop()


def test_restore_refuses_a_used_directory_and_garbage(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    (tmp_path / "junk.tgz").write_bytes(b"not a tarball")
    assert cli(["restore", "--data", str(tmp_path / "used"), str(tmp_path / "junk.tgz")]) == 1
    assert cli(["restore", "--data", str(tmp_path / "new"), str(tmp_path / "junk.tgz")]) == 1
    assert not (tmp_path / "new" / "node.key").exists()


def test_restore_standalone_writes_at_once(tmp_path: Path) -> None:
    node, bk, back = tmp_path / "n", tmp_path / "b.tgz", tmp_path / "back"
    assert cli(["init", "--data", str(node), "--center", "C1", "--mdns-interface", "none"]) == 0
    assert cli(["backup", "--data", str(node), "--out", str(bk)]) == 0
    assert cli(["restore", "--data", str(back), str(bk), "--standalone"]) == 0
    ctx, _ = open_offline(back)
    try:
        assert not ctx.store.restored
        result = asyncio.run(ctx.store.put("cand/1", {"a": 1}, scope="C1"))
        assert result.changed
    finally:
        ctx.store.close()
