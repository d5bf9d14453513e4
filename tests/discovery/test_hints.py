"""Turning a zeroconf service info into a ``PeerHint``, on constructed infos (no network)."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zeroconf.asyncio import AsyncServiceInfo

from node.discovery import SERVICE_TYPE, MalformedHint, PeerHint, hint_from_info
from node.discovery.hints import instance_name, parse_info

NODE_ID = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"
HOST = "10.77.0.2"  # a lab address (NETWORK-TESTING.md); nothing is sent here
HINT = PeerHint(node_id=NODE_ID, center="CTR-1", role="node", host=HOST, port=7101,
                api_port=8101, version="0.1.0")


def make_info(properties: dict[Any, Any] | bytes | None = None, *, port: int = 7101,
              addresses: list[str] | None = None, node_id: str = NODE_ID,
              txt: dict[str, str | None] | None = None) -> AsyncServiceInfo:
    """Return an info as a browser would resolve it; ``txt`` overrides (None drops) entries."""
    if properties is None:
        merged: dict[str, str | None] = {**HINT.txt(), **(txt or {})}
        properties = {k: v for k, v in merged.items() if v is not None}
    return AsyncServiceInfo(SERVICE_TYPE, instance_name(node_id), port=port,
                            properties=properties, server="peer.local.",
                            parsed_addresses=[HOST] if addresses is None else addresses)


def test_well_formed_info_becomes_exact_hint() -> None:
    assert hint_from_info(make_info()) == HINT
    assert HINT.address == "10.77.0.2:7101"


def test_txt_round_trips() -> None:
    hint = PeerHint(node_id="ZZZZZZZ-YYYYYYY-XXXXXXX-2345672", center="c_2", role="hq",
                    host=HOST, port=1, api_port=65535, version="1.2.3+local")
    info = AsyncServiceInfo(SERVICE_TYPE, instance_name(hint.node_id), port=hint.port,
                            properties=hint.txt(), parsed_addresses=[hint.host])
    assert hint_from_info(info) == hint


def test_first_usable_ipv4_address_is_chosen() -> None:
    info = make_info(addresses=["239.255.0.1", "fe80::1", HOST, "10.77.0.3"])
    hint = hint_from_info(info)
    assert hint is not None
    assert hint.host in (HOST, "10.77.0.3")


@pytest.mark.parametrize("key", ["id", "center", "role", "port", "api", "v"])
def test_missing_txt_key_is_skipped(key: str) -> None:
    with pytest.raises(MalformedHint, match=f"TXT lacks {key}"):
        parse_info(make_info(txt={key: None}))


@pytest.mark.parametrize(
    ("txt", "reason"),
    [
        *[({"port": p}, "bad port") for p in
          ["abc", "", "0", "65536", " 7101", "+7101", "7_101", "\u0667\u0661\u0660\u0661"]],
        *[({"api": p}, "bad port") for p in ["abc", "0", "99999", "-1"]],
        *[({"id": v}, "bad node_id") for v in ["A" * 64, "has space", "", "-AAAAAA", "A.B"]],
        *[({"center": v}, "bad center") for v in ["C" * 65, "CTR 1", "", "_x", "é"]],
        *[({"role": v}, "bad role") for v in ["r" * 17, "HQ", "", "node\n"]],
        *[({"v": v}, "bad version") for v in ["1" * 33, "1.0\n", "", "1 0"]],
    ],
)
def test_garbage_txt_value_is_skipped(txt: dict[str, str | None], reason: str) -> None:
    with pytest.raises(MalformedHint, match=reason):
        parse_info(make_info(txt=txt))


def test_undecodable_txt_is_skipped() -> None:
    raw = {**{k.encode(): v.encode() for k, v in HINT.txt().items()}, b"center": b"\xff\xfe"}
    assert hint_from_info(make_info(raw)) is None
    assert hint_from_info(make_info({**raw, b"center": b"CTR-1", b"\xff": b"x"})) is None


def test_key_without_value_counts_as_missing() -> None:
    raw = {**{k.encode(): v.encode() for k, v in HINT.txt().items()}, b"port": None}
    assert hint_from_info(make_info(raw)) is None


def test_empty_or_garbage_txt_record_is_skipped() -> None:
    assert hint_from_info(make_info(b"")) is None
    assert hint_from_info(make_info(b"\x05\xff\x00=\x01\x02\x40garbage")) is None


def test_srv_port_must_match_txt_port() -> None:
    with pytest.raises(MalformedHint, match="differs from TXT port"):
        parse_info(make_info(port=7999))


@pytest.mark.parametrize(
    "addresses",
    [[], ["fe80::1"], ["239.255.0.1"], [str(ipaddress.IPv4Address(0))], ["255.255.255.255"]],
)
def test_no_usable_ipv4_address_is_skipped(addresses: list[str]) -> None:
    with pytest.raises(MalformedHint, match="no usable IPv4 address"):
        parse_info(make_info(addresses=addresses))


def test_id_must_match_instance_name() -> None:
    with pytest.raises(MalformedHint, match="does not match id"):
        parse_info(make_info(txt={"id": "ZZZZZZZ-YYYYYYY-XXXXXXX-2345672"}))
    # DNS names compare case-insensitively.
    assert hint_from_info(make_info(node_id=NODE_ID.lower())) == HINT


def test_skip_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="node.discovery"):
        assert hint_from_info(make_info(txt={"port": "abc"})) is None
    [record] = caplog.records
    assert record.levelno == logging.DEBUG
    assert "bad port 'abc'" in record.getMessage()
    assert NODE_ID in record.getMessage()


@given(st.binary(max_size=300))
def test_any_txt_bytes_give_a_hint_or_none(text: bytes) -> None:
    info = make_info(text)
    result = hint_from_info(info)
    assert result is None or isinstance(result, PeerHint)


@given(st.dictionaries(st.sampled_from(["id", "center", "role", "port", "api", "v", "x"]),
                       st.one_of(st.none(), st.binary(max_size=70))))
def test_any_txt_values_give_a_hint_or_none(props: dict[str, bytes | None]) -> None:
    info = make_info({k.encode(): v for k, v in props.items()})
    result = hint_from_info(info)
    assert result is None or isinstance(result, PeerHint)
