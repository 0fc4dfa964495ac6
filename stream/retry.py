"""One retry policy for every outside service: which failures waiting may fix, how long to
wait, and the loop itself (tenacity's ``AsyncRetrying``).

* :func:`retriable` is the one answer to "may waiting help?": a project error says so itself
  (:attr:`~stream.errors.SentimentMonitorError.retriable`); an AWS error when its code is a
  throttling or transient one, or its HTTP status is 408, 425, 429 or 5xx; no connection, a
  timeout, a dropped response; and the ``OSError`` numbers of :data:`TRANSIENT_ERRNOS` (a full,
  read-only or unreachable disk or network: an operator can fix them while we wait).
* :class:`Backoff`: waits grow from ``initial_s`` by ``factor`` up to ``max_s``, each with up
  to ``jitter`` of it taken off at random, so callers throttled together do not retry together.
* :func:`retrying` runs a call until it succeeds, a failure is not retriable, ``max_attempts``
  or ``give_up_after_s`` is reached, or the ``stop`` event is set. It logs each retry (errors
  through :func:`~stream.errors.describe`, so with URLs redacted) and tells ``on_retry``.

Like :mod:`stream.events` and :mod:`stream.errors` (the one module of ours it imports), this
module is neutral: sources and sinks may both import it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    stop_never,
)
from tenacity.stop import stop_base

from stream.errors import SentimentMonitorError, ServiceUnavailable, describe

__all__ = [
    "RETRIABLE_STATUSES",
    "THROTTLING_CODES",
    "TRANSIENT_CODES",
    "TRANSIENT_ERRNOS",
    "Backoff",
    "RetryStopped",
    "error_code",
    "http_status",
    "retriable",
    "retriable_os_error",
    "retriable_status",
    "retrying",
    "throttled",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: AWS error codes that mean "too many requests: slow down" (Kinesis, S3, SNS, SageMaker, KMS).
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "KMSThrottlingException",
        "RequestLimitExceeded",
        "SlowDown",
        "ModelNotReadyException",
    }
)
#: AWS error codes of the service's own passing trouble (most come with a 5xx status too).
TRANSIENT_CODES = THROTTLING_CODES | frozenset(
    {
        "InternalFailure",
        "InternalFailureException",
        "InternalError",
        "InternalErrorException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "RequestTimeTooSkewed",
        "500",
        "503",
    }
)
#: HTTP statuses worth another try (besides every 5xx).
RETRIABLE_STATUSES = frozenset({408, 425, 429})
#: ``OSError`` numbers that waiting (or an operator) may fix: a full, read-only or unwritable
#: disk, an I/O error, a resource busy for now, an unreachable network, no descriptors left.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EROFS,
        errno.EACCES,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EAGAIN,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ETIMEDOUT,
    }
)

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    BotoConnectionError,  # no connection: EndpointConnectionError, ConnectTimeoutError, ...
    ConnectionClosedError,
    ReadTimeoutError,
    ResponseStreamingError,
    ConnectionError,  # the builtin: refused, reset, aborted, broken pipe
    TimeoutError,
)


def error_code(err: BaseException) -> str:
    """The AWS error code of a ``ClientError`` ('' for anything else)."""
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def http_status(err: BaseException) -> int:
    """The HTTP status of a ``ClientError`` or an aiohttp response error (0 otherwise)."""
    if isinstance(err, ClientError):
        return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if isinstance(err, aiohttp.ClientResponseError):
        return int(err.status)
    return 0


def retriable_status(status: int) -> bool:
    """Whether an HTTP answer with ``status`` is worth another try (408, 425, 429, 5xx)."""
    return status in RETRIABLE_STATUSES or status >= 500


def throttled(err: BaseException) -> bool:
    """Whether ``err`` says "too many requests" (a throttling code, or HTTP 429)."""
    return error_code(err) in THROTTLING_CODES or http_status(err) == 429


def retriable_os_error(err: BaseException) -> bool:
    """Whether ``err`` is an ``OSError`` that waiting may fix: a connection or timeout error, or
    one of :data:`TRANSIENT_ERRNOS` (for a local disk: read-only, full, no permission, I/O)."""
    if isinstance(err, ConnectionError | TimeoutError):
        return True
    return isinstance(err, OSError) and err.errno in TRANSIENT_ERRNOS


def retriable(err: BaseException) -> bool:
    """Whether waiting may help (see the module doc)."""
    if isinstance(err, SentimentMonitorError):
        return err.retriable
    if isinstance(err, ClientError):
        return error_code(err) in TRANSIENT_CODES or retriable_status(http_status(err))
    if isinstance(err, _TRANSIENT_TYPES):
        return True
    if isinstance(err, aiohttp.ClientResponseError):
        return retriable_status(err.status)
    if isinstance(err, aiohttp.ClientError):  # connection, payload, server timeout
        return not isinstance(err, aiohttp.InvalidURL)
    return retriable_os_error(err)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits grow from ``initial_s`` by ``factor`` up to ``max_s``, each with up to ``jitter``
    of it taken off at random (so callers throttled together do not retry together)."""

    initial_s: float = 0.2
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.factor < 1:
            raise ValueError("need 0 < initial_s <= max_s and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def delay(self, retry: int, rng: Callable[[], float]) -> float:
        """The wait before retry number ``retry`` (0 for the first), ``rng()`` in [0, 1]: 1
        waits the whole step, 0 takes ``jitter`` of it off."""
        base = min(self.max_s, self.initial_s * self.factor ** min(retry, 64))
        return base * (1.0 - self.jitter * (1.0 - rng()))


class RetryStopped(ServiceUnavailable):
    """The caller's ``stop`` event ended the waiting; the last failure is the cause."""


async def retrying(
    call: Callable[[], Awaitable[_T]],
    *,
    what: str,
    backoff: Backoff | None,
    is_retriable: Callable[[BaseException], bool] = retriable,
    max_attempts: int | None = None,
    give_up_after_s: float | None = None,
    stop: asyncio.Event | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[BaseException, float], object] | None = None,
    log: logging.Logger | None = _log,
) -> _T:
    """``await call()`` until it returns, retrying the failures ``is_retriable`` accepts.

    ``backoff`` None retries at once. A project error's ``retry_after`` raises the wait (up to
    ``backoff.max_s``). After ``max_attempts`` calls or ``give_up_after_s`` seconds the last
    failure is raised as it is; when ``stop`` is set (before or during a wait)
    :class:`RetryStopped` is raised from it. ``on_retry(error, delay)`` is called before each
    wait (counters); ``log`` (None: silent) gets one warning per retry."""
    if max_attempts is not None and max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    last: list[BaseException] = []  # the failure before the current wait

    def before_sleep(state: RetryCallState) -> None:
        err = _failure(state)
        last[:] = [err]
        delay = state.upcoming_sleep
        if on_retry is not None:
            on_retry(err, delay)
        if log is not None:
            n = state.attempt_number
            log.warning("%s failed (%s); retry %d in %.2fs", what, describe(err), n, delay)

    def should_retry(state: RetryCallState) -> bool:
        outcome = state.outcome
        return outcome is not None and outcome.failed and is_retriable(_failure(state))

    retryer = AsyncRetrying(
        sleep=_pause(what, stop, sleep, last),
        stop=_stop_rule(max_attempts, give_up_after_s),
        wait=_wait_rule(backoff, rng),
        retry=should_retry,
        before_sleep=before_sleep,
        reraise=True,
    )

    async def attempt() -> _T:
        # awaited here: tenacity would hand back, unawaited, the coroutine of a callable it does
        # not recognise as async (a partial of an aiobotocore method, a lambda)
        return await call()

    return await retryer(attempt)


