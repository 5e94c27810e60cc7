"""Noticing that this whole process stood still (SIGSTOP, a long pause, a frozen VM).

PostgreSQL ends a session of ours that stands inside a transaction past
``idle_in_transaction_session_timeout`` (``PROJECTOR_IDLE_IN_TRANSACTION_TIMEOUT_MS``).
It says so with SQLSTATE 25P03 when the message reaches us, but on a thawed process
the socket is often reset before the message is read, and the driver only says "the
connection is lost", as it does in a network outage. An outage is retried; a
process that stood still past the bound must not carry on as if nothing happened
(its Kafka membership has expired too, and its partitions may be claimed by another
projector): ``StallWatch`` tells the two apart by the process's own clock.

A daemon thread ticks a few times a second; a gap between ticks much longer than a
tick is time the process did not run. ``stood_still`` asks whether such a gap, at
least ``bound_s`` long, ended since a moment (the start of a transaction).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["StallWatch"]

#: How long before a transaction began its stand-still may have begun: the last tick
#: before a freeze can come up to a tick (and some scheduling delay) earlier.
SLACK_S = 1.0


class StallWatch:
    def __init__(
        self,
        bound_s: float,
        *,
        tick_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bound_s = bound_s
        self.tick_s = tick_s
        self._clock = clock
        self._last = clock()
        self._pauses: deque[tuple[float, float]] = deque(maxlen=32)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> StallWatch:
        if self._thread is None:
            self._last = self._clock()
            self._thread = threading.Thread(target=self._run, name="stall-watch", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.tick()

    def tick(self) -> None:
        """Record the time since the last tick as a pause when it is far over a tick."""
        now = self._clock()
        with self._lock:
            if now - self._last > 4 * self.tick_s:
                self._pauses.append((self._last, now))
            self._last = now

    def longest_pause_since(self, since: float) -> float:
        """Seconds of the longest stand-still that began after ``since`` (less ``SLACK_S``),
        ended or still going on (the thread may not have ticked yet after a thaw). One
        that began well before ``since`` is not this transaction's: the transaction
        began after the thaw."""
        now = self._clock()
        earliest = since - SLACK_S
        with self._lock:
            ended = [end - start for start, end in self._pauses if start >= earliest]
            ongoing = now - self._last - self.tick_s if self._last >= earliest else 0.0
        return max([0.0, ongoing, *ended])

    def stood_still(self, since: float) -> bool:
        """True when the process stood still for at least ``bound_s`` since ``since``."""
        return self.bound_s > 0 and self.longest_pause_since(since) >= self.bound_s

    def now(self) -> float:
        return self._clock()
