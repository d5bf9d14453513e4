"""The signed delta: one change to one record, and its one canonical encoding.

DESIGN.md section 5. ``signing_bytes`` is the only function that decides what a
signature covers; ``encode``/``decode`` are the envelope on disk and on the
wire. The delta hash, which the next delta of the same (origin, scope) chain
carries as ``prev``, is computed from the signed fields and the signature, so
it does not depend on how a peer packs the envelope.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import msgpack

from node.errors import DeltaRejected
from node.identity import Identity, verify_signature

DOMAIN = b"examnode-delta-v1"
ENVELOPE_VERSION = 1
GENESIS = bytes(32)
MAX_KEY_BYTES = 256
MAX_USER_CHARS = 128
MAX_UPDATE_BYTES = 4 * 1024 * 1024

SCOPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}/[^\x00-\x1f\x7f]{1,220}$")


def check_scope(scope: str) -> str:
    """Return ``scope`` if it is a valid scope name (a centre code or ``global``)."""
    if not isinstance(scope, str) or not SCOPE_RE.fullmatch(scope):
        raise DeltaRejected(f"invalid scope {scope!r}", reason="bad_scope")
    return scope


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid record key (``collection/id``)."""
    if (
        not isinstance(key, str)
        or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES
        or not KEY_RE.fullmatch(key)
    ):
        raise DeltaRejected(f"invalid record key {key!r}", reason="bad_key")
    return key


@dataclass(frozen=True, slots=True)
class Delta:
    """One signed change to one record."""

    origin: bytes  # Ed25519 public key of the node that made the change
    scope: str
    seq: int  # 1, 2, 3... per (origin, scope)
    prev: bytes  # hash of delta seq-1 of the same chain; GENESIS for seq 1
    key: str
    update: bytes  # pycrdt (Yjs v1) update bytes
    user: str  # acting user ("" when the node itself acted)
    hlc: int
    sig: bytes

    @property
    def hash(self) -> bytes:
        """Return the hash that the next delta of this chain links to."""
        return delta_hash(signing_bytes(self), self.sig)

    @property
    def chain(self) -> tuple[bytes, str]:
        return (self.origin, self.scope)

    def verify(self) -> None:
        """Raise DeltaRejected unless the signature matches the fields."""
        if not verify_signature(self.origin, signing_bytes(self), self.sig):
            raise DeltaRejected("signature does not verify", reason="bad_signature")


def signing_bytes(d: Delta | _Unsigned) -> bytes:
    """Return the canonical bytes an Ed25519 signature covers."""
    out: bytes = msgpack.packb(
        [DOMAIN, d.origin, d.scope, d.seq, d.prev, d.key, d.update, d.user, d.hlc],
        use_bin_type=True,
    )
    return out


def delta_hash(signed: bytes, sig: bytes) -> bytes:
    """Return the chain hash of a delta from its signing bytes and signature."""
    return hashlib.sha256(signed + sig).digest()


@dataclass(frozen=True, slots=True)
class _Unsigned:
    origin: bytes
    scope: str
    seq: int
    prev: bytes
    key: str
    update: bytes
    user: str
    hlc: int


def make_delta(
    identity: Identity,
    *,
    scope: str,
    seq: int,
    prev: bytes,
    key: str,
    update: bytes,
    user: str,
    hlc: int,
) -> Delta:
    """Build and sign a delta with the node's key."""
    return make_delta_hashed(identity, scope=scope, seq=seq, prev=prev, key=key,
                             update=update, user=user, hlc=hlc)[0]


def make_delta_hashed(identity: Identity, *, scope: str, seq: int, prev: bytes, key: str,
                      update: bytes, user: str, hlc: int) -> tuple[Delta, bytes]:
    """Build and sign a delta; also return its chain hash (computed once)."""
    origin = identity.public_key
    signed = signing_bytes(_Unsigned(origin, scope, seq, prev, key, update, user, hlc))
    sig = identity.sign(signed)
    return (Delta(origin, scope, seq, prev, key, update, user, hlc, sig),
            delta_hash(signed, sig))


def encode(d: Delta) -> bytes:
    """Return the msgpack envelope of a delta."""
    out: bytes = msgpack.packb(
        [ENVELOPE_VERSION, d.origin, d.scope, d.seq, d.prev, d.key, d.update, d.user, d.hlc, d.sig],
        use_bin_type=True,
    )
    return out


def decode(raw: bytes) -> Delta:
    """Parse an envelope, checking shape and bounds (not the signature)."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise DeltaRejected("delta is not bytes", reason="malformed")
    if len(raw) > MAX_UPDATE_BYTES + 4096:
        raise DeltaRejected("delta too large", reason="too_large")
    try:
        fields: Any = msgpack.unpackb(
            bytes(raw), raw=False, use_list=True, strict_map_key=True,
            max_bin_len=MAX_UPDATE_BYTES, max_str_len=4096, max_array_len=16, max_map_len=0,
        )
    except Exception as e:  # msgpack raises many types on garbage; all mean "malformed"
        raise DeltaRejected(f"delta is not a valid envelope: {type(e).__name__}",
                            reason="malformed") from e
    if not isinstance(fields, list) or len(fields) != 10 or fields[0] != ENVELOPE_VERSION:
        raise DeltaRejected("delta envelope has the wrong shape or version", reason="malformed")
    _, origin, scope, seq, prev, key, update, user, hlc, sig = fields
    return check(Delta(origin, scope, seq, prev, key, update, user, hlc, sig))


def check(d: Delta) -> Delta:
    """Return ``d`` if every field has the right type and bounds (not the signature)."""
    origin, scope, seq, prev, key, update, user, hlc, sig = (
        d.origin, d.scope, d.seq, d.prev, d.key, d.update, d.user, d.hlc, d.sig)
    ok = (
        isinstance(origin, bytes) and len(origin) == 32
        and type(seq) is int and 1 <= seq < 2**63
        and isinstance(prev, bytes) and len(prev) == 32
        and isinstance(update, bytes)
        and isinstance(user, str) and len(user) <= MAX_USER_CHARS
        and type(hlc) is int and 0 <= hlc < 2**63
        and isinstance(sig, bytes) and len(sig) == 64
    )
    if not ok:
        raise DeltaRejected("delta envelope has a field of the wrong type", reason="malformed")
    check_scope(scope)
    check_key(key)
    if isinstance(update, bytes) and len(update) > MAX_UPDATE_BYTES:
        raise DeltaRejected("delta too large", reason="too_large")
    if seq == 1 and prev != GENESIS:
        raise DeltaRejected("first delta of a chain must link to genesis", reason="bad_chain")
    return d
