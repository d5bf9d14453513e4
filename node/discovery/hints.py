"""Peer hints: what an mDNS advertisement says about a node, as a typed value.

DESIGN.md section 7: a node advertises ``_examnode._tcp.local.`` with its id,
centre and ports in TXT records. ``hint_from_info`` turns a resolved zeroconf
service info into a ``PeerHint`` at once (Home Assistant style) and skips
malformed peers with a debug log, so nothing downstream sees raw TXT bytes.

A hint is only a suggestion of where a peer may be listening. Nothing here is
authenticated: anyone on the segment can advertise any id. Whether a peer is
who it claims is decided by the replication session, which verifies
signatures (DESIGN.md section 7, CONVENTIONS.md guideline 3).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass

from zeroconf import IPVersion, ServiceInfo

from node.errors import ExamnodeError

log = logging.getLogger(__name__)

SERVICE_TYPE = "_examnode._tcp.local."

# TXT keys; short because every announcement carries them.
TXT_ID = "id"
TXT_CENTER = "center"
TXT_ROLE = "role"
TXT_PORT = "port"
TXT_API = "api"
TXT_VERSION = "v"

# Shapes, not trust: they keep garbage out of logs and peer tables. The node
# id becomes the instance label, so it must fit one DNS label (RFC 6763, 4.1.1).
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_CENTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # as NodeSection.center
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,15}")
_VERSION = re.compile(r"[0-9A-Za-z.+_-]{1,32}")
_PORT = re.compile(r"[0-9]{1,5}")


class MalformedHint(ExamnodeError):
    """An advertisement (or our own settings) that does not form a valid hint."""

    code = "malformed_hint"


@dataclass(frozen=True, slots=True)
class PeerHint:
    """Where a peer says it listens; unverified until replication checks it."""

    node_id: str
    center: str
    role: str
    host: str
    port: int
    api_port: int
    version: str

    @property
    def address(self) -> str:
        """Return ``host:port`` of the replication channel, as ``Replicator.suggest`` takes."""
        return f"{self.host}:{self.port}"

    def txt(self) -> dict[str, str]:
        """Return the TXT properties that advertise this hint."""
        return {
            TXT_ID: self.node_id,
            TXT_CENTER: self.center,
            TXT_ROLE: self.role,
            TXT_PORT: str(self.port),
            TXT_API: str(self.api_port),
            TXT_VERSION: self.version,
        }


def instance_name(node_id: str) -> str:
    """Return the mDNS instance name a node advertises under."""
    return f"{node_id}.{SERVICE_TYPE}"


def check_hint(hint: PeerHint) -> None:
    """Raise ``MalformedHint`` unless every field of ``hint`` has a valid shape."""
    for field, pattern, value in (
        ("node_id", _NODE_ID, hint.node_id),
        ("center", _CENTER, hint.center),
        ("role", _ROLE, hint.role),
        ("version", _VERSION, hint.version),
    ):
        if pattern.fullmatch(value) is None:
            raise MalformedHint(f"bad {field} {value[:80]!r}")
    for field, port in (("port", hint.port), ("api_port", hint.api_port)):
        if not 1 <= port <= 65535:
            raise MalformedHint(f"bad {field} {port!r}")
    _check_host(hint.host)


def _check_host(host: str) -> ipaddress.IPv4Address:
    """Return ``host`` as an address a peer could be reached at, or raise."""
    try:
        addr = ipaddress.IPv4Address(host)
    except ValueError as e:
        raise MalformedHint(f"bad IPv4 address {host[:80]!r}") from e
    if addr.is_unspecified or addr.is_multicast or addr.is_reserved:  # reserved: 240/4
        raise MalformedHint(f"unusable IPv4 address {host}")
    return addr


def _port(raw: str) -> int:
    # int() alone would accept " 80", "+80" and "8_0".
    if _PORT.fullmatch(raw) is None or not 1 <= int(raw) <= 65535:
        raise MalformedHint(f"bad port {raw[:80]!r}")
    return int(raw)


def _txt(info: ServiceInfo) -> dict[str, str]:
    """Decode the TXT properties strictly (``decoded_properties`` would replace bad bytes)."""
    out: dict[str, str] = {}
    for key, value in info.properties.items():
        if value is None:
            continue
        try:
            out[key.decode("ascii")] = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedHint(f"undecodable TXT entry {key[:40]!r}") from e
    return out


def parse_info(info: ServiceInfo) -> PeerHint:
    """Return the hint advertised by a resolved ``info``; raise ``MalformedHint`` if invalid."""
    txt = _txt(info)
    missing = [k for k in (TXT_ID, TXT_CENTER, TXT_ROLE, TXT_PORT, TXT_API, TXT_VERSION)
               if k not in txt]
    if missing:
        raise MalformedHint(f"TXT lacks {', '.join(missing)}")
    port = _port(txt[TXT_PORT])
    if info.port != port:
        raise MalformedHint(f"SRV port {info.port} differs from TXT port {port}")
    hosts: list[str] = []
    for address in info.parsed_addresses(IPVersion.V4Only):
        try:
            _check_host(address)
        except MalformedHint:
            continue
        hosts.append(address)
    if not hosts:
        raise MalformedHint("no usable IPv4 address")
    hint = PeerHint(
        node_id=txt[TXT_ID], center=txt[TXT_CENTER], role=txt[TXT_ROLE], host=hosts[0],
        port=port, api_port=_port(txt[TXT_API]), version=txt[TXT_VERSION],
    )
    check_hint(hint)
    # on_gone reports the id from the instance name, so the two must agree.
    if info.name.lower() != instance_name(hint.node_id).lower():
        raise MalformedHint(f"instance name {info.name[:80]!r} does not match id {hint.node_id}")
    return hint


def hint_from_info(info: ServiceInfo) -> PeerHint | None:
    """Return the hint advertised by a resolved ``info``, or None (logged) if malformed."""
    try:
        return parse_info(info)
    except MalformedHint as e:
        log.debug("skipping mDNS peer %r: %s", info.name, e)
        return None
