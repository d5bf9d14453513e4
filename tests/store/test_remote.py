"""Applying deltas from elsewhere: trust, signatures, malformed input, chains, forks, gaps."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import msgpack
import pytest

from node.errors import ScopeNotWritable
from node.identity import Identity
from node.store import ApplyStatus, Store, StoreOptions
from node.store.delta import GENESIS, MAX_UPDATE_BYTES, decode, encode, make_delta
from node.store.hlc import hlc_from_millis
from node.store.verify import verify_store
from tests.store.conftest import TEST_OPTIONS, OpenStore
from tests.store.helpers import OTHER_SCOPE, SCOPE, chain_envelopes, flip, tamper, trust

APPLIED, DUPLICATE, HELD, FORKED, REJECTED = (
    ApplyStatus.APPLIED, ApplyStatus.DUPLICATE, ApplyStatus.HELD, ApplyStatus.FORKED,
    ApplyStatus.REJECTED,
)


@pytest.fixture
async def origin(open_store: OpenStore) -> Store:
    """A store that made three changes to cand/1 and one to cand/2 in SCOPE."""
    s = open_store("origin")
    await s.put("cand/1", {"a": 1}, scope=SCOPE, user="u1")
    await s.put("cand/1", {"b": 2})
    await s.put("cand/2", {"c": 3}, scope=SCOPE)
    await s.put("cand/1", {"a": 4})
    return s


@pytest.fixture
async def receiver(open_store: OpenStore, origin: Store) -> Store:
    """A fresh store that trusts ``origin``."""
    s = open_store("receiver")
    await trust(s, origin)
    return s


def _state(store: Store) -> tuple[object, ...]:
    """Everything a rejected or duplicate delta must leave alone."""
    st = store.stats()
    views = [(v.key, v.hlc, v.data) for v in store.scan("cand", include_deleted=True)]
    return (views, store.version_vector(), store.feed_head(), st["log_entries"],
            st["pending_entries"], st["quarantine_entries"])


def _forge(origin: Store, seq: int, prev: bytes, update_from: bytes, key: str = "cand/1",
           hlc: int | None = None) -> bytes:
    """Sign, with the origin's own key, a delta the origin never made."""
    d = decode(update_from)
    return encode(make_delta(origin.identity, scope=SCOPE, seq=seq, prev=prev, key=key,
                             update=d.update, user="forger", hlc=hlc or d.hlc + 1))


async def _other_update(open_store: OpenStore, data: dict[str, object]) -> bytes:
    """Return an envelope whose update bytes are a valid, different change to cand/1."""
    other = open_store("other")
    await other.put("cand/1", data, scope=SCOPE)
    return chain_envelopes(other)[0]


async def test_full_chain_applies_and_matches_the_origin(origin: Store, receiver: Store) -> None:
    results = await receiver.apply_remote(chain_envelopes(origin))
    assert [r.status for r in results] == [APPLIED] * 4
    assert receiver.get("cand/1").data == origin.get("cand/1").data == {"a": 4, "b": 2}
    assert receiver.get("cand/1").scope == SCOPE
    assert receiver.get("cand/2").data == {"c": 3}
    assert receiver.version_vector() == origin.version_vector()
    assert list(receiver.raw_deltas(origin.identity.public_key, SCOPE)) == chain_envelopes(origin)
    assert [e.seq for e in receiver.feed_since(0)] == [1, 2, 3, 4]
    report = verify_store(receiver)
    assert report.ok, report.problems


async def test_unknown_signer_is_rejected_until_trusted(open_store: OpenStore,
                                                        origin: Store) -> None:
    stranger = open_store("stranger")
    before = _state(stranger)
    results = await stranger.apply_remote(chain_envelopes(origin))
    assert [(r.status, r.reason) for r in results] == [(REJECTED, "unknown_signer")] * 4
    assert _state(stranger) == before
    assert stranger.quarantined() == []
    await trust(stranger, origin)
    assert {r.status for r in await stranger.apply_remote(chain_envelopes(origin))} == {APPLIED}
    assert stranger.get("cand/1").data == {"a": 4, "b": 2}


