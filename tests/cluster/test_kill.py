"""``kill -9`` of real nodes during a catch-up and during writes (DESIGN.md s9, 1 and 2).

A node killed while it applies a large catch-up restarts from what it made
durable and resumes; a node killed while it acknowledges writes keeps every
write it acknowledged, and those reach its peer. ``examnode verify`` passes on
every data dir afterwards.
"""

from __future__ import annotations

import time

from tests.cluster.conftest import MakeLab
from tests.cluster.lab import CENTER, acked, stop_and_verify, wait_converged, wait_dropped

BULK = 20_000


def test_sigkill_during_catch_up_resumes_and_converges(make_lab: MakeLab) -> None:
    lab = make_lab(2)
    n1 = lab.init(1)
    n1.start()
    n2 = lab.join(2)  # its static peer is node 1, from the join
    n2.start()
    wait_converged([n1, n2], {})
    n2.stop()

    n1.burst("bulk", BULK)
    n1.wait_burst("bulk")
    chain = f"{n1.node_id}/{CENTER}"
    head = n1.vv()[chain]

    n2.start()
    deadline = time.monotonic() + 60
    got = 0
    while not head - BULK < got < head:  # some of the bulk, not all of it
        assert time.monotonic() < deadline, f"node 2 did not start catching up:\n{n2.log_tail()}"
        got = n2.vv().get(chain, 0)
        assert got < head, "the catch-up finished before it could be interrupted"
        time.sleep(0.02)
    n2.kill()
    wait_dropped([n1], n2)

    n2.start()  # LMDB kept what was committed; the session resumes from there
    assert n2.vv()[chain] >= got, "deltas committed before the kill were lost"
    records = wait_converged([n1, n2], acked(n1, n2), timeout=120)
    assert len(records) == BULK
    stop_and_verify(n1, n2)


def test_sigkill_during_writes_keeps_every_acknowledged_write(make_lab: MakeLab) -> None:
    lab = make_lab(2)
    n1 = lab.init(1)
    n1.start()
    n2 = lab.join(2)
    n2.start()
    wait_converged([n1, n2], {})

    n1.burst("w", 8000)
    n1.wait_for(lambda: n1.count_acks("w") >= 1500, "1500 ACKs", 60)
    n1.kill()
    written = acked(n1)
    assert len(written) < 8000, "every write finished before the kill; nothing was tested"
    wait_dropped([n2], n1)

    n1.start()
    records = wait_converged([n1, n2], written, timeout=90)
    assert len(records) >= len(written)
    stop_and_verify(n1, n2)
