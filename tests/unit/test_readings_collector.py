"""The monitors' readings are taken on the event loop that changes them, not on the /metrics
server's thread."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from monitors import MonitorConfig, MonitorSuite
from monitors.readings import Reading
from monitors.simulate import DEFAULT_CATEGORIES, StreamSpec, batches, synthetic_stream
from stream.app import Runtime, build_review_loop
from stream.metrics import ReadingsCollector
from stream.pipeline import Scorer
from tests.fakes import offline_review_settings
from tests.servers.ports import free_port


class _Recorded:
    """A suite's readings, recording the thread that took each."""

    def __init__(self, suite: MonitorSuite) -> None:
        self.suite = suite
        self.threads: list[int] = []

    def readings(self) -> list[Reading]:
        self.threads.append(threading.get_ident())
        return self.suite.readings()


@pytest.fixture
def short_switch_interval() -> Iterator[None]:
    """Threads switch often, as on a loaded machine."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("short_switch_interval")
async def test_scrapes_while_the_monitors_observe_are_taken_on_their_loop() -> None:
    """A scrape thread collects without pause while the loop observes a stream whose windows
    gain panes: every reading is taken on the loop's thread, and no scrape fails. (With the
    collector built without the loop, so reading on the scrape thread, this test fails:
    scrapes raise ``dictionary changed size during iteration`` in the windows' panes.)"""
    spec = StreamSpec(
        events=8_000, seed=21, change_at=4_000, category_priors_after={"Dresses": (0.6, 0.15, 0.25)}
    )
    reviews = list(synthetic_stream(spec))
    source = _Recorded(MonitorSuite(MonitorConfig(categories=DEFAULT_CATEGORIES)))
    collector = ReadingsCollector(source, asyncio.get_running_loop())
    stop = threading.Event()
    errors: list[BaseException] = []

    def scrape() -> None:
        n = 0
        while not stop.is_set() or n == 0:
            try:
                families = list(collector.collect())
            except Exception as err:  # noqa: BLE001 - counted, then asserted
                errors.append(err)
            else:
                assert any(f.name == "sentiment_monitor_events" for f in families)
            n += 1

    scrapes = asyncio.ensure_future(asyncio.to_thread(scrape))
    for batch in batches(reviews, 100):
        source.suite.observe(batch, batch[-1].event.event_time)
        await asyncio.sleep(0)  # the scrapes' callbacks run between two batches
    during = len(source.threads)
    stop.set()
    await scrapes
    assert errors == []
    assert during > 0, "no scrape was taken while the suite observed"
    assert set(source.threads) == {threading.get_ident()}


def test_without_a_running_loop_the_readings_are_taken_in_place() -> None:
    source = _Recorded(MonitorSuite(MonitorConfig(categories=DEFAULT_CATEGORIES)))
    loop = asyncio.new_event_loop()
    try:
        assert list(ReadingsCollector(source, loop).collect())
        assert list(ReadingsCollector(source).collect())
    finally:
        loop.close()
    assert source.threads == [threading.get_ident()] * 2


def test_a_scrape_gives_up_on_a_loop_that_does_not_answer() -> None:
    source = _Recorded(MonitorSuite(MonitorConfig(categories=DEFAULT_CATEGORIES)))
    loop = asyncio.new_event_loop()
    blocked = threading.Event()
    release = threading.Event()

    def block() -> None:
        blocked.set()
        release.wait(10)

    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        loop.call_soon_threadsafe(block)
        assert blocked.wait(10)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            list(ReadingsCollector(source, loop, timeout_s=0.2).collect())
        assert time.monotonic() - started < 5
    finally:
        release.set()
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()
    assert source.threads == []  # the reading given up on is not taken later


async def test_a_failing_reading_fails_the_scrape_not_the_loop() -> None:
    class Broken:
        def readings(self) -> list[Reading]:
            raise ValueError("a reading that cannot be taken")

    collector = ReadingsCollector(Broken(), asyncio.get_running_loop())
    with pytest.raises(ValueError, match="cannot be taken"):
        await asyncio.to_thread(lambda: list(collector.collect()))
    await asyncio.sleep(0)  # the loop goes on


async def test_the_review_loops_readings_are_taken_on_its_loop_and_its_outbox_off_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served as every path serves them: what the review loop keeps in memory (its tasks
    change it) is read on its event loop; the store's outbox depth on the scrape's thread (a
    held store file would otherwise stall the loop for SQLite's busy timeout)."""
    port = free_port()
    settings = offline_review_settings(tmp_path, ("Dresses", "Knits"), metrics_port=port)
    review = build_review_loop(settings)
    assert review is not None
    threads: dict[str, set[int]] = {"loop": set(), "outbox": set()}

    def recorded(name: str, readings: Any) -> Any:
        def take() -> Any:
            threads[name].add(threading.get_ident())
            return readings()

        return take

    monkeypatch.setattr(review, "readings", recorded("loop", review.readings))
    monkeypatch.setattr(review.outbox, "readings", recorded("outbox", review.outbox.readings))
    try:
        async with Runtime(settings, scorer=cast(Scorer, object())) as rt:
            rt.serve_metrics(None, asyncio.get_running_loop(), review)
            url = f"http://127.0.0.1:{port}/metrics"
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    finally:
        await review.close(send_last=False)
    text = body.decode()
    assert "sentiment_review_outbox_tasks 0.0" in text
    assert 'sentiment_review_selected_total{reason="audit"} 0.0' in text
    assert threads["loop"] == {threading.get_ident()}
    assert len(threads["outbox"]) == 1
    assert threading.get_ident() not in threads["outbox"]
