"""Scoring through a SageMaker endpoint (the real service or the local server).

* ``InvokeEndpoint`` through aiobotocore, so requests run concurrently on the event loop;
* a batch is split into requests of ``records_per_request`` reviews, at most ``max_in_flight``
  of them at once (shared by every batch in flight);
* botocore's ``standard`` retry mode retries throttling, 5xx and dropped connections a few
  times with jittered exponential backoff; above that, a circuit breaker: after repeated
  failures it opens and every caller waits, then one probe request decides whether to close it
  again. Failed requests are retried for as long as the outage lasts: while the breaker is
  open the pipeline's bounded queues fill and the source stops pulling, so nothing is dropped;
  when the endpoint is back the backlog drains;
* a 4xx ``ValidationError`` (or ``ModelError``) is final for that request:
  :class:`~stream.errors.ScoringRejected`, which the pipeline turns into dead letters;
* what waiting cannot fix (no credentials, access denied, a client misconfigured) raises
  :class:`~stream.errors.ConfigurationError`, and an unexpected failure inside the HTTP client
  is raised as it is: either ends the run, and what was not delivered is not committed.

Without AWS credentials and with an endpoint URL (the local server), requests go unsigned;
without either the scorer refuses to start. With ``auth_token`` set (local server only) every
request carries ``Authorization: Bearer <token>``; a 401 from the server is a
:class:`~stream.errors.ConfigurationError`. Every failed request is reported to ``on_error``
with its kind (``throttled``, ``server``, ``timeout``, ``connection``, ``rejected``); the
breaker's state is exported through :meth:`EndpointScorer.readings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore import UNSIGNED
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    ReadTimeoutError,
)

from monitors.readings import Reading
from stream.errors import ConfigurationError, ScoringRejected, describe, redact_urls
from stream.events import ReviewEvent
from stream.pipeline import ScoringResult
from stream.retry import Backoff, error_code, http_status, retriable, retrying, throttled
from stream.scoring import parse_response, request_body
from stream.settings import EndpointSettings

__all__ = ["BOTOCORE_MAX_ATTEMPTS", "CircuitBreaker", "EndpointScorer", "ErrorHook"]

ErrorHook = Callable[[str], None]
#: Attempts per request inside botocore (standard mode) before the breaker hears of a failure.
BOTOCORE_MAX_ATTEMPTS = 3
#: The waits between tries once botocore's own retries are spent (0.2 s doubling up to 5 s).
_BACKOFF = Backoff(initial_s=0.2, max_s=5.0, jitter=0.5)
_AUTH_CODES = frozenset(
    {
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "UnrecognizedClientException",
    }
)


class CircuitBreaker:
    """Closed -> (``threshold`` consecutive failures) -> open for ``reset_s`` (doubling up to
    ``max_reset_s`` while probes keep failing) -> half-open: one probe; success closes it.

    :meth:`admit` is how callers ask to send a request: 0 means go (in the half-open state it
    also makes that caller the probe), anything else is how long to wait before asking again.
    A failure reported while the breaker is still open comes from a request sent before it
    opened: it neither extends the wait nor counts as a failed probe."""

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
        self._probing = False
        self.opened = 0
        """How many times the breaker went from closed to open."""

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self._open_until is None:
            return "closed"
        return "open" if self._clock() < self._open_until else "half-open"

    @property
    def probe_interval(self) -> float:
        """How long a caller waiting behind a probe waits before asking again (at most)."""
        return self._base

    def wait_time(self) -> float:
        """Seconds until a request may be tried (0 when closed or half-open)."""
        if self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def admit(self) -> float:
        """0.0: send the request now; else seconds to wait before asking again."""
        wait = self.wait_time()
        if self._open_until is None or wait > 0:
            return wait
        if self._probing:
            return self.probe_interval
        self._probing = True
        return 0.0

    def release(self) -> None:
        """The admitted request ended without an answer either way (cancelled)."""
        self._probing = False

    def success(self) -> None:
        self._failures = 0
        self._open_until = None
        self._delay = self._base
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._open_until is not None:
            if self._clock() >= self._open_until:  # a failed probe: stay open, longer
                self._delay = min(self._delay * 2, self._max)
                self._open_until = self._clock() + self._delay
        elif self._failures >= self._threshold:
            self._open_until = self._clock() + self._delay
            self.opened += 1


def _bearer(token: str) -> Callable[..., None]:
    """A botocore ``before-send`` hook: the local endpoint server's bearer token (it replaces
    any signature: the token is only for a local server, see ``EndpointSettings``)."""
    value = f"Bearer {token}"

    def add_token(request: Any, **_: Any) -> None:
        request.headers["Authorization"] = value

    return add_token


def _classify(err: BaseException) -> tuple[str, Literal["retry", "reject", "fatal", "raise"]]:
    """(metric kind, what to do) for a failed request: retry it (:func:`stream.retry.retriable`
    says waiting may help), reject it (ScoringRejected), end the run with a ConfigurationError,
    or end it with the error itself (not ours to retry: a bug or an unexpected failure inside
    the HTTP client)."""
    if retriable(err):
        if throttled(err):
            return "throttled", "retry"
        if isinstance(err, ClientError):
            return "server", "retry"
        if isinstance(err, ReadTimeoutError | TimeoutError):
            return "timeout", "retry"
        return "connection", "retry"
    if isinstance(err, ClientError):
        auth = http_status(err) in (401, 403) or error_code(err) in _AUTH_CODES
        return "rejected", "fatal" if auth else "reject"
    if type(err) is HTTPClientError:  # botocore's wrapper of an unexpected client failure
        return "connection", "raise"
    # NoCredentialsError, ParamValidationError, NoRegionError, ...: waiting cannot help.
    return "connection", "fatal"


class EndpointScorer:
    """The pipeline's :class:`~stream.pipeline.Scorer` over ``InvokeEndpoint``.

    Use as ``async with EndpointScorer(settings) as scorer`` or call :meth:`close` (safe to
    call twice). ``requests`` and ``failures`` count HTTP exchanges as this client saw them
    (after botocore's own retries)."""

    def __init__(
        self,
        settings: EndpointSettings,
        *,
        breaker: CircuitBreaker | None = None,
        on_error: ErrorHook | None = None,
        session: AioSession | None = None,
        botocore_max_attempts: int = BOTOCORE_MAX_ATTEMPTS,
    ) -> None:
        if botocore_max_attempts < 1:
            raise ValueError("botocore_max_attempts must be >= 1")
        self._settings = settings
        self.breaker = breaker or CircuitBreaker()
        self._on_error = on_error
        self._session = session
        self._max_attempts = botocore_max_attempts
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._closed = False
        self.signed: bool | None = None
        """Whether requests are signed (None until the client exists)."""
        self.requests = 0
        self.failures = 0

    async def __aenter__(self) -> EndpointScorer:
        await self._ensure_client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure_client(self) -> Any:
        async with self._lock:
            if self._closed:
                raise RuntimeError("the endpoint scorer is closed")
            if self._client is None:
                s = self._settings
                session = self._session or get_session()
                signed = await session.get_credentials() is not None
                if not signed and not s.url:
                    raise ConfigurationError(
                        "no AWS credentials for InvokeEndpoint: configure them (environment, "
                        "profile or role), or point SENTIMENT_ENDPOINT__URL at a local endpoint"
                    )
                config = AioConfig(
                    retries={"mode": "standard", "total_max_attempts": self._max_attempts},
                    connect_timeout=min(s.timeout_s, 5.0),
                    read_timeout=s.timeout_s,
                    max_pool_connections=s.max_in_flight * 2,
                    signature_version=None if signed else UNSIGNED,
                )
                kwargs: dict[str, Any] = {"region_name": s.region, "config": config}
                if s.url:
                    kwargs["endpoint_url"] = s.url
                stack = contextlib.AsyncExitStack()
                self._client = await stack.enter_async_context(
                    session.create_client("sagemaker-runtime", **kwargs)
                )
                if s.auth_token is not None:
                    self._client.meta.events.register(
                        "before-send.sagemaker-runtime.InvokeEndpoint",
                        _bearer(s.auth_token.get_secret_value()),
                    )
                self._stack = stack
                self.signed = signed
            return self._client

    async def close(self) -> None:
        """Release the HTTP client and its connections; safe to call twice."""
        async with self._lock:
            self._closed = True
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def readings(self) -> list[Reading]:
        """The breaker's state for ``/metrics`` (see :class:`~stream.metrics.ReadingsCollector`)."""
        return [
            Reading(
                "sentiment_endpoint_circuit_open",
                "1 while the endpoint circuit breaker is open or half-open (requests held back).",
                "gauge",
                {},
                0.0 if self.breaker.state == "closed" else 1.0,
            ),
            Reading(
                "sentiment_endpoint_circuit_opened_total",
                "Times the endpoint circuit breaker opened after repeated failures.",
                "counter",
                {},
                float(self.breaker.opened),
            ),
        ]

    async def score(self, events: Sequence[ReviewEvent]) -> ScoringResult:
        if not events:
            return ScoringResult([], "", "", 0.0)
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

    async def _admit(self) -> None:
        """Wait until the breaker lets a request through (woken early when a probe settles)."""
        while True:
            wait = self.breaker.admit()
            if wait <= 0:
                return
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    def _settle(self, outcome: Callable[[], None]) -> None:
        outcome()
        self._changed.set()
        self._changed = asyncio.Event()

    async def _score_chunk(self, events: Sequence[ReviewEvent]) -> ScoringResult:
        body = request_body(events)
        # botocore's own retries are spent on each failure that reaches here: back off
        # (jittered), then try again, for as long as the outage lasts. Every failure is counted
        # (``on_error``), so the retries are not logged one by one.
        return await retrying(
            functools.partial(self._attempt, body, len(events)),
            what=f"InvokeEndpoint on {self._settings.name}",
            backoff=_BACKOFF,
            log=None,
        )

    async def _attempt(self, body: bytes, count: int) -> ScoringResult:
        """One request: through the semaphore and the breaker; a failure worth retrying is
        raised as it is, after the breaker heard of it."""
        async with self._slots:
            await self._admit()
            settled = False
            try:
                client = await self._ensure_client()
                started = time.perf_counter()
                self.requests += 1
                response = await client.invoke_endpoint(
                    EndpointName=self._settings.name,
                    # a stream: aiohttp sends it in chunks (raw bytes over 1 MB warn)
                    Body=io.BytesIO(body),
                    ContentType="application/json",
                    Accept="application/json",
                )
                async with response["Body"] as stream:
                    payload = await stream.read()
            except (
                TimeoutError,
                ClientError,
                BotoCoreError,
                aiohttp.ClientError,
                OSError,
            ) as err:
                settled = True
                kind, action = _classify(err)
                self.failures += 1
                if self._on_error is not None:
                    self._on_error(kind)
                if action == "reject":
                    self._settle(self.breaker.success)  # the endpoint answered: it is up
                    why = redact_urls(str(err))
                    raise ScoringRejected(f"endpoint rejected the request: {why}") from err
                if action == "fatal":
                    self._settle(self.breaker.release)
                    raise ConfigurationError(
                        f"InvokeEndpoint on {self._settings.name!r} cannot work: {describe(err)}"
                    ) from err
                if action == "raise":
                    self._settle(self.breaker.release)
                    raise
                self._settle(self.breaker.failure)
                raise
            else:
                settled = True
                self._settle(self.breaker.success)
                latency = (time.perf_counter() - started) * 1000.0
                return parse_response(payload, count, latency)
            finally:
                if not settled:  # cancelled (or a bug): let another caller probe
                    self._settle(self.breaker.release)
