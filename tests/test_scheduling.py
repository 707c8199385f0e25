"""The app's fair scheduler: results in order, errors and time limits per request, and a short request
that never waits behind long ones (pure Python pieces; no model)."""
from __future__ import annotations

import threading
import time

import pytest

from translator.serve.scheduling import FairScheduler, RequestCancelled, RequestTimeout, pieces_by_cost


def test_pieces_by_cost_keeps_order_and_budget():
    assert pieces_by_cost([3, 3, 3, 10, 1], 6) == [[0, 1], [2], [3], [4]]
    assert pieces_by_cost([], 5) == []


def test_results_in_order_and_errors_reach_their_request():
    scheduler = FairScheduler(workers=3)
    assert scheduler.run([lambda i=i: i * i for i in range(10)]) == [i * i for i in range(10)]

    def boom():
        raise ValueError("bad piece")

    with pytest.raises(ValueError, match="bad piece"):
        scheduler.run([lambda: 1, boom, lambda: 3])
    assert scheduler.run([lambda: "still serving"]) == ["still serving"]


def test_time_limit_drops_the_remaining_pieces():
    scheduler = FairScheduler(workers=1)
    ran = []
    with pytest.raises(RequestTimeout):
        scheduler.run([lambda i=i: (ran.append(i), time.sleep(0.05)) for i in range(40)], time_limit=0.2)
    time.sleep(0.1)
    assert len(ran) < 10


def test_short_request_does_not_wait_behind_two_long_ones():
    scheduler = FairScheduler(workers=2)
    ends = {}

    def long(name):
        scheduler.run([lambda: time.sleep(0.02) for _ in range(60)])  # 1.2 s of work each, heavy
        ends[name] = time.monotonic()

    threads = [threading.Thread(target=long, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    time.sleep(0.2)
    start = time.monotonic()
    scheduler.run([lambda: time.sleep(0.01)])
    waited = time.monotonic() - start
    for t in threads:
        t.join()
    assert waited < 0.15, waited  # a worker is kept free of heavy pieces: no wait for one
    assert all(end > start + waited for end in ends.values())


def test_a_cancelled_request_stops_within_one_piece():
    scheduler = FairScheduler(workers=1)
    ran, cancel = [], threading.Event()

    def piece(i):
        ran.append(i)
        if i == 2:
            cancel.set()  # the client goes away while piece 2 runs
        time.sleep(0.01)

    with pytest.raises(RequestCancelled):
        scheduler.run([lambda i=i: piece(i) for i in range(40)], cancelled=cancel.is_set)
    time.sleep(0.1)
    assert ran == [0, 1, 2]  # piece 2 finishes; no later piece starts
    assert scheduler.run([lambda: "still serving"], cancelled=lambda: False) == ["still serving"]


def test_a_request_cancelled_while_it_waits_returns_at_once():
    scheduler = FairScheduler(workers=1)
    blocker = threading.Thread(target=scheduler.run, args=([lambda: time.sleep(1.0)],))
    blocker.start()
    time.sleep(0.1)
    ran, start = [], time.monotonic()
    with pytest.raises(RequestCancelled):
        scheduler.run([lambda: ran.append(1)], cancelled=lambda: time.monotonic() - start > 0.2)
    assert time.monotonic() - start < 0.8 and not ran  # it did not wait for the busy worker
    blocker.join()
