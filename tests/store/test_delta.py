"""The signed delta: canonical signing bytes, signatures, the envelope codec (delta.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import DeltaRejected
from node.identity import Identity
from node.store.delta import (
    ENVELOPE_VERSION,
    GENESIS,
    MAX_UPDATE_BYTES,
    Delta,
    check_key,
    check_scope,
    decode,
    encode,
    make_delta,
    signing_bytes,
)

IDENT = Identity.generate()
BASE: dict[str, Any] = {
    "scope": "S1", "seq": 2, "prev": b"\x11" * 32, "key": "cand/1",
    "update": b"\x01\x02\x03", "user": "admin", "hlc": 123456789,
}


def _delta(**changes: Any) -> Delta:
    return make_delta(IDENT, **{**BASE, **changes})


def _envelope(**changes: Any) -> bytes:
    """Return a packed envelope of BASE with raw fields replaced (no validation)."""
    d = _delta()
    fields = {"version": ENVELOPE_VERSION, "origin": d.origin, "scope": d.scope, "seq": d.seq,
              "prev": d.prev, "key": d.key, "update": d.update, "user": d.user, "hlc": d.hlc,
              "sig": d.sig}
    fields.update(changes)
    return msgpack.packb(list(fields.values()), use_bin_type=True)


# --- signing bytes and signatures ------------------------------------------------------------


def test_signing_bytes_are_stable_for_equal_fields() -> None:
    a, b = _delta(), _delta()
    assert signing_bytes(a) == signing_bytes(b)
    assert a.sig == b.sig  # Ed25519 is deterministic: same bytes, same signature
    assert a.hash == b.hash
    # The signature is not part of what it signs.
    assert signing_bytes(dataclasses.replace(a, sig=bytes(64))) == signing_bytes(a)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("origin", Identity.generate().public_key), ("scope", "S2"), ("seq", 3),
        ("prev", b"\x12" * 32), ("key", "cand/2"), ("update", b"\x01\x02\x04"),
        ("user", "admin2"), ("hlc", 123456790),
    ],
)
def test_signing_bytes_change_with_every_field(field: str, value: Any) -> None:
    d = _delta()
    changed = dataclasses.replace(d, **{field: value})
    assert signing_bytes(changed) != signing_bytes(d)
    assert changed.hash != d.hash
    with pytest.raises(DeltaRejected) as info:
        changed.verify()
    assert info.value.reason == "bad_signature"


def test_signing_bytes_do_not_confuse_neighbouring_fields() -> None:
    # Moving bytes between adjacent string fields must not give the same encoding.
    a = dataclasses.replace(_delta(), key="cand/1x", user="")
    b = dataclasses.replace(_delta(), key="cand/1", user="x")
    assert signing_bytes(a) != signing_bytes(b)


def test_hash_covers_the_signature() -> None:
    d = _delta()
    assert dataclasses.replace(d, sig=bytes(64)).hash != d.hash


def test_made_delta_verifies_and_another_key_does_not() -> None:
    d = _delta()
    d.verify()
    assert d.origin == IDENT.public_key
    forged = dataclasses.replace(d, origin=Identity.generate().public_key)
    with pytest.raises(DeltaRejected, match="signature"):
        forged.verify()


# --- encode / decode -------------------------------------------------------------------------

deltas = st.builds(
    lambda scope, seq, prev, key, update, user, hlc: make_delta(
        IDENT, scope=scope, seq=seq, prev=GENESIS if seq == 1 else prev, key=key,
        update=update, user=user, hlc=hlc),
    scope=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z"),
    seq=st.integers(1, 2**63 - 1),
    prev=st.binary(min_size=32, max_size=32),
    key=st.from_regex(r"\A[a-z][a-z0-9_]{0,31}/[a-zA-Z0-9 /._\u00e9-]{1,100}\Z"),
    update=st.binary(max_size=200),
    user=st.text(max_size=128),
    hlc=st.integers(0, 2**63 - 1),
)


@settings(max_examples=50, deadline=None)
@given(d=deltas)
def test_encode_decode_round_trip(d: Delta) -> None:
    raw = encode(d)
    back = decode(raw)
    assert back == d
    assert encode(back) == raw
    assert back.hash == d.hash
    back.verify()


def test_decode_accepts_buffers() -> None:
    raw = encode(_delta())
    assert decode(bytearray(raw)) == decode(memoryview(raw)) == _delta()


@pytest.mark.parametrize(
    "raw",
    [
        b"", b"\xc1", b"not msgpack at all", msgpack.packb(None), msgpack.packb(7),
        msgpack.packb("text"), msgpack.packb(b"bytes"), msgpack.packb({"a": 1}),
        msgpack.packb([]), msgpack.packb([1] * 9), msgpack.packb([1] * 11),
        msgpack.packb(list(range(17))),
    ],
    ids=lambda r: r[:12].hex() or "empty",
)
def test_decode_rejects_wrong_shapes(raw: bytes) -> None:
    with pytest.raises(DeltaRejected) as info:
        decode(raw)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 2}, {"version": 0},
        {"origin": b"\x00" * 31}, {"origin": "x" * 32}, {"origin": None},
        {"scope": 5}, {"seq": "2"}, {"seq": 0}, {"seq": -1}, {"seq": 2**63}, {"seq": 2.0},
        {"prev": b"\x00" * 31}, {"prev": "p" * 32}, {"update": "text"}, {"update": None},
        {"user": b"bytes"}, {"user": "u" * 129}, {"hlc": -1}, {"hlc": 2**63}, {"hlc": 1.5},
        {"hlc": None}, {"sig": b"\x00" * 63}, {"sig": "s" * 64}, {"key": 1},
        {"update": [1, 2]}, {"user": {"nested": 1}},
    ],
    ids=repr,
)
def test_decode_rejects_wrong_types_and_bounds(changes: dict[str, Any]) -> None:
    with pytest.raises(DeltaRejected) as info:
        decode(_envelope(**changes))
    assert info.value.reason in ("malformed", "bad_scope", "bad_key")


def test_decode_rejects_booleans_for_integers() -> None:
    # BUG: decode checks isinstance(x, int), which booleans pass, so an envelope with
    # seq=True (msgpack 0xc3) decodes as a seq-1 delta whose signing bytes and hash
    # differ from the int encoding: two valid encodings of one (origin, scope, seq).
    # Same for hlc=True/False.
    with pytest.raises(DeltaRejected) as info:
        decode(_envelope(seq=True, prev=GENESIS))
    assert info.value.reason == "malformed"


def test_decode_rejects_bad_scope_and_key_values() -> None:
    with pytest.raises(DeltaRejected) as info:
        decode(_envelope(scope="bad scope"))
    assert info.value.reason == "bad_scope"
    with pytest.raises(DeltaRejected) as info:
        decode(_envelope(key="nokey"))
    assert info.value.reason == "bad_key"


def test_decode_rejects_a_first_delta_not_linked_to_genesis() -> None:
    with pytest.raises(DeltaRejected) as info:
        decode(_envelope(seq=1, prev=b"\x01" * 32))
    assert info.value.reason == "bad_chain"
    assert decode(_envelope(seq=1, prev=GENESIS)).seq == 1


def test_decode_rejects_oversize_input() -> None:
    with pytest.raises(DeltaRejected) as info:
        decode(b"\x00" * (MAX_UPDATE_BYTES + 4097))
    assert info.value.reason == "too_large"
    # An update just over the limit inside an otherwise small envelope.
    with pytest.raises(DeltaRejected):
        decode(_envelope(update=b"\x00" * (MAX_UPDATE_BYTES + 1)))
    # The largest allowed update still decodes.
    big = _delta(update=b"\x00" * MAX_UPDATE_BYTES)
    assert decode(encode(big)).update == big.update


def test_decode_rejects_non_bytes() -> None:
    for value in ("text", None, 42, [b"x"]):
        with pytest.raises(DeltaRejected) as info:
            decode(value)  # type: ignore[arg-type]
        assert info.value.reason == "malformed"


# --- scope and key names ---------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["global", "S1", "DEMO-01", "a_b", "x" * 64])
def test_valid_scopes(scope: str) -> None:
    assert check_scope(scope) == scope


@pytest.mark.parametrize("scope", ["", "-a", "_a", "a b", "x" * 65, "a/b", "caf\u00e9", None])
def test_invalid_scopes(scope: Any) -> None:
    with pytest.raises(DeltaRejected) as info:
        check_scope(scope)
    assert info.value.reason == "bad_scope"


@pytest.mark.parametrize(
    "key", ["cand/1", "users/r\u00e9ka", "a/b/c", "x_9/ spaced ", "c/" + "y" * 220],
)
def test_valid_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["", "cand", "/x", "Cand/1", "9c/1", "cand/", "cand/a\x00", "cand/\x7f", "c/" + "y" * 221,
     "c" * 33 + "/1", None, b"cand/1"],
)
def test_invalid_keys(key: Any) -> None:
    with pytest.raises(DeltaRejected) as info:
        check_key(key)
    assert info.value.reason == "bad_key"


def test_trailing_newline_is_not_a_valid_scope_or_key() -> None:
    # BUG: SCOPE_RE and KEY_RE end in "$", which also matches before a trailing
    # "\n", and check_* use re.match; so "global\n" is accepted as a scope (a chain
    # distinct from "global") and "cand/1\n" as a record key. Use \Z or fullmatch.
    with pytest.raises(DeltaRejected):
        check_scope("global\n")
    with pytest.raises(DeltaRejected):
        check_key("cand/1\n")
