"""Event-time windows: tumbling close, lateness, out-of-order events, sliding views, state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from monitors.windows import EventTimeWindows, from_us, to_us

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _t(minutes: float) -> int:
    return to_us(T0 + timedelta(minutes=minutes))


def _add(w: EventTimeWindows, minutes: list[float], group: int = 0, pred: int = 0, now: float = 0):  # type: ignore[no-untyped-def]
    n = len(minutes)
    return w.add(
        np.array([_t(m) for m in minutes], dtype=np.int64),
        np.full(n, group, dtype=np.int64),
        np.full(n, pred, dtype=np.int64),
        np.full(n, -1, dtype=np.int64),
        _t(now),
    )


def _windows() -> EventTimeWindows:
    return EventTimeWindows(
        groups=2,
        tumbling=timedelta(hours=1),
        sliding=(timedelta(minutes=15), timedelta(hours=2)),
        pane=timedelta(minutes=5),
        allowed_lateness=timedelta(minutes=10),
    )


def test_time_conversions() -> None:
    assert to_us(timedelta(minutes=5)) == 300_000_000
    assert from_us(to_us(T0)) == T0
    assert to_us(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000  # naive means UTC


def test_tumbling_window_closes_after_allowed_lateness() -> None:
    w = _windows()
    res = _add(w, [0, 30, 65])
    assert res.closed == []  # watermark 01:05 - 10 min lateness < 01:00 + ... not yet
    res = _add(w, [71])
    (closed,) = res.closed
    assert (closed.start, closed.end) == (T0, T0 + timedelta(hours=1))
    assert closed.counts.total == 2
    assert closed.counts.predicted[0].tolist() == [2, 0, 0]


def test_late_events_are_dropped_and_counted_out_of_order_kept() -> None:
    w = _windows()
    _add(w, [0, 30, 71])
    res = _add(w, [50, 62, 75])  # 00:50 belongs to the closed window; 01:02 is out of order
    assert res.accepted.tolist() == [False, True, True]
    assert (res.late, res.out_of_order) == (1, 1)
    assert (w.late_total, w.out_of_order_total, w.accepted_total) == (1, 1, 5)


def test_idle_stream_closes_windows_on_processing_time() -> None:
    w = _windows()
    _add(w, [10], now=10)
    assert _add(w, [], now=55).closed == []
    (closed,) = _add(w, [], now=71).closed  # event clock 00:10 + 61 min idle = 01:11
    assert closed.counts.total == 1


def test_sliding_views_sum_the_last_panes() -> None:
    w = _windows()
    _add(w, [0, 1, 50], group=0, pred=0)
    _add(w, [52, 58], group=1, pred=2)
    last15 = w.sliding(to_us(timedelta(minutes=15)))
    # watermark 00:58 lies in pane 00:55-01:00: the 15-minute view covers 00:45-01:00
    assert last15.predicted.tolist() == [[1, 0, 0], [0, 0, 2]]
    two_h = w.sliding(to_us(timedelta(hours=2)))
    assert two_h.total == 5
    start, end, counts = w.open_window()  # type: ignore[misc]
    assert (start, end, counts.total) == (T0, T0 + timedelta(hours=1), 5)


def test_labelled_events_count_true_classes() -> None:
    w = _windows()
    w.add(
        np.array([_t(1), _t(2), _t(3)], dtype=np.int64),
        np.array([0, 0, 1], dtype=np.int64),
        np.array([0, 2, 2], dtype=np.int64),
        np.array([0, 0, -1], dtype=np.int64),
        _t(3),
    )
    counts = w.sliding(to_us(timedelta(hours=2)))
    assert counts.predicted.tolist() == [[1, 0, 1], [0, 0, 1]]
    assert counts.true.tolist() == [[2, 0, 0], [0, 0, 0]]


def test_state_round_trip_through_json() -> None:
    w = _windows()
    _add(w, [0, 30, 71])
    _add(w, [50, 62])
    restored = _windows()
    restored.load_state(json.loads(json.dumps(w.state())))
    assert restored.state() == w.state()
    a, b = _add(w, [140]), _add(restored, [140])
    assert [c.start for c in a.closed] == [c.start for c in b.closed] == [T0 + timedelta(hours=1)]


def test_reset_restores_the_start_state() -> None:
    w = _windows()
    fresh = w.state()
    _add(w, [0, 30, 71])
    w.reset()
    assert w.state() == fresh


def test_windows_must_be_multiples_of_the_pane() -> None:
    with pytest.raises(ValueError, match="multiple"):
        EventTimeWindows(groups=1, tumbling=timedelta(minutes=7), pane=timedelta(minutes=5))
    with pytest.raises(ValueError, match="groups"):
        EventTimeWindows(groups=0, tumbling=timedelta(hours=1))
