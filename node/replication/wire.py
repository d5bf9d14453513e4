"""Messages of a peer session, msgpack-encoded in websocket binary frames.

    hello  {t, id, center, role, v, hlc, vv: [[origin, scope, seq], ...]}
    certs  {t, chains: [[der, ...], ...]}          certificates of origins to come
    chain  {t, n, o: origin, s: scope, d: [[seq, key, update, user, hlc, sig], ...]}
    ack    {t, n, o, s, head, r}                   receiver's chain head after applying
    ping   {t, hlc, ts, vv}                         heartbeat; vv lets the peer see its lag
    pong   {t, hlc, ts}
    want   {t, h: [sha256 hex, ...]}                blobs that records reference, missing here
    blob   {t, h, b}                                one blob; stored only if its hash matches

A chain message omits each delta's origin, scope and ``prev``: the batch names
the chain once and the receiver supplies ``prev`` from the delta it already
holds, which the signature then proves (``Store.apply_chain``).
"""

from __future__ import annotations

from typing import Any

import msgpack

from node.errors import ExamnodeError

MAX_MESSAGE = 32 * 1024 * 1024
KINDS = {"hello", "certs", "chain", "ack", "ping", "pong", "want", "blob"}


class ProtocolError(ExamnodeError):
    code = "protocol"


def pack(message: dict[str, Any]) -> bytes:
    """Encode one message."""
    out: bytes = msgpack.packb(message, use_bin_type=True)
    return out


def unpack(data: bytes) -> dict[str, Any]:
    """Decode one message, refusing anything malformed."""
    try:
        msg = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=MAX_MESSAGE,
                              max_str_len=1 << 20, max_array_len=1 << 20, max_map_len=64)
    except Exception as e:  # garbage from a peer: one clear error type
        raise ProtocolError(f"undecodable message: {type(e).__name__}") from e
    if not isinstance(msg, dict) or msg.get("t") not in KINDS:
        raise ProtocolError("message without a known type")
    return msg


VV = dict[tuple[bytes, str], int]


def vv_to_wire(vv: VV) -> list[list[Any]]:
    """Encode a version vector."""
    return [[o, s, n] for (o, s), n in vv.items()]


def vv_from_wire(raw: Any) -> VV:
    """Decode a version vector, refusing malformed entries."""
    if not isinstance(raw, list):
        raise ProtocolError("version vector is not a list")
    out: VV = {}
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], bytes)
                and len(entry[0]) == 32 and isinstance(entry[1], str)
                and isinstance(entry[2], int) and entry[2] >= 0):
            raise ProtocolError("malformed version vector entry")
        out[(entry[0], entry[1])] = entry[2]
    return out
