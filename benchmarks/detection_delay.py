"""Detection delay and false alarms: our negative-share CUSUM against river's ADWIN and
PageHinkley, side by side on the same seeded streams.

Each delay stream is a 0/1 "review is negative" sequence: ``--change`` events at the baseline
share p0 = 0.20, then ``--after`` events at p1. Delay = events from the change point to the first
alarm at or after it (a stream without one is *missed*; an alarm before the change is a false
alarm). False alarms per 100,000 events are counted on long stationary streams at p0, each
detector restarting after an alarm (river's detectors restart themselves).

Our detector learns p0 from the first 2,000 events of each stream as the suite does (the upper
90 % bound of the baseline share) and runs at two budgets: false-alarm probability a = 0.001
per 100,000 events (threshold ln(1e5 / a) = 18.4; the suite splits this budget over its 20
detectors), and a looser a = 0.1 (threshold 13.8), to show the trade-off.

The last lines run the whole :class:`monitors.MonitorSuite` on a 20,000-event synthetic stream
in which one of 18 categories turns from 20 % to 60 % negative halfway, and report its cost per
event and the detection delay of that category.

Usage: ``python benchmarks/detection_delay.py [--seeds 30] [--stationary 1000000]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from river import drift

from monitors import BernoulliCusum, MonitorConfig, MonitorSuite, cusum_threshold
from monitors.shift import upper_shares
from monitors.simulate import DEFAULT_CATEGORIES, StreamSpec, batches, synthetic_stream

P0 = 0.20
BASELINE = 2000
HORIZON = 100_000
ALPHA = 0.001


class _Ours:
    """Adapter: learn p0 on the first BASELINE events, then the CUSUM (vectorised)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.name = f"CUSUM (ours, a={alpha:g})"

    def run(self, xs: np.ndarray) -> list[int]:
        base = xs[:BASELINE]
        p0, _ = upper_shares([int(base.sum())], [BASELINE], 0.9)
        threshold = cusum_threshold(self.alpha, HORIZON)
        det = BernoulliCusum(p0, odds_ratio=2.0, threshold=threshold, min_count=50)
        alarms = []
        pos = BASELINE
        while pos < xs.shape[0]:
            hits = [t for t in det.update_many(xs[pos:]) if t.status == "firing"]
            if not hits:
                break
            alarms.append(pos + hits[0].index)
            pos += hits[0].index + 1
            det.reset()
        return alarms


class _River:
    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self.name = name
        self.factory = factory

    def run(self, xs: np.ndarray) -> list[int]:
        det: Any = self.factory()
        alarms = []
        for i, x in enumerate(xs.tolist()):
            det.update(x)
            if det.drift_detected and i >= BASELINE:
                alarms.append(i)
        return alarms


class _Detector(Protocol):
    name: str

    def run(self, xs: np.ndarray) -> list[int]: ...


DETECTORS: list[_Detector] = [
    _Ours(ALPHA),
    _Ours(0.1),
    _River("ADWIN (delta=0.002)", drift.ADWIN),
    _River("PageHinkley (defaults)", drift.PageHinkley),
    _River("PageHinkley (mode=up)", lambda: drift.PageHinkley(mode="up")),
]


def delay_table(seeds: int, change: int, after: int) -> None:
    print(f"\nDetection delay (events after the change), {seeds} seeded streams per row,")
    print(f"p0 = {P0:.2f} for {change} events, then p1 for {after} events\n")
    head = (
        f"{'p1':>5}  {'detector':<24} {'median':>7} {'mean':>7} {'p90':>7} {'missed':>7} "
        f"{'false alarms before change':>27} {'us/event':>9}"
    )
    print(head)
    print("-" * len(head))
    for p1 in (0.30, 0.40, 0.60):
        streams = []
        for seed in range(seeds):
            rng = np.random.default_rng(10_000 + seed)
            xs = np.concatenate([rng.random(change) < P0, rng.random(after) < p1]).astype(np.int64)
            streams.append(xs)
        for det in DETECTORS:
            delays, missed, early = [], 0, 0
            t0 = time.perf_counter()
            for xs in streams:
                alarms = det.run(xs)
                early += sum(1 for a in alarms if a < change)
                late = [a for a in alarms if a >= change]
                if late:
                    delays.append(late[0] - change)
                else:
                    missed += 1
            us = (time.perf_counter() - t0) / (len(streams) * (change + after)) * 1e6
            if delays:
                med = f"{statistics.median(delays):7.0f}"
                mean = f"{statistics.fmean(delays):7.0f}"
                p90 = f"{np.percentile(delays, 90):7.0f}"
            else:
                med = mean = p90 = f"{'-':>7}"
            print(f"{p1:5.2f}  {det.name:<24} {med} {mean} {p90} {missed:7d} {early:27d} {us:9.2f}")


def false_alarm_table(total: int) -> None:
    chunk = 100_000
    n = max(1, total // chunk)
    print(f"\nFalse alarms per 100,000 events on stationary streams (p = {P0:.2f}), ")
    print(f"{n} seeded streams of {chunk:,} events ({n * chunk:,} events)\n")
    head = f"{'detector':<24} {'alarms':>7} {'per 100,000':>12}"
    print(head)
    print("-" * len(head))
    streams = [
        (np.random.default_rng(20_000 + s).random(chunk + BASELINE) < P0).astype(np.int64)
        for s in range(n)
    ]
    for det in DETECTORS:
        alarms = sum(len(det.run(xs)) for xs in streams)
        print(f"{det.name:<24} {alarms:7d} {alarms / n:12.2f}")


def suite_run() -> None:
    spec = StreamSpec(
        events=20_000,
        seed=11,
        change_at=10_000,
        category_priors_after={"Dresses": (0.6, 0.15, 0.25)},
    )
    reviews = synthetic_stream(spec)
    suite = MonitorSuite(MonitorConfig(categories=DEFAULT_CATEGORIES))
    fired: list[tuple[int, str]] = []
    t0 = time.perf_counter()
    seen = 0
    for b in batches(reviews, 500):
        now: datetime = b[-1].event.event_time
        for a in suite.observe(b, now):
            if a.status == "firing":
                end = datetime.fromisoformat(a.evidence["window_end"])
                idx = next(i for i, r in enumerate(reviews) if r.event.event_time >= end)
                fired.append((idx, f"{a.name}[{a.category}]"))
        seen += len(b)
    elapsed = time.perf_counter() - t0
    print("\nMonitorSuite on 20,000 events, 18 categories, Dresses 20% -> 60% negative at 10,000")
    print(f"  cost: {elapsed / seen * 1e6:.1f} us per event (batches of 500, every monitor on)")
    for idx, name in fired:
        dresses = sum(1 for r in reviews[10_000 : idx + 1] if r.event.product_category == "Dresses")
        print(
            f"  {name}: alarm at event {idx} - delay {idx - 10_000} stream events, "
            f"{dresses} Dresses reviews"
        )
    if not fired:
        print("  no alarm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--change", type=int, default=5000)
    parser.add_argument("--after", type=int, default=5000)
    parser.add_argument("--stationary", type=int, default=1_000_000)
    args = parser.parse_args()
    delay_table(args.seeds, args.change, args.after)
    false_alarm_table(args.stationary)
    suite_run()


if __name__ == "__main__":
    main()