def _wait_rule(
    backoff: Backoff | None, rng: Callable[[], float]
) -> Callable[[RetryCallState], float]:
    """The wait after a failed attempt: the backoff's step (none without a backoff), raised to
    a project error's ``retry_after`` (at most ``backoff.max_s``)."""

    def wait(state: RetryCallState) -> float:
        err = _failure(state)
        delay = 0.0 if backoff is None else backoff.delay(state.attempt_number - 1, rng)
        if isinstance(err, SentimentMonitorError) and err.retry_after is not None:
            cap = delay if backoff is None else backoff.max_s
            delay = max(delay, min(err.retry_after, cap))
        return delay

    return wait


def _stop_rule(max_attempts: int | None, give_up_after_s: float | None) -> stop_base:
    """Stop after ``max_attempts`` calls or ``give_up_after_s`` seconds (never if both None)."""
    stops: list[stop_base] = []
    if max_attempts is not None:
        stops.append(stop_after_attempt(max_attempts))
    if give_up_after_s is not None:
        stops.append(stop_after_delay(give_up_after_s))
    return stop_any(*stops) if stops else stop_never


def _pause(
    what: str,
    stop: asyncio.Event | None,
    sleep: Callable[[float], Awaitable[object]],
    last: Sequence[BaseException],
) -> Callable[[float], Awaitable[None]]:
    """The wait between attempts: ``sleep(delay)``, or, with a ``stop`` event, until the delay
    passes or ``stop`` is set (then :class:`RetryStopped` from the last failure)."""

    async def pause(delay: float) -> None:
        if stop is None:
            await sleep(delay)
            return
        stopped = stop.is_set()
        if not stopped:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                return
        raise RetryStopped(f"{what}: stopped waiting") from (last[0] if last else None)

    return pause


def _failure(state: RetryCallState) -> BaseException:
    outcome = state.outcome
    err = outcome.exception() if outcome is not None else None
    if err is None:  # tenacity asks only about failed attempts
        raise RuntimeError("retry asked about an attempt that did not fail")
    return err
