"""Scoring through a SageMaker endpoint (the real service or the local server).

* ``InvokeEndpoint`` through aiobotocore, so requests run concurrently on the event loop;
* a batch is split into requests of ``records_per_request`` reviews, at most ``max_in_flight``
  of them at once (shared by every batch in flight);
* botocore's ``standard`` retry mode retries throttling and 5xx with jittered exponential
  backoff; above that, a circuit breaker: after repeated failures it opens and every caller
  waits, then one probe request decides whether to close it again. While it is open the
  pipeline's bounded queues fill and the source stops pulling, so nothing is dropped; when the
  endpoint is back the backlog drains;
* a 4xx ``ValidationError`` is final for that request: :class:`ScoringRejected`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from stream.errors import ScoringRejected
from stream.events import ReviewEvent
from stream.pipeline import ScoringResult
from stream.scoring import parse_response, request_body
from stream.settings import EndpointSettings

__all__ = ["CircuitBreaker", "EndpointScorer"]

ErrorHook = Callable[[str], None]


class CircuitBreaker:
    """Closed -> (``threshold`` consecutive failures) -> open for ``reset_s`` (doubling up to
    ``max_reset_s`` while probes keep failing) -> half-open: one probe; success closes it."""

    def __init__(
        self,
        threshold: int = 5,
        reset_s: float = 1.0,
        max_reset_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or reset_s <= 0 or max_reset_s < reset_s:
            raise ValueError("threshold >= 1 and 0 < reset_s <= max_reset_s")
        self._threshold = threshold
        self._base = reset_s
        self._max = max_reset_s
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        self._delay = reset_s

    @property
    def state(self) -> str:
        if self._open_until is None:
            return "closed"
        return "open" if self._clock() < self._open_until else "half-open"

    def wait_time(self) -> float:
        """Seconds until a request may be tried (0 when closed or half-open)."""
        if self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def success(self) -> None:
        self._failures = 0
        self._open_until = None
        self._delay = self._base

    def failure(self) -> None:
        self._failures += 1
        if self._open_until is not None:  # a failed probe: stay open, longer
            self._delay = min(self._delay * 2, self._max)
            self._open_until = self._clock() + self._delay
        elif self._failures >= self._threshold:
            self._open_until = self._clock() + self._delay


def _error_kind(err: BaseException) -> str:
    if isinstance(err, ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = err.response.get("Error", {}).get("Code", "")
        if status == 429 or "Throttl" in code:
            return "throttled"
        return "server" if status >= 500 else "rejected"
    if isinstance(err, ReadTimeoutError | asyncio.TimeoutError):
        return "timeout"
    return "connection"


class EndpointScorer:
    """The pipeline's :class:`~stream.pipeline.Scorer` over ``InvokeEndpoint``.

    Use as ``async with EndpointScorer(settings) as scorer`` or call :meth:`close`."""

    def __init__(
        self,
        settings: EndpointSettings,
        *,
        breaker: CircuitBreaker | None = None,
        on_error: ErrorHook | None = None,
    ) -> None:
        self._settings = settings
        self._breaker = breaker or CircuitBreaker()
        self._on_error = on_error
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._client: Any = None
        self._client_cm: Any = None
        self._lock = asyncio.Lock()
        self.requests = 0
        self.failures = 0

    async def __aenter__(self) -> EndpointScorer:
        await self._ensure_client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure_client(self) -> Any:
        async with self._lock:
            if self._client is None:
                s = self._settings
                config = AioConfig(
                    retries={"mode": "standard", "max_attempts": 4},
                    connect_timeout=min(s.timeout_s, 5.0),
                    read_timeout=s.timeout_s,
                    max_pool_connections=s.max_in_flight * 2,
                )
                kwargs: dict[str, Any] = {"region_name": s.region, "config": config}
                if s.url:
                    kwargs["endpoint_url"] = s.url
                self._client_cm = get_session().create_client("sagemaker-runtime", **kwargs)
                self._client = await self._client_cm.__aenter__()
            return self._client

    async def close(self) -> None:
        """Release the HTTP client; safe to call twice."""
        cm, self._client_cm, self._client = self._client_cm, None, None
        if cm is not None:
            await cm.__aexit__(None, None, None)

    async def score(self, events: Sequence[ReviewEvent]) -> ScoringResult:
        size = self._settings.records_per_request
        chunks = [events[i : i + size] for i in range(0, len(events), size)]
        started = time.perf_counter()
        results = await asyncio.gather(*(self._score_chunk(c) for c in chunks))
        latency = (time.perf_counter() - started) * 1000.0
        first = results[0]
        return ScoringResult(
            [p for r in results for p in r.predictions],
            first.model_name,
            first.model_version,
            latency,
        )

    async def _score_chunk(self, events: Sequence[ReviewEvent]) -> ScoringResult:
        body = request_body(events)
        attempt = 0
        while True:
            wait = self._breaker.wait_time()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self._slots:
                client = await self._ensure_client()
                started = time.perf_counter()
                try:
                    self.requests += 1
                    response = await client.invoke_endpoint(
                        EndpointName=self._settings.name,
                        Body=body,
                        ContentType="application/json",
                        Accept="application/json",
                    )
                    payload = await response["Body"].read()
                except (
                    TimeoutError,
                    ClientError,
                    BotoCoreError,
                    BotoConnectionError,
                    OSError,
                ) as err:
                    kind = _error_kind(err)
                    self.failures += 1
                    if self._on_error is not None:
                        self._on_error(kind)
                    if kind == "rejected":
                        raise ScoringRejected(str(err)) from err
                    self._breaker.failure()
                    attempt += 1
                else:
                    self._breaker.success()
                    latency = (time.perf_counter() - started) * 1000.0
                    return parse_response(payload, len(events), latency)
            # Retriable and botocore's own retries are spent: back off (jittered), then again.
            await asyncio.sleep(min(5.0, 0.1 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.0))  # noqa: S311
