"""Helper run by ``test_mdns_netns.py`` inside a private ``unshare -rn`` namespace.

Starts two ``Discovery`` nodes and one advertiser with a malformed TXT record
on 127.0.0.1, lets them find each other, stops one (goodbye) and prints one
JSON object with what each node saw; the test asserts on it. It refuses to run
where any interface other than ``lo`` exists, so it can never multicast on a
real network (NETWORK-TESTING.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import threading
import time
from dataclasses import asdict
from functools import partial
from typing import Any

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from node.discovery import SERVICE_TYPE, Discovery, PeerHint

LOOPBACK = "127.0.0.1"
NODES: dict[str, dict[str, Any]] = {
    "A": {"node_id": "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD", "center": "CTR-NORTH", "role": "node",
          "port": 7101, "api_port": 8101, "version": "0.1.0"},
    "B": {"node_id": "ZZZZZZZ-YYYYYYY-XXXXXXX-2345672", "center": "CTR_SOUTH", "role": "hq",
          "port": 7202, "api_port": 8202, "version": "0.2.0rc1"},
}
BAD_ID = "BADBADB-ADBADBA-DBADBAD-BADBADB"
WAIT = 8.0  # seconds; loopback answers in about one


class _Records(logging.Handler):
    """Keep the messages of interest: skipped peers, slow event-loop callbacks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.skipped: list[str] = []
        self.slow: list[str] = []
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.name == "asyncio" and "Executing" in msg:
            self.slow.append(msg)
        elif msg.startswith("skipping mDNS peer"):
            self.skipped.append(msg)
        elif record.levelno >= logging.ERROR:
            self.errors.append(msg)


def _require_private_netns() -> None:
    """Exit unless loopback is the only interface (i.e. we are in our own namespace)."""
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        sys.exit(f"refusing to send mDNS: interfaces {names}; run only under unshare -rn")


async def _within(event: asyncio.Event, timeout: float) -> float | None:
    """Return the seconds until ``event`` is set, or None on timeout."""
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return None
    return round(time.monotonic() - t0, 3)


async def _advertise_malformed() -> tuple[AsyncZeroconf, AsyncServiceInfo]:
    """Register a service whose TXT port is garbage, directly with zeroconf."""
    aiozc = AsyncZeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(
        SERVICE_TYPE, f"{BAD_ID}.{SERVICE_TYPE}", port=7303, server="bad.local.",
        properties={"id": BAD_ID, "center": "CTR-BAD", "role": "node", "port": "abc",
                    "api": "8303", "v": "0.1.0"},
        parsed_addresses=[LOOPBACK],
    )
    await aiozc.async_register_service(info)
    return aiozc, info


async def run(records: _Records) -> dict[str, Any]:
    """Run the scenario and return what each node saw."""
    asyncio.get_running_loop().slow_callback_duration = 0.1
    seen: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    gone: dict[str, list[str]] = {"A": [], "B": []}
    found = {"A": asyncio.Event(), "B": asyncio.Event()}
    a_saw_goodbye = asyncio.Event()

    def on_peer(label: str, hint: PeerHint) -> None:
        seen[label].append(asdict(hint))
        found[label].set()

    def on_gone(label: str, node_id: str) -> None:
        gone[label].append(node_id)
        if label == "A":
            a_saw_goodbye.set()

    nodes = {label: Discovery(**spec, interface=LOOPBACK, resolve_timeout=2.0,
                              on_peer=partial(on_peer, label), on_gone=partial(on_gone, label))
             for label, spec in NODES.items()}
    out: dict[str, Any] = {}
    bad_zc, bad_info = await _advertise_malformed()
    try:
        t0 = time.monotonic()
        await asyncio.gather(*(d.start() for d in nodes.values()))
        out["start_s"] = round(time.monotonic() - t0, 3)
        out["a_found_s"] = await _within(found["A"], WAIT)
        out["b_found_s"] = await _within(found["B"], WAIT)
        deadline = time.monotonic() + WAIT  # both nodes log the skip of the bad peer
        while sum(BAD_ID in m for m in records.skipped) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        out["a_peers"] = {k: asdict(v) for k, v in nodes["A"].peers.items()}
        out["b_peers"] = {k: asdict(v) for k, v in nodes["B"].peers.items()}
        await nodes["B"].stop()
        await nodes["B"].stop()  # idempotent
        out["goodbye_s"] = await _within(a_saw_goodbye, WAIT)
        out["a_peers_after_goodbye"] = sorted(nodes["A"].peers)
    finally:
        for d in nodes.values():
            await d.stop()
        await (await bad_zc.async_unregister_service(bad_info))
        await bad_zc.async_close()
    out["seen"] = seen
    out["gone"] = gone
    out["skipped"] = records.skipped
    out["pending_tasks"] = [t.get_name() for t in asyncio.all_tasks()
                            if t is not asyncio.current_task()]
    return out


def main() -> None:
    """Run the scenario under asyncio debug mode and print the JSON result."""
    _require_private_netns()
    records = _Records()
    for name in ("node.discovery", "asyncio"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(records)
    result = asyncio.run(run(records), debug=True)
    result["threads"] = [t.name for t in threading.enumerate()]
    result["slow_callbacks"] = records.slow
    result["errors"] = records.errors
    print(json.dumps(result))


if __name__ == "__main__":
    main()