async def test_trust_policy_decides_for_signers_not_trusted_directly(
        open_store: OpenStore, origin: Store) -> None:
    await origin.put("exam/1", {"x": 1}, scope=OTHER_SCOPE)
    node = open_store("policy")
    asked: list[tuple[bytes, str, int]] = []

    def policy(txn: object, pk: bytes, scope: str, hlc: int) -> str | None:
        asked.append((pk, scope, hlc))
        return "revoked" if scope == OTHER_SCOPE else None

    node.set_trust_policy(policy)
    results = await node.apply_remote(
        chain_envelopes(origin) + chain_envelopes(origin, OTHER_SCOPE))
    assert [(r.status, r.reason) for r in results] == [(APPLIED, "")] * 4 + [
        (REJECTED, "revoked")]
    assert asked[-1] == (origin.identity.public_key, OTHER_SCOPE,
                         decode(chain_envelopes(origin, OTHER_SCOPE)[0]).hlc)
    assert node.version_vector() == {(origin.identity.public_key, SCOPE): 4}


async def test_scope_this_node_may_not_write_is_refused_locally(store: Store) -> None:
    store.set_trust_policy(lambda txn, pk, scope, hlc: "unknown_signer",
                           may_write=lambda scope: scope != OTHER_SCOPE)
    await store.put("cand/1", {"a": 1}, scope=SCOPE)
    with pytest.raises(ScopeNotWritable):
        await store.put("cand/2", {"a": 1}, scope=OTHER_SCOPE)
    with pytest.raises(ScopeNotWritable):
        await store.change("cand/2", lambda root: root.__setitem__("a", 1), scope=OTHER_SCOPE)
    assert store.get("cand/2") is None
    assert store.version_vector() == {(store.identity.public_key, SCOPE): 1}


async def test_own_deltas_coming_back_are_duplicates(origin: Store) -> None:
    before = _state(origin)
    results = await origin.apply_remote(chain_envelopes(origin))
    assert {r.status for r in results} == {DUPLICATE}
    assert _state(origin) == before


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("update", lambda d: {"update": flip(d.update)}),
        ("sig", lambda d: {"sig": flip(d.sig, 0)}),
        ("key", lambda d: {"key": "cand/9"}),
        ("user", lambda d: {"user": "mallory"}),
        ("hlc", lambda d: {"hlc": d.hlc + 1}),
        ("prev", lambda d: {"prev": flip(d.prev)}),
        ("scope", lambda d: {"scope": OTHER_SCOPE}),
    ],
)
async def test_tampered_delta_is_rejected(origin: Store, receiver: Store, field: str,
                                          change: Callable[..., dict[str, object]]) -> None:
    envelopes = chain_envelopes(origin)
    await receiver.apply_remote(envelopes[:1])
    before = _state(receiver)
    bad = tamper(envelopes[1], **change(decode(envelopes[1])))
    [result] = await receiver.apply_remote([bad])
    assert (result.status, result.reason) == (REJECTED, "bad_signature"), field
    assert _state(receiver) == before
    # The genuine delta still goes through afterwards.
    [ok] = await receiver.apply_remote(envelopes[1:2])
    assert ok.status == APPLIED


def _field_swapped(envelope: bytes, index: int, value: object) -> bytes:
    fields = msgpack.unpackb(envelope, raw=False)
    fields[index] = value
    return msgpack.packb(fields, use_bin_type=True)


