"""The hybrid logical clock (node/store/hlc.py)."""

from __future__ import annotations

import itertools
import threading

import pytest

from node.store.hlc import MAX_HLC, HybridClock, hlc_from_millis, hlc_millis


class FakeWall:
    """A wall clock the test sets by hand (seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_millis_round_trip() -> None:
    ms = 1_700_000_000_123
    assert hlc_millis(hlc_from_millis(ms)) == ms
    assert hlc_millis(hlc_from_millis(ms) + 5) == ms


def test_follows_the_wall_clock_when_it_moves_forward() -> None:
    wall = FakeWall(1000.0)
    clock = HybridClock(wall=wall)
    t1 = clock.now()
    wall.now = 1000.5
    t2 = clock.now()
    assert (hlc_millis(t1), hlc_millis(t2)) == (1_000_000, 1_000_500)
    assert t2 == hlc_from_millis(1_000_500)  # logical part resets on a new millisecond


def test_same_millisecond_counts_up() -> None:
    clock = HybridClock(wall=FakeWall(1000.0))
    stamps = [clock.now() for _ in range(100)]
    assert stamps == list(range(stamps[0], stamps[0] + 100))
    assert {hlc_millis(t) for t in stamps} == {1_000_000}


def test_monotonic_when_the_wall_clock_goes_backwards() -> None:
    wall = FakeWall(1000.0)
    clock = HybridClock(wall=wall)
    stamps = [clock.now()]
    for t in (999.0, 500.0, 0.0, 1000.0, 999.999):
        wall.now = t
        stamps.append(clock.now())
    assert all(b > a for a, b in itertools.pairwise(stamps))
    assert hlc_millis(stamps[-1]) == 1_000_000  # still pinned to the highest wall time seen


def test_starts_after_a_persisted_value() -> None:
    last = hlc_from_millis(5_000_000) + 7
    clock = HybridClock(last=last, wall=FakeWall(1.0))
    assert clock.last == last
    assert clock.now() == last + 1


def test_observe_moves_past_a_remote_timestamp() -> None:
    clock = HybridClock(wall=FakeWall(1000.0))
    local = clock.now()
    remote = hlc_from_millis(2_000_000) + 3  # a peer a thousand seconds ahead
    clock.observe(remote)
    assert clock.last == remote
    assert clock.now() == remote + 1
    clock.observe(local)  # an older remote time changes nothing
    assert clock.now() == remote + 2


@pytest.mark.parametrize("garbage", [-1, -(2**63), MAX_HLC + 1, 2**64, 2**200])
def test_observe_ignores_out_of_range_timestamps(garbage: int) -> None:
    clock = HybridClock(wall=FakeWall(1000.0))
    before = clock.now()
    clock.observe(garbage)
    assert clock.last == before
    assert clock.now() == before + 1


def test_observe_accepts_the_largest_timestamp() -> None:
    clock = HybridClock(wall=FakeWall(1000.0))
    clock.observe(MAX_HLC)
    assert clock.last == MAX_HLC


def test_unique_across_threads() -> None:
    clock = HybridClock(wall=FakeWall(1000.0))
    out: list[list[int]] = [[] for _ in range(4)]

    def run(i: int) -> None:
        out[i].extend(clock.now() for _ in range(2000))

    threads = [threading.Thread(target=run, args=(i,), name=f"test-hlc-{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps = [s for part in out for s in part]
    assert len(set(stamps)) == len(stamps) == 8000
    assert all(b > a for part in out for a, b in itertools.pairwise(part))
