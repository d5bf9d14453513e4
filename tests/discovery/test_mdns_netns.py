"""Two real ``Discovery`` nodes over mDNS on loopback, in a private network namespace.

The helper ``netns_peers.py`` runs under ``unshare -rn`` (a fresh user and
network namespace where only ``lo`` exists, with multicast turned on), so no
packet reaches a real interface (NETWORK-TESTING.md). Where ``unshare -rn``
does not work the test fails rather than skips: CI runs as root, where it does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.discovery.netns_peers import BAD_ID, NODES

ROOT = Path(__file__).resolve().parents[2]
HELPER = Path(__file__).with_name("netns_peers.py")
# "$0" "$@" pass the interpreter and script through without shell quoting.
NETNS = ["unshare", "-rn", "sh", "-c",
         'ip link set lo up && ip link set lo multicast on && exec "$0" "$@"']


def _require_netns() -> None:
    """Fail (never skip) with a clear message when a private netns cannot be made."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("mDNS tests need `unshare` (util-linux) and `ip` (iproute2) on PATH")
    probe = subprocess.run([*NETNS, "true"], capture_output=True, text=True, timeout=10,
                           check=False)
    if probe.returncode != 0:
        pytest.fail(
            "mDNS tests need a private user+network namespace, but "
            f"`unshare -rn` + `ip link set lo multicast on` failed ({probe.returncode}): "
            f"{probe.stderr.strip()}. Enable unprivileged user namespaces "
            "(kernel.unprivileged_userns_clone=1) or run as root, as CI does.")


@pytest.fixture(scope="module")
def scenario() -> dict[str, Any]:
    """Run the two-node scenario once in its own namespace and return its JSON result."""
    _require_netns()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*NETNS, sys.executable, str(HELPER)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, f"helper failed:\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _hint(label: str) -> dict[str, Any]:
    spec = NODES[label]
    return {"node_id": spec["node_id"], "center": spec["center"], "role": spec["role"],
            "host": "127.0.0.1", "port": spec["port"], "api_port": spec["api_port"],
            "version": spec["version"]}


def test_each_node_sees_the_other_exactly(scenario: dict[str, Any]) -> None:
    assert scenario["a_found_s"] is not None, "A never saw B"
    assert scenario["b_found_s"] is not None, "B never saw A"
    # Exactly one report each, with every field right, and never itself.
    assert scenario["seen"]["A"] == [_hint("B")]
    assert scenario["seen"]["B"] == [_hint("A")]
    assert scenario["a_peers"] == {NODES["B"]["node_id"]: _hint("B")}
    assert scenario["b_peers"] == {NODES["A"]["node_id"]: _hint("A")}


def test_stop_says_goodbye(scenario: dict[str, Any]) -> None:
    assert scenario["goodbye_s"] is not None, "A got no on_gone after B stopped"
    assert scenario["goodbye_s"] < 3
    assert scenario["gone"] == {"A": [NODES["B"]["node_id"]], "B": []}
    assert scenario["a_peers_after_goodbye"] == []


def test_malformed_peer_is_skipped(scenario: dict[str, Any]) -> None:
    skipped = [m for m in scenario["skipped"] if BAD_ID in m]
    assert len(skipped) >= 2, scenario["skipped"]  # seen by both nodes...
    assert all("bad port 'abc'" in m for m in skipped)
    reported = [h["node_id"] for hints in scenario["seen"].values() for h in hints]
    assert BAD_ID not in reported  # ...and reported by neither


def test_everything_closed_and_loop_never_blocked(scenario: dict[str, Any]) -> None:
    assert scenario["pending_tasks"] == []
    assert scenario["threads"] == ["MainThread"]
    assert scenario["slow_callbacks"] == []
    assert scenario["errors"] == []
