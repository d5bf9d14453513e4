"""Reading Yjs state vectors, to tell when an update is parked as pending.

pycrdt integrates an update whose dependencies are missing only later, and
silently (DESIGN.md section 4). The store compares the state vector an update
needs with the document's to know which updates are still parked.
"""

from __future__ import annotations

import pycrdt


def _read_varuint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def decode_state_vector(sv: bytes) -> dict[int, int]:
    """Decode a Yjs v1 state vector into {client id: next clock}."""
    count, pos = _read_varuint(sv, 0)
    out: dict[int, int] = {}
    for _ in range(count):
        client, pos = _read_varuint(sv, pos)
        clock, pos = _read_varuint(sv, pos)
        out[client] = clock
    return out


def covers(doc_state: dict[int, int], update: bytes) -> bool:
    """Return True when a document with ``doc_state`` has integrated ``update``."""
    needed = decode_state_vector(pycrdt.get_state(update))
    return all(doc_state.get(client, 0) >= clock for client, clock in needed.items())
