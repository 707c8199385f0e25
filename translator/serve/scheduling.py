"""Fair sharing of the decoding workers among app requests: no request can hold every worker.

A request is cut into pieces of bounded cost (a few sentences each, `pieces_by_cost`); a fixed pool
of worker threads runs one piece at a time, always from the request that has had the least worker
time so far. A one-sentence request that arrives while two 1,000-line requests run therefore waits
for at most one piece, not for the long requests to finish. Heavy requests (more than HEAVY_PIECES
pieces) may use all workers but one, so with two or more workers a short request never waits for a
worker at all. Each request has a deadline: when it passes, the request's remaining pieces are
dropped and it fails with `RequestTimeout`. A request may also say how to tell that nobody waits for it
any more (`cancelled`, asked before each of its pieces): then its remaining pieces are dropped and it
fails with `RequestCancelled`, so a cancelled request stops within one piece.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


#: A request of more pieces than this (about 8 s of work on one core) is heavy: it may not occupy the last free worker.
HEAVY_PIECES = 32
#: Seconds between two looks at `cancelled` while a request waits for its pieces.
CANCEL_POLL = 0.25


class RequestTimeout(Exception):
    """A request ran past its time limit; its remaining pieces were not run."""


class RequestCancelled(Exception):
    """A request was cancelled (its client went away); its remaining pieces were not run."""


def pieces_by_cost(costs: Sequence[float], budget: float) -> list[list[int]]:
    """Indices of consecutive items grouped so that each group's summed cost stays within `budget`
    (an item dearer than the budget is a group of its own)."""
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0.0
    for i, cost in enumerate(costs):
        if current and total + cost > budget:
            groups.append(current)
            current, total = [], 0.0
        current.append(i)
        total += cost
    if current:
        groups.append(current)
    return groups


class _Request:
    def __init__(self, pieces: list[Callable[[], Any]], deadline: float | None, order: int,
                 cancelled: Callable[[], bool] | None = None):
        self.pieces = pieces
        self.cancelled = cancelled
        self.next = 0  # index of the next piece to hand out
        self.done = 0
        self.results: list[Any] = [None] * len(pieces)
        self.deadline = deadline
        self.order = order
        self.served = 0.0  # worker seconds spent on this request
        self.error: BaseException | None = None
        self.heavy = len(pieces) > HEAVY_PIECES

    @property
    def finished(self) -> bool:
        return self.error is not None or self.done == len(self.pieces)

    def stopped(self, now: float) -> BaseException | None:
        """Why this request must not run another piece (past its deadline, cancelled), or None."""
        if self.deadline is not None and now > self.deadline:
            return RequestTimeout()
        if self.cancelled is not None and self.cancelled():
            return RequestCancelled()
        return None


class FairScheduler:
    """`workers` threads that run the pieces of all requests, least-served request first."""

    def __init__(self, workers: int = 2):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._cond = threading.Condition()
        self._waiting: list[_Request] = []  # requests with pieces not yet handed out
        self._count = itertools.count()
        self._heavy_running = 0  # pieces of heavy requests being run now
        self._heavy_limit = max(1, workers - 1)
        for k in range(workers):
            threading.Thread(target=self._work, name=f"decode-worker-{k}", daemon=True).start()

    def run(self, pieces: Sequence[Callable[[], Any]], time_limit: float | None = None,
            cancelled: Callable[[], bool] | None = None) -> list[Any]:
        """Run `pieces` (in any interleaving with other requests) and return their results in order.

        Raises the first exception a piece raised, RequestTimeout after `time_limit` seconds, or
        RequestCancelled once `cancelled()` (asked before each piece, and a few times a second while the
        request waits) is true.
        """
        if not pieces:
            return []
        deadline = None if time_limit is None else time.monotonic() + time_limit
        request = _Request(list(pieces), deadline, next(self._count), cancelled)
        with self._cond:
            self._waiting.append(request)
            self._cond.notify_all()
            while not request.finished:
                self._cond.wait(CANCEL_POLL if cancelled is not None else None)
                if not request.finished and cancelled is not None and cancelled():
                    self._fail(request, RequestCancelled())
        if request.error is not None:
            raise request.error
        return request.results

    def _take(self) -> tuple[_Request, int]:
        """The next piece: from the waiting request with the least worker time (earliest on ties)."""
        with self._cond:
            while True:
                now = time.monotonic()
                for request in list(self._waiting):
                    reason = request.stopped(now)
                    if reason is not None:
                        self._fail(request, reason)
                ready = [r for r in self._waiting if not r.heavy or self._heavy_running < self._heavy_limit]
                if ready:
                    request = min(ready, key=lambda r: (r.served, r.order))
                    index = request.next
                    request.next += 1
                    if request.next == len(request.pieces):
                        self._waiting.remove(request)
                    self._heavy_running += request.heavy
                    return request, index
                self._cond.wait()

    def _fail(self, request: _Request, error: BaseException) -> None:
        if request.error is None:
            request.error = error
        if request in self._waiting:
            self._waiting.remove(request)
        self._cond.notify_all()

    def _work(self) -> None:
        while True:
            request, index = self._take()
            start = time.monotonic()
            try:
                result = None if request.error is not None else request.pieces[index]()
            except BaseException as err:  # noqa: BLE001 - handed to the request's caller
                with self._cond:
                    self._heavy_running -= request.heavy
                    self._fail(request, err)
                continue
            with self._cond:
                self._heavy_running -= request.heavy
                if request.error is not None:
                    self._cond.notify_all()
                    continue
                request.served += time.monotonic() - start
                request.results[index] = result
                request.done += 1
                reason = None if request.finished else request.stopped(time.monotonic())
                if reason is not None:
                    self._fail(request, reason)
                self._cond.notify_all()
