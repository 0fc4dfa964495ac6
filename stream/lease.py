"""How long a Kafka worker may act for the partitions its group generation gave it.

A consumer-group member keeps its partitions while it heartbeats; one that stops for longer
than the group's session timeout (the process frozen by SIGSTOP or a stalled VM, a long
pause) is evicted, and another member reads its partitions again from the committed
offsets. The evicted one does not know it until its next heartbeat, and it wakes up with the
batches it had read: rows buffered for the lake, files half written. Stored then, they sit
beside the new owner's copies of the same records.

A :class:`StallLease` notices such a stop from inside the process: a ticker task notes the
monotonic time every ``interval_s``, and a gap longer than ``limit_s`` (the event loop did
not run) lapses the lease for good. :meth:`StallLease.check` also counts the gap since the
last tick, so a check made by the first coroutine to run after the stop, before the ticker's
turn, sees it too. With ``limit_s`` at half the session timeout and heartbeats more often
than the other half, a process whose loop never stopped that long cannot have been evicted
for being silent; one that did stop that long gives up what it holds uncommitted instead of
storing it (the generation ends and the next one starts from the committed offsets, once the
broker has accepted a commit of this member's generation again, see
:meth:`stream.sources.kafka.KafkaBatchSource.start`).

What it cannot see: a stop that falls between a check and the store's acknowledgement of
the write that follows it (a file being written when the process stops lands when it
resumes), and a member cut off from the broker's coordinator while its loop runs on (its
heartbeats fail, not its clock).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from stream.errors import MembershipLapsed

__all__ = ["StallLease"]


class StallLease:
    """Lapses once the event loop went ``limit_s`` seconds without a tick (see the module
    docstring); ``clock`` is monotonic seconds."""

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if limit_s <= 0:
            raise ValueError("limit_s must be positive")
        self._limit = limit_s
        self._clock = clock
        self._last = clock()
        #: the gap that lapsed the lease, in seconds (None while it holds)
        self.lapsed_after: float | None = None

    def tick(self) -> None:
        """Note that the event loop runs now; a gap since the last tick longer than
        ``limit_s`` lapses the lease."""
        now = self._clock()
        gap = now - self._last
        self._last = max(self._last, now)
        if gap > self._limit and self.lapsed_after is None:
            self.lapsed_after = gap

    def check(self) -> None:
        """Raise :class:`~stream.errors.MembershipLapsed` once the lease has lapsed (this
        call's own gap since the last tick included)."""
        self.tick()
        if self.lapsed_after is not None:
            raise MembershipLapsed(
                f"the worker stopped for {self.lapsed_after:.1f} s (more than its lease of "
                f"{self._limit:.1f} s): the group may have given its partitions to another "
                "member, so it stores nothing more of what it read before"
            )

    async def run(self, interval_s: float) -> None:
        """Tick every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.tick()
