"""LMDB layout: the named databases and how their keys are built.

DESIGN.md section 6. Every key format lives here so that the writer, the
readers and ``verify`` agree on it.

    meta        node metadata (hlc, feed counter, trusted signers)
    records     record key -> [scope, full CRDT state, [parked updates]]
    views       record key -> [scope, hlc, origin, plain dict]
    idx         collection \0 index \0 value \0 record key -> b""
    log         origin | scope \0 | seq(8) -> delta envelope
    vv          origin | scope -> [seq, head hash]   (version vector)
    pending     like log: remote deltas held back until their predecessor arrives
    quarantine  origin | scope \0 | seq(8) | hash -> [envelope, reason]
    feed        local arrival number(8) -> [origin, scope, seq, record key, hlc]
    blobs       sha256 -> bytes
    signers     Ed25519 public key -> certificate chain (interpreted by node.trust)
"""

from __future__ import annotations

import struct

DB_NAMES = (
    "meta", "records", "views", "idx", "log", "vv", "pending", "quarantine", "feed", "blobs",
    "signers",
)
SEQ = struct.Struct(">Q")

META_HLC = b"hlc"
META_FEED = b"feed_seq"
META_SCHEMA = b"schema"
META_TRUST_PREFIX = b"trust:"
META_RESTORED = b"restored"
SCHEMA_VERSION = 1
ALL = "*"  # index "collection" of indexes that cover every collection
BLOB_FIELDS = ("sha256", "thumb_sha256")  # keys whose values name a blob, at any depth


def blob_refs(value: object) -> list[str]:
    """Return the blob hashes a view references: values of BLOB_FIELDS keys, at any depth."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k in BLOB_FIELDS and isinstance(v, str) and len(v) == 64:
                out.append(v)
            elif isinstance(v, dict | list):
                out.extend(blob_refs(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(blob_refs(v))
    return out


def chain_key(origin: bytes, scope: str) -> bytes:
    """Return the key of one (origin, scope) chain."""
    return origin + scope.encode("ascii")


def split_chain_key(raw: bytes) -> tuple[bytes, str]:
    """Invert ``chain_key``."""
    return raw[:32], raw[32:].decode("ascii")


def log_prefix(origin: bytes, scope: str) -> bytes:
    """Return the prefix shared by every log key of one chain."""
    return chain_key(origin, scope) + b"\x00"


def log_key(origin: bytes, scope: str, seq: int) -> bytes:
    """Return the log key of delta ``seq`` of a chain."""
    return log_prefix(origin, scope) + SEQ.pack(seq)


def split_log_key(raw: bytes) -> tuple[bytes, str, int]:
    """Invert ``log_key``."""
    origin, rest = raw[:32], raw[32:]
    scope, seq = rest[:-9], rest[-8:]
    return origin, scope.decode("ascii"), SEQ.unpack(seq)[0]


def index_prefix(collection: str, index: str, value: str | None = None) -> bytes:
    """Return the prefix of an index, or of one value within it."""
    base = f"{collection}\x00{index}\x00".encode()
    if value is None:
        return base
    return base + value.encode() + b"\x00"


def index_key(collection: str, index: str, value: str, record_key: str) -> bytes:
    """Return one secondary index entry."""
    return index_prefix(collection, index, value) + record_key.encode()


def collection_of(record_key: str) -> str:
    """Return the collection part of ``collection/id``."""
    return record_key.split("/", 1)[0]
