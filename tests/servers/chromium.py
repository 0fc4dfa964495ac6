"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol.

:class:`HeadlessChromium` starts the browser with a DevTools port it picks itself (read back
from ``DevToolsActivePort`` in its profile directory), and :meth:`HeadlessChromium.visit` opens
a page in a new tab with the ``Network`` domain enabled: it returns a screenshot of the
whole page (PNG) and every request the page made (``Network.requestWillBeSent``, the page's own URL
included), so a test can check what a page fetches, not only what its source says. The
websocket client is aiohttp's.

When the binary is missing :class:`HeadlessChromium` raises :class:`ChromiumUnavailableError`:
the tests fail, they never skip (CI installs ``chromium``, see ``.ci/run``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp

from tests.servers.base import ServerProcess

__all__ = ["ChromiumUnavailableError", "HeadlessChromium", "Visit"]


class ChromiumUnavailableError(RuntimeError):
    """Chromium is not installed, or did not start."""


@dataclass(frozen=True)
class Visit:
    """What loading a page did: its screenshot and the URLs it requested, in order."""

    screenshot: bytes
    requests: list[str]


class HeadlessChromium(ServerProcess):
    name = "chromium"
    log_name = "chromium.log"
    start_error = ChromiumUnavailableError
    stop_timeout = 10.0

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir, prefix="chromium-")
        self.port = 0

    def start(self) -> Self:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            raise ChromiumUnavailableError("chromium is not installed (apt-get install chromium)")
        profile = self.workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        port_file = profile / "DevToolsActivePort"
        self._spawn(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ]
        )
        self._await(lambda: port_file.exists() and port_file.read_text().strip(), 60)
        self.port = int(port_file.read_text().split()[0])
        return self

    def _new_tab(self) -> dict[str, Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            target: dict[str, Any] = json.loads(resp.read())
        return target

    def visit(self, url: str, *, width: int = 1300, height: int = 1000) -> Visit:
        """Load ``url`` in a ``width`` x ``height`` viewport and return a screenshot of the
        whole page (however long) and the requests the page made."""
        target = self._new_tab()
        return asyncio.run(_visit(target["webSocketDebuggerUrl"], url, width, height))


async def _visit(ws_url: str, url: str, width: int, height: int) -> Visit:
    requests: list[str] = []
    loaded = asyncio.Event()
    pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
    counter = iter(range(1, 1_000_000))
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:

        async def reader() -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if "id" in data and data["id"] in pending:
                    pending.pop(data["id"]).set_result(data)
                elif data.get("method") == "Network.requestWillBeSent":
                    requests.append(data["params"]["request"]["url"])
                elif data.get("method") == "Page.loadEventFired":
                    loaded.set()

        async def call(method: str, **params: Any) -> dict[str, Any]:
            n = next(counter)
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            pending[n] = fut
            await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
            answer = await asyncio.wait_for(fut, 30)
            if "error" in answer:
                raise ChromiumUnavailableError(f"{method}: {answer['error']}")
            result: dict[str, Any] = answer.get("result", {})
            return result

        task = asyncio.create_task(reader())
        try:
            await call("Network.enable")
            await call("Page.enable")
            await call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            await call("Page.navigate", url=url)
            await asyncio.wait_for(loaded.wait(), 60)
            shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        finally:
            task.cancel()
    return Visit(base64.b64decode(shot["data"]), requests)
