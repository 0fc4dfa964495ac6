"""How the worker's faust app stops: its ``before_stop`` callbacks run first, and the consumer
does not wait for messages taken but not acknowledged while stopping (a monitor agent that gave
up its group leaves it to the next owner), though it still does during a rebalance."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream.kafka_app import _App


class Consumer:
    def __init__(self) -> None:
        self.waits = 0

    async def wait_empty(self) -> None:
        self.waits += 1


def app() -> _App:
    return _App("stop-test", broker="kafka://127.0.0.1:1", store="memory://")


async def test_a_rebalance_still_waits_for_unacknowledged_messages() -> None:
    a, consumer = app(), Consumer()
    await a._consumer_wait_empty(consumer, a.log)
    assert consumer.waits == 1


async def test_a_stopping_app_does_not_wait_for_them() -> None:
    a, consumer = app(), Consumer()
    a._stopped.set()  # what mode's Service.stop does before on_stop
    await a._consumer_wait_empty(consumer, a.log)
    assert consumer.waits == 0


async def test_before_stop_callbacks_run_before_the_consumer_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = app()
    order: list[str] = []

    async def callback() -> None:
        await asyncio.sleep(0)
        order.append("callback")

    async def stop_consumer(*_args: Any) -> None:
        order.append("consumer")

    monkeypatch.setattr(a, "_stop_consumer", stop_consumer)
    a.before_stop.append(callback)
    await a.on_stop()
    assert order == ["callback", "consumer"]