@pytest.mark.parametrize(
    ("make_bad", "reason"),
    [
        (lambda env: b"", "malformed"),
        (lambda env: b"garbage\xff\x00", "malformed"),
        (lambda env: os.urandom(300), "malformed"),
        (lambda env: env[: len(env) // 2], "malformed"),
        (lambda env: env + b"\x00", "malformed"),
        (lambda env: msgpack.packb([1, 2, 3]), "malformed"),
        (lambda env: msgpack.packb({"origin": "x"}), "malformed"),
        (lambda env: msgpack.packb(list(range(10))), "malformed"),
        (lambda env: _field_swapped(env, 0, 2), "malformed"),  # unknown envelope version
        (lambda env: _field_swapped(env, 3, "1"), "malformed"),  # seq as text
        (lambda env: _field_swapped(env, 3, 0), "malformed"),
        (lambda env: _field_swapped(env, 1, b"short"), "malformed"),
        (lambda env: _field_swapped(env, 9, b"\x00" * 10), "malformed"),
        (lambda env: _field_swapped(env, 2, "no such scope!"), "bad_scope"),
        (lambda env: _field_swapped(env, 5, "NoKey"), "bad_key"),
        (lambda env: "text, not bytes", "malformed"),
        (lambda env: b"\x00" * (MAX_UPDATE_BYTES + 8192), "too_large"),
    ],
)
async def test_malformed_input_is_rejected(origin: Store, receiver: Store,
                                           make_bad: Callable[[bytes], bytes], reason: str) -> None:
    before = _state(receiver)
    [result] = await receiver.apply_remote([make_bad(chain_envelopes(origin)[0])])
    assert (result.status, result.reason) == (REJECTED, reason)
    assert _state(receiver) == before


async def test_gap_is_held_then_released_in_order(origin: Store, receiver: Store) -> None:
    e1, e2, e3, e4 = chain_envelopes(origin)
    results = await receiver.apply_remote([e4, e2, e3])
    assert [(r.status, r.reason) for r in results] == [(HELD, "gap")] * 3
    assert receiver.stats()["pending_entries"] == 3
    assert receiver.get("cand/1") is None
    assert receiver.version_vector() == {}
    assert receiver.feed_head() == 0

    [first] = await receiver.apply_remote([e1])
    assert (first.status, first.released) == (APPLIED, 3)
    assert receiver.stats()["pending_entries"] == 0
    assert receiver.version_vector() == origin.version_vector()
    assert receiver.get("cand/1").data == {"a": 4, "b": 2}
    assert [e.seq for e in receiver.feed_since(0)] == [1, 2, 3, 4]
    assert {r.status for r in await receiver.apply_remote([e1, e2, e3, e4])} == {DUPLICATE}


async def test_held_deltas_survive_a_restart(open_store: OpenStore, origin: Store) -> None:
    ident = Identity.generate()
    receiver = open_store("receiver", identity=ident)
    await trust(receiver, origin)
    e1, *rest = chain_envelopes(origin)
    assert {r.status for r in await receiver.apply_remote(rest)} == {HELD}
    receiver.close()
    receiver = open_store("receiver", identity=ident)
    assert receiver.stats()["pending_entries"] == 3
    [r] = await receiver.apply_remote([e1])
    assert (r.status, r.released) == (APPLIED, 3)
    assert receiver.get("cand/1").data == {"a": 4, "b": 2}


async def test_replay_is_a_duplicate_and_changes_nothing(origin: Store, receiver: Store) -> None:
    envelopes = chain_envelopes(origin)
    await receiver.apply_remote(envelopes)
    before = _state(receiver)
    results = await receiver.apply_remote(envelopes + envelopes[::-1])
    assert {r.status for r in results} == {DUPLICATE}
    assert _state(receiver) == before
    assert receiver.quarantined() == []


async def test_broken_link_is_a_fork_and_quarantined(origin: Store, receiver: Store) -> None:
    e1, e2, *_ = chain_envelopes(origin)
    await receiver.apply_remote([e1])
    before = _state(receiver)[:3]
    forged = _forge(origin, seq=2, prev=os.urandom(32), update_from=e2)
    [r] = await receiver.apply_remote([forged])
    assert (r.status, r.reason) == (FORKED, "fork")
    assert _state(receiver)[:3] == before  # views, vv and feed untouched
    [q] = receiver.quarantined()
    assert (q["reason"], q["origin"], q["scope"], q["seq"], q["key"]) == (
        "fork", origin.identity.public_key.hex(), SCOPE, 2, "cand/1")
    # The genuine successor is still accepted.
    assert (await receiver.apply_remote([e2]))[0].status == APPLIED
    assert receiver.get("cand/1").data == {"a": 1, "b": 2}


async def test_second_delta_for_a_seq_is_a_fork_never_merged(
        open_store: OpenStore, origin: Store, receiver: Store) -> None:
    envelopes = chain_envelopes(origin)
    await receiver.apply_remote(envelopes)
    before = _state(receiver)[:4]
    evil = await _other_update(open_store, {"a": "evil"})
    # Correctly signed and correctly linked to seq 2, but not the seq 3 we hold.
    twin = _forge(origin, seq=3, prev=decode(envelopes[1]).hash, update_from=evil)
    [r] = await receiver.apply_remote([twin])
    assert (r.status, r.reason) == (FORKED, "fork")
    assert _state(receiver)[:4] == before
    assert receiver.get("cand/1").data == {"a": 4, "b": 2}
    assert [(q["seq"], q["reason"]) for q in receiver.quarantined()] == [(3, "fork")]
    # A fork of the first delta is caught too.
    first = _forge(origin, seq=1, prev=GENESIS, update_from=evil)
    assert (await receiver.apply_remote([first]))[0].status == FORKED
    assert len(receiver.quarantined()) == 2


async def test_fork_between_held_deltas_is_not_merged(
        open_store: OpenStore, origin: Store, receiver: Store) -> None:
    # BUG: txns._hold puts a held delta under (origin, scope, seq) with a plain put,
    # so a second, different delta for a seq already held silently replaces the
    # first: it is reported HELD, not FORKED, nothing is quarantined, and the
    # replacement is merged once the gap fills.
    e1, e2, e3, e4 = chain_envelopes(origin)
    evil = await _other_update(open_store, {"a": "evil"})
    twin = _forge(origin, seq=4, prev=decode(e3).hash, update_from=evil)
    assert (await receiver.apply_remote([e4]))[0].status == HELD
    [r] = await receiver.apply_remote([twin])
    assert r.status == FORKED
    await receiver.apply_remote([e1, e2, e3])
    assert receiver.get("cand/1").data == {"a": 4, "b": 2}
    assert [(q["seq"], q["reason"]) for q in receiver.quarantined()] == [(4, "fork")]


async def test_held_delta_with_a_bad_link_is_quarantined_on_release(
        origin: Store, receiver: Store) -> None:
    e1, e2, *_ = chain_envelopes(origin)
    forged = _forge(origin, seq=2, prev=os.urandom(32), update_from=e2)
    assert (await receiver.apply_remote([forged]))[0].status == HELD
    [r] = await receiver.apply_remote([e1])
    assert (r.status, r.released) == (APPLIED, 0)
    assert [(q["seq"], q["reason"]) for q in receiver.quarantined()] == [(2, "fork")]
    assert receiver.version_vector() == {(origin.identity.public_key, SCOPE): 1}
    assert (await receiver.apply_remote([e2]))[0].status == APPLIED


async def test_pending_is_bounded(open_store: OpenStore, origin: Store) -> None:
    small = open_store("small", options=StoreOptions(map_size=TEST_OPTIONS.map_size,
                                                     max_pending=2))
    await trust(small, origin)
    _e1, e2, e3, e4 = chain_envelopes(origin)
    results = await small.apply_remote([e2, e3, e4])
    assert [(r.status, r.reason) for r in results] == [
        (HELD, "gap"), (HELD, "gap"), (REJECTED, "pending_full")]
    assert small.stats()["pending_entries"] == 2


async def test_same_key_created_in_two_scopes_is_reported(open_store: OpenStore) -> None:
    a, b = open_store("a"), open_store("b")
    await trust(b, a)
    await a.put("cand/1", {"from": "a"}, scope=SCOPE)
    await a.put("cand/2", {"from": "a"}, scope=SCOPE)
    await b.put("cand/1", {"from": "b"}, scope=OTHER_SCOPE)
    results = await b.apply_remote(chain_envelopes(a))
    assert [(r.status, r.conflicts) for r in results] == [(APPLIED, ["cand/1"]), (APPLIED, [])]
    assert b.get("cand/1").data == {"from": "b"} and b.get("cand/1").scope == OTHER_SCOPE
    assert b.get("cand/2").data == {"from": "a"}
    assert b.version_vector()[(a.identity.public_key, SCOPE)] == 2  # the chain stays whole
    assert [(q["key"], q["reason"]) for q in b.quarantined()] == [("cand/1", "scope_conflict")]
    report = verify_store(b)
    assert report.ok, report.problems


async def test_remote_clock_moves_the_local_clock(open_store: OpenStore, origin: Store) -> None:
    ident = Identity.generate()
    receiver = open_store("receiver", identity=ident)
    await trust(receiver, origin)
    future = hlc_from_millis(int(time.time() * 1000) + 3_600_000)  # an hour ahead
    e1 = chain_envelopes(origin)[0]
    ahead = _forge(origin, seq=1, prev=GENESIS, update_from=e1, hlc=future)
    assert (await receiver.apply_remote([ahead]))[0].status == APPLIED
    assert (await receiver.put("cand/5", {"x": 1}, scope=SCOPE)).hlc > future
    receiver.close()
    receiver = open_store("receiver", identity=ident)  # the clock is persisted
    assert (await receiver.put("cand/5", {"x": 2})).hlc > future


async def test_apply_remote_sync_works_off_the_loop(origin: Store, receiver: Store) -> None:
    results = await asyncio.to_thread(receiver.apply_remote_sync, chain_envelopes(origin))
    assert [r.status for r in results] == [APPLIED] * 4
    assert receiver.get("cand/1").data == {"a": 4, "b": 2}
