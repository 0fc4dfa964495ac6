"""Event-time windows: tumbling and sliding counts per group, with allowed lateness.

Time is integer microseconds since the Unix epoch (UTC), as numpy ``int64``. Counts are kept
in *panes*, short tumbling slices of ``pane`` length; a tumbling window is a run of whole panes
aligned to the epoch, a sliding window is the last ``k`` panes before the watermark. Every
window length must therefore be a multiple of the pane.

The watermark (:attr:`EventTimeWindows.clock`) follows the source partitions (Kafka
partitions, Kinesis shards) separately, so a backlog read from several partitions at different
speeds is not counted late. Each partition has its own event clock: the newest event time seen
in it, advanced by processing time while it is idle (``now`` minus the processing time at which
that newest event arrived). The watermark is the smallest event clock over the partitions that
had an event within ``idle_timeout`` of processing time; when every partition is idle, the
largest (an idle stream still closes its windows); it never moves back. With ``max_skew`` it
also never trails the newest of those clocks by more than that: a partition whose events stay
further behind the others' (a backfill, a producer whose clock runs slow) would otherwise hold
every window open, and the counts, the open windows' statistics and the saved state with them,
without end; its events are late instead. A partition holds the
watermark from its first event on; one idle for longer than the longest window is forgotten.
With one partition this is the newest event time seen, advanced by processing time while the
stream is idle.

Before its first event a partition has no clock, so by itself it would not hold the
watermark: a backlog whose partitions reach the windows one after another (two workers, one
slower to start) would see the first partitions' event time close windows that the later ones
still fill. A source that knows its partitions says which of them hold records the windows
have not had (:meth:`EventTimeWindows.expect`: Kafka compares each partition's log end with the
offsets observed); while one of those has had no event, for at most ``idle_timeout`` of
processing time after it was first expected, the watermark stays where it is. An empty
partition is not expected, so it holds nothing.

A tumbling window ``[s, e)`` closes once ``clock >= e + allowed_lateness``; an event whose
tumbling window has already closed is *late*: it is counted and dropped. An event older than
one already seen in its partition is *out of order*: it is counted and kept. An event more than
``max_ahead`` ahead of processing time is *future*: it is counted and dropped, and neither moves
nor holds the watermark (one bad clock must not close every window). Lateness is judged against
the watermark at the start of each micro-batch (events of one batch are never late relative to
each other).

State is a JSON-able dict (:meth:`EventTimeWindows.state`), so a Kafka deployment can keep it
in a table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import gcd
from typing import Any

import numpy as np

from monitors._stats import IntArray

__all__ = [
    "CLASSES",
    "ClosedWindow",
    "EventTimeWindows",
    "WindowCounts",
    "from_us",
    "to_us",
]

#: Sentiment classes in column order (negative, neutral, positive); index = sentiment + 1.
CLASSES: tuple[int, int, int] = (-1, 0, 1)

_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(t: datetime | timedelta) -> int:
    """Microseconds since the epoch (datetime, naive taken as UTC) or in a duration."""
    if isinstance(t, timedelta):
        return (t.days * 86_400 + t.seconds) * _US + t.microseconds
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return to_us(t - _EPOCH)


def from_us(us: int) -> datetime:
    """The UTC datetime of a microsecond timestamp."""
    return _EPOCH + timedelta(microseconds=int(us))


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Counts of one window, per group (rows) and class (columns, :data:`CLASSES` order).

    ``predicted[g, k]``: reviews of group ``g`` the model put in class ``k``;
    ``true[g, k]``: labelled reviews (with a rating) of group ``g`` in true class ``k``.
    """

    predicted: IntArray
    true: IntArray

    @property
    def total(self) -> int:
        return int(self.predicted.sum())


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A tumbling window that has closed, with its counts."""

    start: datetime
    end: datetime
    counts: WindowCounts


@dataclass(frozen=True, slots=True)
class AddResult:
    """What one micro-batch did to the windows."""

    accepted: np.ndarray[Any, np.dtype[np.bool_]]
    late: int
    out_of_order: int
    closed: list[ClosedWindow]
    future: int = 0


@dataclass(slots=True)
class _Partition:
    """Event clock of one source partition (microseconds)."""

    max_event: int  #: newest accepted event time
    arrival: int  #: processing time at which ``max_event`` arrived
    seen: int  #: processing time of the partition's last event

    def clock(self, now: int) -> int:
        return self.max_event + max(0, now - self.arrival)


class EventTimeWindows:
    """Tumbling and sliding event-time windows of per-group class counts.

    ``groups`` is the number of rows (e.g. the allowed categories plus ``other``); ``tumbling``
    the evaluation window; ``sliding`` the lengths of the rolling views (each a multiple of
    ``pane``); counts older than the longest window are discarded. ``idle_timeout`` (None:
    never), ``max_ahead`` and ``max_skew`` (None: no bound) are described in the module doc.
    """

    def __init__(
        self,
        *,
        groups: int,
        tumbling: timedelta,
        sliding: Sequence[timedelta] = (),
        pane: timedelta | None = None,
        allowed_lateness: timedelta = timedelta(0),
        idle_timeout: timedelta | None = None,
        max_ahead: timedelta | None = None,
        max_skew: timedelta | None = None,
    ) -> None:
        if groups < 1:
            raise ValueError("groups must be >= 1")
        pane = pane or _gcd_pane(tumbling, *sliding)
        self._pane = to_us(pane)
        self._tumbling = to_us(tumbling)
        self._sliding = tuple(to_us(s) for s in sliding)
        self._lateness = to_us(allowed_lateness)
        if self._pane <= 0 or self._tumbling <= 0 or self._lateness < 0:
            raise ValueError("pane and tumbling must be > 0, allowed_lateness >= 0")
        for length in (self._tumbling, *self._sliding):
            if length <= 0 or length % self._pane:
                raise ValueError(f"window {from_us(length) - _EPOCH} is not a multiple of pane")
        self._idle = None if idle_timeout is None else to_us(idle_timeout)
        self._max_ahead = None if max_ahead is None else to_us(max_ahead)
        self._max_skew = None if max_skew is None else to_us(max_skew)
        if self._max_skew is not None and self._max_skew < 0:
            raise ValueError("max_skew must be >= 0")
        self._groups = groups
        self._horizon = max(self._tumbling, *self._sliding) if self._sliding else self._tumbling
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------

    def reset(self) -> None:
        self._panes: dict[int, tuple[IntArray, IntArray]] = {}
        self._partitions: dict[str, _Partition] = {}
        self._expected: dict[str, int] = {}  # partition with records and no event -> since
        self._watermark: int | None = None
        self._now: int | None = None
        self._closed_until: int | None = None  # tumbling windows with index < this are closed
        self.accepted_total = 0
        self.late_total = 0
        self.out_of_order_total = 0
        self.future_total = 0

    @property
    def clock(self) -> int | None:
        """The watermark in microseconds (None before the first event)."""
        return self._watermark

    @property
    def partitions(self) -> dict[str, tuple[int, int, int]]:
        """Per partition: newest event time, its arrival and the last arrival (microseconds)."""
        return {k: (p.max_event, p.arrival, p.seen) for k, p in self._partitions.items()}

    @property
    def expected(self) -> dict[str, int]:
        """Partitions expected to bring events that have had none, with the processing time
        (microseconds) since which they are."""
        return dict(self._expected)

    @property
    def newest_event(self) -> int | None:
        """The newest accepted event time over every partition (None before one)."""
        return max((p.max_event for p in self._partitions.values()), default=None)

    @property
    def closed_until(self) -> int | None:
        """Tumbling windows with an index below this have closed (None before any event)."""
        return self._closed_until

    @property
    def tumbling_us(self) -> int:
        return self._tumbling

    @property
    def sliding_us(self) -> tuple[int, ...]:
        return self._sliding

    def window_index(self, t_us: IntArray) -> IntArray:
        """Index of the tumbling window of each timestamp."""
        out: IntArray = np.floor_divide(t_us, self._tumbling)
        return out

    def is_late(self, t_us: IntArray) -> np.ndarray[Any, np.dtype[np.bool_]]:
        if self._closed_until is None:
            return np.zeros(t_us.shape, dtype=bool)
        late: np.ndarray[Any, np.dtype[np.bool_]] = self.window_index(t_us) < self._closed_until
        return late

    # -- updates ---------------------------------------------------------------------------

    def expect(self, names: Iterable[str], now_us: int) -> None:
        """The source's partitions that hold records these windows have not had (all of
        them, each time: a partition left out is no longer expected). One that has had no
        event holds the watermark until its first event, for at most ``idle_timeout``."""
        before = self._expected
        self._expected = {
            name: before.get(name, now_us) for name in names if name not in self._partitions
        }

    def add(
        self,
        t_us: IntArray,
        group: IntArray,
        predicted: IntArray,
        true: IntArray,
        now_us: int,
        partition: IntArray | None = None,
        partition_names: Sequence[str] = ("",),
    ) -> AddResult:
        """Add one micro-batch (arrays of equal length; ``predicted``/``true`` are class
        indices 0..2, ``true`` -1 when unlabelled) and advance the watermark to ``now_us``.
        ``partition`` holds each event's index into ``partition_names`` (None: all in the
        first). Returns which events were accepted and the tumbling windows that closed."""
        future = self._is_future(t_us, now_us)
        late_mask = self.is_late(t_us) & ~future
        accepted = ~(late_mask | future)
        codes = np.zeros(t_us.shape[0], dtype=np.int64) if partition is None else partition
        ooo = 0
        for code in np.unique(codes[~future]).tolist():
            ooo += self._add_partition(
                str(partition_names[code]), t_us, accepted, codes == code, now_us
            )
        self._add_counts(t_us[accepted], group[accepted], predicted[accepted], true[accepted])
        late, n_future = int(late_mask.sum()), int(future.sum())
        self.accepted_total += int(accepted.sum())
        self.late_total += late
        self.out_of_order_total += ooo
        self.future_total += n_future
        self._now = now_us if self._now is None else max(self._now, now_us)
        self._advance()
        closed = self._close()
        return AddResult(accepted, late, ooo, closed, n_future)

    def _is_future(self, t_us: IntArray, now_us: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
        if self._max_ahead is None:
            return np.zeros(t_us.shape, dtype=bool)
        future: np.ndarray[Any, np.dtype[np.bool_]] = t_us > now_us + self._max_ahead
        return future

    def _add_partition(
        self,
        name: str,
        t_us: IntArray,
        accepted: np.ndarray[Any, np.dtype[np.bool_]],
        mine: np.ndarray[Any, np.dtype[np.bool_]],
        now_us: int,
    ) -> int:
        """Advance partition ``name`` by its events (``mine``); returns its out-of-order count."""
        p = self._partitions.get(name)
        if p is not None:
            p.seen = now_us
        ok = mine & accepted
        if not ok.any():
            return 0
        t = t_us[ok]
        prior = p.max_event if p is not None else int(t[0])
        running = np.maximum.accumulate(np.concatenate(([prior], t)))[:-1]
        newest = int(t.max())
        if p is None:
            self._partitions[name] = _Partition(newest, now_us, now_us)
        elif newest > p.max_event:
            p.max_event, p.arrival = newest, now_us
        return int(np.count_nonzero(t < running))

    def _advance(self) -> None:
        """Move the watermark (see module doc) and forget partitions idle past the horizon."""
        now = self._now
        for name in [n for n in self._expected if n in self._partitions]:
            del self._expected[name]
        if not self._partitions or now is None or self._waiting(now):
            return
        clocks = [(p.clock(now), now - p.seen) for p in self._partitions.values()]
        active = [c for c, idle in clocks if self._idle is None or idle < self._idle]
        if not active:
            mark = max(c for c, _ in clocks)
        elif self._max_skew is None:
            mark = min(active)
        else:  # the slowest, but never further behind the newest than max_skew
            mark = max(min(active), max(active) - self._max_skew)
        self._watermark = mark if self._watermark is None else max(self._watermark, mark)
        stale = [
            k for k, p in self._partitions.items() if now - p.seen > self._horizon + self._lateness
        ]
        for k in stale[: len(self._partitions) - 1]:
            del self._partitions[k]

    def _waiting(self, now: int) -> bool:
        """Whether an expected partition without events still holds the watermark."""
        idle = self._idle
        return any(idle is None or now - since < idle for since in self._expected.values())

    def _add_counts(self, t: IntArray, g: IntArray, p: IntArray, y: IntArray) -> None:
        if not t.size:
            return
        panes = np.floor_divide(t, self._pane)
        for pane in np.unique(panes):
            sel = panes == pane
            pred, true = self._pane_arrays(int(pane))
            np.add.at(pred, (g[sel], p[sel]), 1)
            lab = sel & (y >= 0)
            if lab.any():
                np.add.at(true, (g[lab], y[lab]), 1)

    def _pane_arrays(self, pane: int) -> tuple[IntArray, IntArray]:
        arrays = self._panes.get(pane)
        if arrays is None:
            arrays = (
                np.zeros((self._groups, 3), dtype=np.int64),
                np.zeros((self._groups, 3), dtype=np.int64),
            )
            self._panes[pane] = arrays
        return arrays

    def _close(self) -> list[ClosedWindow]:
        clock = self.clock
        if clock is None:
            return []
        until = (clock - self._lateness) // self._tumbling
        start = self._closed_until
        closed: list[ClosedWindow] = []
        per_window = self._tumbling // self._pane
        with_data = sorted({p // per_window for p in self._panes if p // per_window < until})
        for k in with_data:
            if start is not None and k < start:
                continue
            counts = self._sum_panes(k * per_window, (k + 1) * per_window)
            closed.append(
                ClosedWindow(from_us(k * self._tumbling), from_us((k + 1) * self._tumbling), counts)
            )
        self._closed_until = until if start is None else max(until, start)
        # forget panes older than the longest window before the watermark
        keep_from = (clock - self._horizon - self._lateness) // self._pane
        for p in [p for p in self._panes if p < keep_from]:
            del self._panes[p]
        return closed

    def _sum_panes(self, lo: int, hi: int) -> WindowCounts:
        pred = np.zeros((self._groups, 3), dtype=np.int64)
        true = np.zeros((self._groups, 3), dtype=np.int64)
        for p, (a, b) in self._panes.items():
            if lo <= p < hi:
                pred += a
                true += b
        return WindowCounts(pred, true)

    # -- views -----------------------------------------------------------------------------

    def sliding(self, length_us: int) -> WindowCounts:
        """Counts of the sliding window of ``length_us`` ending at the watermark's pane."""
        clock = self.clock
        if clock is None:
            return self._sum_panes(0, 0)
        hi = clock // self._pane + 1
        return self._sum_panes(hi - length_us // self._pane, hi)

    def open_window(self) -> tuple[datetime, datetime, WindowCounts] | None:
        """The tumbling window that holds the watermark, with its counts so far."""
        clock = self.clock
        if clock is None:
            return None
        k = clock // self._tumbling
        per = self._tumbling // self._pane
        counts = self._sum_panes(k * per, (k + 1) * per)
        return from_us(k * self._tumbling), from_us((k + 1) * self._tumbling), counts

    # -- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "panes": {
                str(p): [a.tolist(), b.tolist()] for p, (a, b) in sorted(self._panes.items())
            },
            "partitions": {
                k: [p.max_event, p.arrival, p.seen] for k, p in sorted(self._partitions.items())
            },
            "watermark": self._watermark,
            "now": self._now,
            "closed_until": self._closed_until,
            "accepted_total": self.accepted_total,
            "late_total": self.late_total,
            "out_of_order_total": self.out_of_order_total,
            "future_total": self.future_total,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.reset()
        for key, (a, b) in state["panes"].items():
            self._panes[int(key)] = (
                np.asarray(a, dtype=np.int64).reshape(self._groups, 3),
                np.asarray(b, dtype=np.int64).reshape(self._groups, 3),
            )
        self._now = state["now"]
        if "partitions" in state:
            self._partitions = {
                str(k): _Partition(int(a), int(b), int(c))
                for k, (a, b, c) in state["partitions"].items()
            }
            self._watermark = state["watermark"]
        elif state.get("max_event") is not None:  # written before partitions were followed
            p = _Partition(int(state["max_event"]), int(state["arrival_now"]), int(self._now))
            self._partitions = {"": p}
            self._watermark = p.clock(int(self._now))
        self._closed_until = state["closed_until"]
        self.accepted_total = int(state["accepted_total"])
        self.late_total = int(state["late_total"])
        self.out_of_order_total = int(state["out_of_order_total"])
        self.future_total = int(state.get("future_total", 0))


def _gcd_pane(*lengths: timedelta) -> timedelta:
    g = 0
    for length in lengths:
        g = gcd(g, to_us(length))
    return timedelta(microseconds=g)
