"""``Discovery`` lifecycle rules that need no network (the mDNS traffic is in test_mdns_netns)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from node.discovery import Discovery, MalformedHint, PeerHint

SETTINGS: dict[str, Any] = {"node_id": "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD", "center": "CTR-1",
                            "role": "node", "port": 7101, "api_port": 8101, "version": "0.1.0"}


def _ignore(_: PeerHint) -> None:
    pass


def test_defaults_to_loopback() -> None:
    d = Discovery(**SETTINGS, on_peer=_ignore)
    assert d.advertised == PeerHint(host="127.0.0.1", **SETTINGS)
    assert d.peers == {}


@pytest.mark.parametrize(
    "interface",
    [str(ipaddress.IPv4Address(0)), "239.255.0.1", "255.255.255.255", "::1", "eth0", ""],
)
def test_refuses_an_interface_that_is_not_one_ipv4_address(interface: str) -> None:
    with pytest.raises(MalformedHint):
        Discovery(**SETTINGS, interface=interface, on_peer=_ignore)


@pytest.mark.parametrize(
    "override",
    [{"node_id": "A" * 64}, {"node_id": "bad id"}, {"center": ""}, {"role": "Hq"},
     {"port": 0}, {"api_port": 65536}, {"version": "v 1"}],
)
def test_refuses_to_advertise_what_peers_would_skip(override: dict[str, Any]) -> None:
    with pytest.raises(MalformedHint):
        Discovery(**{**SETTINGS, **override}, on_peer=_ignore)


async def test_stop_without_start_is_a_no_op_and_idempotent() -> None:
    d = Discovery(**SETTINGS, on_peer=_ignore)
    await d.stop()
    await d.stop()
    with pytest.raises(RuntimeError, match="only once"):
        await d.start()
