"""Retry policy shared by the AWS adapters (S3 lake, Kinesis): which errors waiting may fix,
and how long to wait. Pure: no I/O, the random source is passed in."""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

__all__ = ["Backoff", "error_code", "retriable"]

_TRANSIENT = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    BotoConnectionError,
    ConnectionError,
    TimeoutError,
)


def error_code(err: BaseException) -> str:
    """The AWS error code of a ``ClientError`` ('' for anything else)."""
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def retriable(err: BaseException, codes: Collection[str]) -> bool:
    """Whether waiting may help: no connection, timeouts, a 5xx, or one of ``codes``
    (the service's throttling and transient error codes)."""
    if isinstance(err, _TRANSIENT):
        return True
    if isinstance(err, ClientError):
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return error_code(err) in codes or status >= 500
    return False


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

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rng.random())
