"""Event time across source partitions: a per-partition watermark, idle partitions, events from
the future, and their state."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from monitors import MonitorConfig, MonitorSuite
from monitors.parts import unobserved, unseen
from monitors.simulate import DEFAULT_CATEGORIES, StreamSpec, batches, synthetic_stream
from monitors.windows import AddResult, EventTimeWindows, from_us, to_us
from stream.events import ScoredBatch, ScoredReview, SourcePosition, scored_table

T0 = datetime(2024, 3, 1, tzinfo=UTC)
#: processing time of the backlog: long after its events
P = T0 + timedelta(days=2)


def _windows(max_skew: timedelta | None = None) -> EventTimeWindows:
    """Hourly windows of 5-minute panes, events up to a day ahead."""
    return EventTimeWindows(
        groups=1,
        tumbling=timedelta(hours=1),
        pane=timedelta(minutes=5),
        allowed_lateness=timedelta(minutes=10),
        idle_timeout=timedelta(minutes=1),
        max_ahead=timedelta(days=1),
        max_skew=max_skew,
    )


def _feed(
    w: EventTimeWindows,
    minutes: range | list[int],
    partition: str | None,
    now: datetime = P,
) -> AddResult:
    t = np.array([to_us(T0 + timedelta(minutes=m)) for m in minutes], dtype=np.int64)
    n = t.shape[0]
    zeros = np.zeros(n, dtype=np.int64)
    codes = None if partition is None else zeros
    names = ("",) if partition is None else (partition,)
    return w.add(t, zeros, zeros, zeros - 1, to_us(now), codes, names)


def _backlog(w: EventTimeWindows, two_partitions: bool) -> int:
    """Partition a reads 00:00-02:59 in two big batches, b the same span in three; returns
    the late count."""
    a, b = ("a", "b") if two_partitions else (None, None)
    rounds = [
        (range(0, 60), a),
        (range(0, 5), b),
        (range(60, 180), a),
        (range(5, 120), b),
        (range(120, 180), b),
    ]
    return sum(_feed(w, minutes, p).late for minutes, p in rounds)


def test_a_backlog_read_at_two_speeds_is_not_late_per_partition() -> None:
    # one stream: after a's second batch the watermark is 02:59 and windows 00:00 and 01:00
    # have closed, so b's 115 events of 00:05-01:59 are late
    assert _backlog(_windows(), two_partitions=False) == 115
    # per partition: the watermark waits for b (00:04, then 01:59): nothing is late
    w = _windows()
    assert _backlog(w, two_partitions=True) == 0
    assert w.accepted_total == 360
    assert w.clock == to_us(T0 + timedelta(minutes=179))
    # 02:59 - 10 min lateness: the windows before 02:00 have closed
    assert w.closed_until == to_us(T0 + timedelta(hours=2)) // to_us(timedelta(hours=1))


def test_the_watermark_is_the_slowest_partition() -> None:
    w = _windows()
    minutes = [*range(0, 60), *range(0, 5)]
    t = np.array([to_us(T0 + timedelta(minutes=m)) for m in minutes], dtype=np.int64)
    zeros = np.zeros(len(minutes), dtype=np.int64)
    codes = np.array([0] * 60 + [1] * 5, dtype=np.int64)
    res = w.add(t, zeros, zeros, zeros - 1, to_us(P), codes, ("a", "b"))
    assert (res.late, res.out_of_order) == (0, 0)  # b's events are in order within b
    assert w.clock == to_us(T0 + timedelta(minutes=4))
    _feed(w, range(60, 180), "a")
    assert w.clock == to_us(T0 + timedelta(minutes=4))
    assert w.partitions == {
        "a": (to_us(T0 + timedelta(minutes=179)), to_us(P), to_us(P)),
        "b": (to_us(T0 + timedelta(minutes=4)), to_us(P), to_us(P)),
    }


def test_an_idle_partition_stops_holding_the_watermark() -> None:
    w = _windows()
    _backlog(w, two_partitions=True)
    # b falls silent; a goes on two minutes later (b's own clock would be 03:01)
    res = _feed(w, range(180, 240), "a", now=P + timedelta(minutes=2))
    assert w.clock == to_us(T0 + timedelta(minutes=239))
    assert [(c.start, c.counts.total) for c in res.closed] == [(T0 + timedelta(hours=2), 120)]


def test_a_partition_within_the_idle_timeout_still_holds_it() -> None:
    w = _windows()
    _backlog(w, two_partitions=True)
    res = _feed(w, range(180, 240), "a", now=P + timedelta(seconds=30))
    # b: 02:59 + 30 s of processing time
    assert w.clock == to_us(T0 + timedelta(minutes=179, seconds=30))
    assert res.closed == []


def test_an_expected_partition_holds_the_watermark_before_its_first_event() -> None:
    # b's records are in its log but reach the windows after a's (a second worker, slower to
    # start): told so, the windows wait for b's first event, and nothing of b is late
    w = _windows()
    w.expect(["a", "b"], to_us(P))
    assert w.expected == {"a": to_us(P), "b": to_us(P)}
    assert _feed(w, range(0, 60), "a").late == 0
    assert w.expected == {"b": to_us(P)}
    assert _feed(w, range(60, 180), "a").late == 0
    assert (w.clock, w.closed_until) == (None, None)
    assert _feed(w, range(0, 120), "b").late == 0
    assert w.expected == {}
    assert w.clock == to_us(T0 + timedelta(minutes=119))
    assert _feed(w, range(120, 180), "b").late == 0
    assert (w.late_total, w.accepted_total) == (0, 360)
    # not told: a's event time closes the windows b still fills
    unaware = _windows()
    _feed(unaware, range(0, 60), "a")
    _feed(unaware, range(60, 180), "a")
    assert _feed(unaware, range(0, 120), "b").late == 120  # windows 00:00 and 01:00 closed


def test_an_expected_partition_stops_holding_after_the_idle_timeout() -> None:
    w = _windows()
    w.expect(["b"], to_us(P))
    _feed(w, range(0, 60), "a")
    assert (w.clock, list(w.expected)) == (None, ["b"])
    # told again (b still has records, still no event): it is expected since P, not now
    w.expect(["b"], to_us(P + timedelta(seconds=50)))
    assert w.expected == {"b": to_us(P)}
    _feed(w, range(60, 120), "a", now=P + timedelta(seconds=50))
    assert (w.clock, list(w.expected)) == (None, ["b"])
    _feed(w, range(120, 180), "a", now=P + timedelta(minutes=1))
    assert w.clock == to_us(T0 + timedelta(minutes=179))
    # no longer told (its log is empty, or all of it was observed): it holds nothing
    w.expect([], to_us(P + timedelta(minutes=1)))
    assert w.expected == {}


def test_unobserved_partitions_have_records_beyond_the_marks() -> None:
    log = {"a": (0, 10), "b": (0, 0), "c": (5, 5), "d": (3, 9), "e": (0, 4), "f": (7, 9)}
    # a: all observed; b, c: empty; d: 5..8 not yet; e: never observed; f: its mark (2) is
    # below the log's first offset (retention deleted the rest), 7..8 not yet
    assert unobserved(log, {"a": 9, "d": 4, "f": 2}) == ["d", "e", "f"]
    assert unobserved(log, {"a": 9, "d": 8, "e": 3, "f": 8}) == []


def test_a_future_event_never_moves_the_watermark() -> None:
    w = _windows()
    _feed(w, range(0, 30), "a", now=T0 + timedelta(minutes=30))
    far = np.array([to_us(datetime(9999, 12, 31, tzinfo=UTC))], dtype=np.int64)
    one = np.zeros(1, dtype=np.int64)
    res = w.add(far, one, one, one - 1, to_us(T0 + timedelta(minutes=30)), one, ("a",))
    assert (res.future, res.late, res.accepted.tolist()) == (1, 0, [False])
    assert w.clock == to_us(T0 + timedelta(minutes=29))
    assert _feed(w, range(30, 60), "a", now=T0 + timedelta(minutes=60)).late == 0
    assert (w.future_total, w.late_total, w.accepted_total) == (1, 0, 60)


def test_a_partition_far_behind_the_others_stops_holding_the_watermark() -> None:
    """Within ``max_skew`` the slowest partition holds the watermark; a partition whose events
    stay further behind (a backfill, a slow producer clock) stops holding it and its events are
    late, so windows close and are forgotten instead of staying open without end."""
    w = _windows(max_skew=timedelta(hours=2))
    _feed(w, range(0, 5), "slow", now=P)
    _feed(w, range(0, 100), "live", now=P)
    assert w.clock == to_us(T0 + timedelta(minutes=4))  # 95 minutes behind: within the skew
    res = _feed(w, range(100, 200), "live", now=P)
    assert w.clock == to_us(T0 + timedelta(minutes=199 - 120))  # two hours behind the newest
    assert [c.start for c in res.closed] == [T0]  # 00:00-01:00 closed at 01:10
    assert _feed(w, range(5, 10), "slow", now=P).late == 5  # its window is closed
    assert _feed(w, range(70, 75), "slow", now=P).late == 0  # 01:10: still open
    with pytest.raises(ValueError, match="max_skew"):
        EventTimeWindows(groups=1, tumbling=timedelta(hours=1), max_skew=timedelta(-1))


def test_a_slow_clock_partition_does_not_grow_the_suite_without_end() -> None:
    """Four live partitions and one whose event time runs at a tenth of processing time, a
    batch every 30 minutes for four days: a 1-day skew bound keeps the counts, the open
    windows and the saved state from growing after the first two days (without it they grew by
    about 290 panes, 22 open windows and 130 kB of state a day)."""
    config = MonitorConfig(categories=DEFAULT_CATEGORIES, max_partition_skew=timedelta(days=1))
    suite = MonitorSuite(config)
    reviews = synthetic_stream(StreamSpec(events=2500, seed=3))
    for b in batches(reviews, 250):
        suite.observe(b, b[-1].event.event_time)
    start = now = reviews[-1].event.event_time
    pool = reviews[:400]

    def at(r: ScoredReview, t: datetime, partition: str, offset: int) -> ScoredReview:
        return replace(
            r,
            event=replace(r.event, event_time=t),
            position=SourcePosition("kafka", "reviews", partition, offset),
        )

    sizes = []
    for step in range(4 * 48):
        now += timedelta(minutes=30)
        slow = start + (now - start) / 10
        batch = [at(pool[i], now, str(i % 4), 10**7 + step * 100 + i) for i in range(20)]
        batch += [at(pool[20 + i], slow, "9", 10**7 + step * 100 + 50 + i) for i in range(5)]
        suite.observe(batch, now)
        if step % 48 == 47:
            windows = suite._parts.windows
            state = len(json.dumps(suite.state(), separators=(",", ":")))
            sizes.append((len(windows._panes), len(suite._parts.tester.open), state))
            assert windows.clock is not None
            assert now - from_us(windows.clock) <= timedelta(days=1)
    assert sizes[3][:2] == sizes[2][:2]  # panes and open windows: no growth after day two
    assert sizes[3][2] < sizes[2][2] * 1.05


def test_partition_state_round_trips() -> None:
    w = _windows()
    _feed(w, range(0, 60), "a")
    _feed(w, range(0, 5), "b")
    restored = _windows()
    restored.load_state(json.loads(json.dumps(w.state())))
    assert restored.state() == w.state()
    assert restored.partitions == w.partitions
    assert _feed(restored, range(5, 120), "b").late == _feed(w, range(5, 120), "b").late == 0


def test_state_written_before_partitions_loads_as_one_partition() -> None:
    w = _windows()
    _feed(w, range(0, 30), None)
    old = w.state()
    del old["partitions"], old["watermark"], old["future_total"]
    old |= {"max_event": to_us(T0 + timedelta(minutes=29)), "arrival_now": to_us(P)}
    restored = _windows()
    restored.load_state(old)
    assert restored.clock == w.clock
    assert restored.partitions == w.partitions


# -- the suite -------------------------------------------------------------------------------

CONFIG = MonitorConfig(categories=DEFAULT_CATEGORIES)


def _in_partition(r: ScoredReview, partition: int) -> ScoredReview:
    return replace(
        r, position=SourcePosition("kafka", "reviews", str(partition), r.position.offset)
    )


def _at(r: ScoredReview, offset: int) -> ScoredReview:
    return replace(r, position=SourcePosition(*r.position.key, offset))


def _interleaved(reviews: list[ScoredReview], sizes: tuple[int, ...]) -> list[list[ScoredReview]]:
    """Review ``i`` goes to partition ``i % len(sizes)``; each batch takes the next
    ``sizes[k]`` reviews of partition ``k`` (as a consumer fetching from every partition at
    once, the partitions at different speeds), until all are drained."""
    parts = [[_in_partition(r, k) for r in reviews[k :: len(sizes)]] for k in range(len(sizes))]
    out: list[list[ScoredReview]] = []
    pos = [0] * len(sizes)
    while any(pos[k] < len(parts[k]) for k in range(len(sizes))):
        batch: list[ScoredReview] = []
        for k, size in enumerate(sizes):
            batch += parts[k][pos[k] : pos[k] + size]
            pos[k] += size
        out.append(batch)
    return out


def test_suite_follows_the_partitions_of_a_backlog() -> None:
    reviews = synthetic_stream(StreamSpec(events=8000, seed=3))
    now = reviews[-1].event.event_time + timedelta(hours=1)
    backlog = _interleaved(reviews, (400, 200, 100, 50))
    suite = MonitorSuite(CONFIG)
    for b in backlog:
        suite.observe(b, now)
    counters = suite.counters
    assert (counters.events, counters.late, counters.future) == (8000, 0, 0)
    assert suite.state()["windows"]["partitions"].keys() == {
        "kafka/reviews/0",
        "kafka/reviews/1",
        "kafka/reviews/2",
        "kafka/reviews/3",
    }
    # the same reading order as one stream: the fast partition closes windows under the others
    merged = MonitorSuite(CONFIG)
    read = 0
    for b in backlog:
        # one partition holds them in reading order, at growing offsets
        merged.observe([_at(_in_partition(r, 0), read + i) for i, r in enumerate(b)], now)
        read += len(b)
    assert merged.counters.late > 1000
    assert merged.counters.duplicates == 0


def test_suite_waits_for_partitions_a_second_worker_reads_later() -> None:
    """Two workers: one reads partitions 0 and 1 to their end before the other's 2 and 3
    reach the monitors. Told what the source holds before each batch, the suite counts none
    of 2 and 3 late; not told, it drops most of their first hours."""
    reviews = synthetic_stream(StreamSpec(events=8000, seed=3))
    now = reviews[-1].event.event_time + timedelta(hours=1)
    parts = [[_in_partition(r, k) for r in reviews[k::4]] for k in range(4)]
    backlog = [
        parts[j][i : i + 200] + parts[j + 1][i : i + 200]
        for j in (0, 2)  # the first worker's partitions, then the second's
        for i in range(0, 2000, 200)
    ]
    log = {f"kafka/reviews/{k}": (0, 2000) for k in range(4)}
    told, unaware = MonitorSuite(CONFIG), MonitorSuite(CONFIG)
    for b in backlog:
        told.expect(log, now)
        told.observe(b, now)
        unaware.observe(b, now)
    assert (told.counters.events, told.counters.late) == (8000, 0)
    assert unaware.counters.late > 1000


def test_one_far_future_event_does_not_blind_the_suite() -> None:
    spec = StreamSpec(
        events=12_000, seed=21, change_at=6000, category_priors_after={"Dresses": (0.6, 0.15, 0.25)}
    )
    reviews = synthetic_stream(spec)
    clean = MonitorSuite(CONFIG)
    expected = [a for b in batches(reviews, 250) for a in clean.observe(b, b[-1].event.event_time)]
    far = replace(
        reviews[3000],
        event=replace(reviews[3000].event, event_time=datetime(9999, 12, 31, tzinfo=UTC)),
    )
    poisoned = [list(b) for b in batches(reviews, 250)]
    poisoned[12].insert(100, far)  # the same batches, one of them with a year-9999 event
    suite = MonitorSuite(CONFIG)
    got = [a for b in poisoned for a in suite.observe(b, b[-1].event.event_time)]
    assert [a.alert_id for a in got] == [a.alert_id for a in expected]
    assert [a.alert_id for a in expected] == ["SentimentShift:Dresses:2024-03-01T04:59:00+00:00"]
    readings = {r.name: r.value for r in suite.readings() if not r.labels}
    assert readings["sentiment_monitor_future_events_total"] == 1
    assert readings["sentiment_monitor_late_events_total"] == 0
    assert readings["sentiment_monitor_events_total"] == 12_000
    assert suite.state()["counters"]["future"] == 1


# -- replays: events seen again ----------------------------------------------------------------


def test_unseen_keeps_what_is_above_each_partitions_mark() -> None:
    seen: dict[str, int] = {"a": 5}
    codes = np.array([0, 0, 1, 0, 1, 2], dtype=np.int64)
    offsets = np.array([4, 6, 10, 5, 11, 0], dtype=np.int64)
    fresh = unseen(codes, ["a", "b", "c"], offsets, seen)
    assert fresh.tolist() == [False, True, True, False, True, True]
    assert seen == {"a": 6, "b": 11, "c": 0}
    # Kinesis sequence numbers do not fit 64 bits: Python ints in an object array
    big = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000
    seen = {"s": big}
    fresh = unseen(np.zeros(2, np.int64), ["s"], np.array([big, big + 1], dtype=object), seen)
    assert fresh.tolist() == [False, True] and seen == {"s": big + 1}


def _split(reviews: list[ScoredReview]) -> list[list[ScoredReview]]:
    return [reviews[i : i + 250] for i in range(0, len(reviews), 250)]


def test_a_replay_after_a_restart_is_counted_once() -> None:
    """A source restarted from its last commit hands the suite events it has seen: they are
    skipped (counted as duplicates), and the alerts are those of the stream read once."""
    spec = StreamSpec(
        events=9000, seed=21, change_at=4500, category_priors_after={"Dresses": (0.6, 0.15, 0.25)}
    )
    reviews = [_in_partition(r, r.position.offset % 2) for r in synthetic_stream(spec)]
    once = MonitorSuite(CONFIG)
    expected = [
        a.alert_id for b in _split(reviews) for a in once.observe(b, b[-1].event.event_time)
    ]
    assert expected  # the surge fires
    again = MonitorSuite(CONFIG)
    got: list[str] = []
    for b in _split(reviews[:6000]):
        got += [a.alert_id for a in again.observe(b, b[-1].event.event_time)]
    # restarted from a commit at 5000: 1000 events come again, then the rest
    saved = json.loads(json.dumps(again.state()))
    resumed = MonitorSuite.from_state(CONFIG, saved)
    for b in _split(reviews[5000:]):
        got += [a.alert_id for a in resumed.observe(b, b[-1].event.event_time)]
    assert got == expected
    assert resumed.counters.events == once.counters.events == 9000
    assert resumed.counters.duplicates == 1000
    assert (resumed.counters.late, resumed.counters.future) == (0, 0)
    assert resumed.state()["seen"] == {"kafka/reviews/0": "8998", "kafka/reviews/1": "8999"}
    readings = {r.name: r.value for r in resumed.readings() if not r.labels}
    assert readings["sentiment_monitor_duplicate_events_total"] == 1000


def test_the_columnar_batch_is_deduplicated_as_rows_are() -> None:
    reviews = synthetic_stream(StreamSpec(events=600, seed=4))
    table = scored_table(reviews)
    rows, columns = MonitorSuite(CONFIG), MonitorSuite(CONFIG)
    for suite, first, second in (
        (rows, reviews[:400], reviews[200:]),
        (
            columns,
            ScoredBatch.from_table(table.slice(0, 400)),
            ScoredBatch.from_table(table.slice(200)),
        ),
    ):
        suite.observe(first, reviews[-1].event.event_time)
        suite.observe(second, reviews[-1].event.event_time)
    assert rows.counters == columns.counters
    assert (columns.counters.events, columns.counters.duplicates) == (600, 200)


def test_state_saved_before_marks_existed_skips_nothing() -> None:
    reviews = synthetic_stream(StreamSpec(events=600, seed=4))
    suite = MonitorSuite(CONFIG)
    suite.observe(reviews[:300], reviews[-1].event.event_time)
    old = suite.state()
    del old["seen"]
    resumed = MonitorSuite.from_state(CONFIG, old)
    resumed.observe(reviews[:300], reviews[-1].event.event_time)
    assert (resumed.counters.events, resumed.counters.duplicates) == (600, 0)
