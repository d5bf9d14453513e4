"""Helpers shared by the store tests: envelopes, tampering, snapshots."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from node.store import Store
from node.store.delta import Delta, decode, encode

SCOPE = "S1"
OTHER_SCOPE = "S2"


def chain_envelopes(store: Store, scope: str = SCOPE, origin: bytes | None = None) -> list[bytes]:
    """Return the stored envelopes of one chain (the store's own by default), in order."""
    return list(store.raw_deltas(origin or store.identity.public_key, scope))


def all_envelopes(store: Store) -> list[bytes]:
    """Return every envelope the store holds, chain by chain, in order."""
    out: list[bytes] = []
    for origin, scope in sorted(store.version_vector()):
        out.extend(store.raw_deltas(origin, scope))
    return out


def tamper(envelope: bytes, **changes: Any) -> bytes:
    """Return ``envelope`` with some fields replaced and the old signature kept."""
    return encode(dataclasses.replace(decode(envelope), **changes))


def flip(data: bytes, index: int = -1) -> bytes:
    """Return ``data`` with one bit of one byte inverted."""
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


async def trust(store: Store, *others: Store | bytes) -> None:
    """Make ``store`` accept the deltas of ``others`` (stores or public keys), off the loop."""
    for other in others:
        key = other if isinstance(other, bytes) else other.identity.public_key
        await asyncio.to_thread(store.trust, key, "test")


async def sync(dst: Store, src: Store) -> None:
    """Copy everything ``src`` holds that ``dst`` lacks, like a replication session would."""
    have = dst.version_vector()
    envelopes: list[bytes] = []
    for (origin, scope), _seq in sorted(src.version_vector().items()):
        envelopes.extend(src.raw_deltas(origin, scope, after=have.get((origin, scope), 0)))
    results = await dst.apply_remote(envelopes)
    assert all(r.status in ("applied", "duplicate") for r in results), results


def snapshot(store: Store, keys: list[str], collections: list[str]) -> dict[str, Any]:
    """Return everything a reader can see that must agree between converged stores."""
    views = {}
    for key in keys:
        v = store.get(key, include_deleted=True)
        views[key] = None if v is None else (v.scope, v.data)
    scans = {c: [(v.key, v.scope, v.data) for v in store.scan(c, include_deleted=True)]
             for c in collections}
    return {"views": views, "scans": scans, "vv": store.version_vector()}


def delta_of(envelope: bytes) -> Delta:
    """Decode an envelope (shorthand)."""
    return decode(envelope)
