"""The account commands: ``examnode createsuperuser`` and ``examnode cleanup-sessions``."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from node.runtime import open_offline
from node.services.auth import passwords
from tests.auth.conftest import PASSWORD, Api, create_superuser
from tests.conftest import EXAMNODE, ROOT
from tests.replication.conftest import Cluster, Node, cli

pytestmark = pytest.mark.asyncio(loop_scope="module")

DAY = 86400


def examnode(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the examnode CLI in its own process, feeding ``stdin``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*EXAMNODE, *map(str, args)], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60, check=False)


async def run(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(examnode, *args, stdin=stdin)


def stored_user(data: Path, username: str) -> dict[str, object] | None:
    ctx, _ = open_offline(data)
    try:
        view = ctx.store.get(f"users/{username}")
        center = ctx.store.get(f"centers/{ctx.center}")
        out = dict(view.data) if view else None
        if out is not None:
            out["_center_exists"] = center is not None
        return out
    finally:
        ctx.store.close()


# --- createsuperuser ----------------------------------------------------------------------------


async def test_createsuperuser_reads_the_password_from_stdin(cluster: Cluster) -> None:
    node = await cluster.init("a1", center="A")
    result = await run("createsuperuser", "--data", node.data, "--username", "boss",
                       "--password-stdin", "--full-name", "Big Boss",
                       "--email", "boss@example.org", stdin="Quiet-River-2024\n")
    assert result.returncode == 0, result.stderr
    assert "created admin boss" in result.stdout and "Quiet-River-2024" not in result.stdout
    user = stored_user(node.data, "boss")
    assert user is not None
    assert (user["role"], user["center"], user["full_name"], user["email"]) == (
        "admin", None, "Big Boss", "boss@example.org")
    assert user["_center_exists"], "a standalone centre's own centre record"
    # The account works: sign in through the API.
    await node.start()
    r = await Api(cluster.http, node.api).login("boss", "Quiet-River-2024")
    assert r.status == 200 and r.body["user"]["role"] == "admin", r


async def test_createsuperuser_generates_and_prints_a_password(cluster: Cluster) -> None:
    node = await cluster.init("a1", center="A")
    result = await cli("createsuperuser", "--data", node.data, "--username", "boss",
                       "--generate")
    assert result.code == 0, result.err
    m = re.search(r"username: boss\n\s+password: (\S+)", result.out)
    assert m, result.out
    user = stored_user(node.data, "boss")
    assert user is not None
    assert await passwords.verify_password(str(user["password_hash"]), m.group(1))
    passwords.check_policy(m.group(1), min_length=10, username="boss")


async def test_createsuperuser_refuses_duplicates_and_weak_passwords(cluster: Cluster) -> None:
    node = await cluster.init("a1", center="A")
    await create_superuser(node.data, "boss")
    again = await run("createsuperuser", "--data", node.data, "--username", "boss",
                      "--password-stdin", stdin=f"{PASSWORD}\n")
    assert again.returncode == 1 and "already exists" in again.stderr, again
    weak = await run("createsuperuser", "--data", node.data, "--username", "boss2",
                     "--password-stdin", stdin="qwertyuiop\n")
    assert weak.returncode == 1 and "too common" in weak.stderr, weak
    assert stored_user(node.data, "boss2") is None
    empty = await run("createsuperuser", "--data", node.data, "--username", "boss3",
                      "--password-stdin", stdin="")
    assert empty.returncode == 2 and "no password" in empty.stderr, empty
    neither = await cli("createsuperuser", "--data", node.data, "--username", "boss3")
    assert neither.code == 2, neither
    bad_name = await cli("createsuperuser", "--data", node.data, "--username", "a b",
                         "--generate")
    assert bad_name.code == 1 and "username" in bad_name.err, bad_name


async def test_createsuperuser_is_refused_where_admins_cannot_be_written(
        cluster: Cluster) -> None:
    hq = await cluster.init("hq", hq=True)
    a1 = await cluster.init("a1", from_file=await cluster.provision(hq, "A"))
    result = await cli("createsuperuser", "--data", a1.data, "--username", "boss",
                       "--generate")
    assert result.code == 1 and "HQ" in result.err, result
    assert "password:" not in result.out
    assert stored_user(a1.data, "boss") is None


# --- cleanup-sessions ---------------------------------------------------------------------------


async def _sessions(cluster: Cluster) -> tuple[Node, dict[str, str]]:
    """Return a stopped node whose sessions are: active, ended recently, ended long ago,
    expired long ago, revoked long ago; and an attempt from long ago."""
    node = await cluster.init("a1", center="A")
    password = await create_superuser(node.data, "root")
    await node.start()
    api = Api(cluster.http, node.api)
    root, _ = await api.tokens("root", password)
    assert (await api.register(root, "cand_x", "candidate", "A")).status == 201
    names = ("active", "ended_recently", "expired_long_ago", "revoked_long_ago")
    sids = {"root": node.ctx.auth.tokens.verify(root, "access").session_id}
    for name in names:
        access, refresh = await api.tokens("cand_x")
        sids[name] = node.ctx.auth.tokens.verify(access, "access").session_id
        if name in ("ended_recently", "revoked_long_ago"):
            assert (await api.post("/api/auth/logout/", {"refresh": refresh})).status == 200
    await node.stop()
    ctx, _ = open_offline(node.data)
    try:
        now = time.time()
        await ctx.store.put(f"sessions/{sids['expired_long_ago']}",
                            {"expires": now - 2 * DAY, "created": now - 3 * DAY})
        await ctx.store.put(f"sessions/{sids['revoked_long_ago']}",
                            {"revoked_at": now - 2 * DAY})
        old = next(v for v in ctx.store.scan("login_attempts"))
        await ctx.store.put(old.key, {"time": now - 40 * DAY})
        sids["old_attempt"] = old.key
    finally:
        ctx.store.close()
    return node, sids


async def test_cleanup_sessions_removes_only_what_ended_over_a_day_ago(
        cluster: Cluster) -> None:
    node, sids = await _sessions(cluster)
    result = await cli("cleanup-sessions", "--data", node.data)
    assert result.code == 0, result.err
    assert "removed 3 " in result.out, result.out
    ctx, _ = open_offline(node.data)
    try:
        left = {v.data["session_id"] for v in ctx.store.scan("sessions")}
        assert ctx.store.get(sids["old_attempt"]) is None
        assert len(list(ctx.store.scan("login_attempts"))) > 0
    finally:
        ctx.store.close()
    assert left == {sids["root"], sids["active"], sids["ended_recently"]}, (sids, left)
    # A running node cleans up by itself; the command refuses to run beside it.
    await node.start()
    again = await cli("cleanup-sessions", "--data", node.data)
    assert again.code == 1 and "running" in again.err, again
    await node.stop()
    nothing = await cli("cleanup-sessions", "--data", node.data)
    assert nothing.code == 0 and "removed 0 " in nothing.out, nothing.out


async def test_cleanup_sessions_keeps_attempts_for_keep_days(cluster: Cluster) -> None:
    node, sids = await _sessions(cluster)
    result = await cli("cleanup-sessions", "--data", node.data, "--keep-days", "60")
    assert result.code == 0 and "removed 2 " in result.out, result.out
    ctx, _ = open_offline(node.data)
    try:
        assert ctx.store.get(sids["old_attempt"]) is not None
    finally:
        ctx.store.close()
