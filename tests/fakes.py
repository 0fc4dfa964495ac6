"""Small in-process stand-ins shared by the unit tests."""

from __future__ import annotations

import asyncio

__all__ = ["Sleeps"]


class Sleeps:
    """An async ``sleep`` that records each delay asked for and only yields to the loop."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)
