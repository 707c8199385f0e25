"""The app's fair scheduler: results in order, errors and time limits per request, and a short request
that never waits behind long ones (pure Python pieces; no model)."""
from __future__ import annotations

import threading
import time

import pytest

from translator.scheduling import FairScheduler, RequestTimeout, pieces_by_cost


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
