"""The one error model and retry policy: which failures are retried, the waits, the loop's
stops and counters, and how errors and URLs appear in logs."""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)

from stream.errors import (
    CheckpointConflict,
    ConfigurationError,
    DeliveryError,
    LakeUnavailable,
    ScoringRejected,
    SentimentMonitorError,
    ServiceUnavailable,
    describe,
    redact_url,
    redact_urls,
)
from stream.retry import (
    Backoff,
    RetryStopped,
    retriable,
    retriable_os_error,
    retriable_status,
    retrying,
    throttled,
)
from tests.fakes import Sleeps


def client_error(code: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Op")


# -- the error model ---------------------------------------------------------------------------


def test_every_project_error_derives_from_the_root_and_says_whether_to_wait() -> None:
    errors: list[SentimentMonitorError] = [
        ServiceUnavailable("x"),
        LakeUnavailable("x"),
        ScoringRejected("x"),
        ConfigurationError("x"),
        CheckpointConflict("x"),
        DeliveryError("x", retriable=True, retry_after=2.0),
        DeliveryError("x", retriable=False),
    ]
    assert [retriable(e) for e in errors] == [True, True, False, False, False, True, False]
    assert [e.retry_after for e in errors] == [None, None, None, None, None, 2.0, None]
    assert isinstance(LakeUnavailable("x"), ServiceUnavailable)


# -- classification ----------------------------------------------------------------------------


def test_aws_errors_are_retried_when_throttled_transient_or_5xx() -> None:
    for code, status in [
        ("SlowDown", 503),
        ("InternalError", 500),
        ("InternalFailure", 500),
        ("ProvisionedThroughputExceededException", 400),
        ("LimitExceededException", 400),
        ("ThrottlingException", 400),
        ("KMSThrottlingException", 400),
        ("RequestTimeout", 400),
        ("ModelNotReadyException", 429),
        ("Anything", 502),
        ("Anything", 429),
        ("Anything", 408),
    ]:
        assert retriable(client_error(code, status)), (code, status)
    for code, status in [
        ("AccessDenied", 403),
        ("AccessDeniedException", 400),
        ("NoSuchBucket", 404),
        ("ResourceNotFoundException", 400),
        ("ValidationError", 400),
        ("PreconditionFailed", 412),
        ("InvalidParameter", 400),
        ("AuthorizationError", 403),
    ]:
        assert not retriable(client_error(code, status)), (code, status)


def test_throttling_is_told_apart() -> None:
    assert throttled(client_error("ProvisionedThroughputExceededException"))
    assert throttled(client_error("Whatever", 429))
    assert not throttled(client_error("InternalFailure", 500))
    assert not throttled(ConnectionResetError())


def test_lost_connections_and_timeouts_are_retried_other_failures_are_not() -> None:
    assert retriable(EndpointConnectionError(endpoint_url="http://x"))
    assert retriable(ConnectTimeoutError(endpoint_url="http://x"))
    assert retriable(ReadTimeoutError(endpoint_url="http://x"))
    assert retriable(ConnectionResetError())
    assert retriable(TimeoutError())
    assert retriable(aiohttp.ServerDisconnectedError())
    assert not retriable(HTTPClientError(error="unexpected"))
    assert not retriable(NoCredentialsError())
    assert not retriable(aiohttp.InvalidURL("nope"))
    assert not retriable(ValueError("a bug"))
    assert not retriable(KeyError("a bug"))


def test_http_statuses() -> None:
    assert [s for s in (200, 400, 404, 408, 413, 425, 429, 500, 503) if retriable_status(s)] == [
        408,
        425,
        429,
        500,
        503,
    ]


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (errno.EROFS, True),
        (errno.EACCES, True),
        (errno.ENOSPC, True),
        (errno.EIO, True),
        (errno.EAGAIN, True),
        (errno.ENETUNREACH, True),
        (errno.ENOENT, False),
        (errno.ENAMETOOLONG, False),
        (errno.EISDIR, False),
        (errno.EINVAL, False),
    ],
)
def test_disk_errors_by_number(number: int, expected: bool) -> None:
    err = OSError(number, "x")
    assert retriable_os_error(err) is expected
    assert retriable(err) is expected


def test_os_error_subclasses_keep_their_meaning() -> None:
    assert retriable_os_error(PermissionError(errno.EACCES, "read-only lake"))
    assert not retriable_os_error(FileNotFoundError(errno.ENOENT, "gone"))
    assert not retriable_os_error(OSError("no number"))
    assert not retriable_os_error(ValueError("not an OSError"))


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_doubles_to_its_cap_and_jitter_takes_at_most_its_share() -> None:
    b = Backoff(initial_s=0.5, max_s=4.0, jitter=0.5)
    assert [b.delay(i, lambda: 1.0) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [b.delay(i, lambda: 0.0) for i in range(4)] == [0.25, 0.5, 1.0, 2.0]
    assert Backoff(initial_s=1.0, jitter=0.0).delay(2, lambda: 0.0) == 4.0
    for bad in (
        {"initial_s": 0},
        {"initial_s": 2.0, "max_s": 1.0},
        {"factor": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ):
        with pytest.raises(ValueError):
            Backoff(**bad)


# -- the loop ----------------------------------------------------------------------------------


class Flaky:
    """Fails with ``errors`` in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


BACKOFF = Backoff(initial_s=0.1, max_s=0.4, jitter=0.0)


async def test_retries_until_the_call_works_and_tells_each_retry() -> None:
    call = Flaky(ConnectionResetError(), client_error("SlowDown", 503), TimeoutError())
    sleeps, told = Sleeps(), []
    result = await retrying(
        call,
        what="x",
        backoff=BACKOFF,
        sleep=sleeps,
        on_retry=lambda err, delay: told.append((type(err).__name__, delay)),
    )
    assert result == "ok" and call.calls == 4
    assert sleeps.delays == [0.1, 0.2, 0.4]
    assert told == [
        ("ConnectionResetError", 0.1),
        ("ClientError", 0.2),
        ("TimeoutError", 0.4),
    ]


async def test_a_failure_waiting_cannot_fix_is_raised_at_once() -> None:
    call = Flaky(ConnectionResetError(), client_error("AccessDenied", 403))
    sleeps = Sleeps()
    with pytest.raises(ClientError, match="AccessDenied"):
        await retrying(call, what="x", backoff=BACKOFF, sleep=sleeps)
    assert call.calls == 2 and sleeps.delays == [0.1]


async def test_max_attempts_raises_the_last_failure() -> None:
    call = Flaky(*(ServiceUnavailable(f"down {i}") for i in range(5)))
    sleeps = Sleeps()
    with pytest.raises(ServiceUnavailable, match="down 2"):
        await retrying(call, what="x", backoff=BACKOFF, max_attempts=3, sleep=sleeps)
    assert call.calls == 3 and sleeps.delays == [0.1, 0.2]
    with pytest.raises(ValueError):
        await retrying(call, what="x", backoff=BACKOFF, max_attempts=0)


async def test_the_classification_can_be_chosen() -> None:
    call = Flaky(KeyError("transient here"))
    result = await retrying(
        call, what="x", backoff=None, is_retriable=lambda e: isinstance(e, KeyError)
    )
    assert result == "ok" and call.calls == 2


async def test_retry_after_raises_the_wait_up_to_the_cap() -> None:
    call = Flaky(
        DeliveryError("429", retriable=True, retry_after=0.3),
        DeliveryError("429", retriable=True, retry_after=60.0),
        DeliveryError("503", retriable=True, retry_after=0.0),
    )
    sleeps = Sleeps()
    assert await retrying(call, what="x", backoff=BACKOFF, sleep=sleeps) == "ok"
    assert sleeps.delays == [0.3, 0.4, 0.4]
    # without a backoff, retries are immediate whatever the receiver asks
    sleeps = Sleeps()
    call = Flaky(DeliveryError("429", retriable=True, retry_after=5.0))
    assert await retrying(call, what="x", backoff=None, sleep=sleeps) == "ok"
    assert sleeps.delays == [0.0]


async def test_give_up_after_a_time() -> None:
    async def never() -> None:
        raise ServiceUnavailable("still down")

    with pytest.raises(ServiceUnavailable, match="still down"):
        await asyncio.wait_for(
            retrying(never, what="x", backoff=Backoff(0.01, 0.01), give_up_after_s=0.05), 5
        )


async def test_a_stop_event_ends_the_waiting_with_the_last_failure_as_cause() -> None:
    stop = asyncio.Event()

    async def down() -> None:
        raise ConnectionRefusedError("store down")

    task = asyncio.create_task(
        retrying(down, what="put", backoff=Backoff(initial_s=30.0, max_s=30.0), stop=stop)
    )
    await asyncio.sleep(0.05)
    assert not task.done()
    stop.set()
    with pytest.raises(RetryStopped, match="put: stopped waiting") as caught:
        await asyncio.wait_for(task, 5)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    # already stopped: the first failure ends it, a success still goes through
    with pytest.raises(RetryStopped):
        await retrying(down, what="put", backoff=BACKOFF, stop=stop)
    assert await retrying(Flaky(), what="put", backoff=BACKOFF, stop=stop) == "ok"


async def test_cancellation_is_not_retried() -> None:
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(retrying(hang, what="x", backoff=BACKOFF))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_each_retry_is_logged_with_urls_redacted(caplog: pytest.LogCaptureFixture) -> None:
    err = EndpointConnectionError(endpoint_url="https://key:s3cr3t@store.example:9000/b/k?sig=1")
    with caplog.at_level(logging.WARNING, logger="stream.retry"):
        await retrying(Flaky(err), what="put into lake", backoff=None, sleep=Sleeps())
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith("put into lake failed (EndpointConnectionError: ")
    assert "https://store.example:9000" in message and message.endswith("; retry 1 in 0.00s")
    assert "s3cr3t" not in message and "/b/k" not in message and "sig=" not in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stream.retry"):
        await retrying(Flaky(TimeoutError()), what="x", backoff=None, sleep=Sleeps(), log=None)
    assert caplog.records == []


# -- redaction ---------------------------------------------------------------------------------


def test_redact_url_keeps_scheme_host_and_port_only() -> None:
    assert redact_url("https://user:pw@hooks.example.com/services/T0/B1/XyZ?token=a#f") == (
        "https://hooks.example.com"
    )
    assert redact_url("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080"
    assert redact_url("http://[::1]:9/x") == "http://[::1]:9"
    assert redact_url("s3://bucket/secret/path") == "s3://bucket"
    assert redact_url("not a url") == "<url>"
    assert redact_url("http://host:notaport/") == "<url>"


def test_urls_inside_text_are_redacted() -> None:
    text = 'Could not connect to "http://u:p@h:1/a/b" nor https://x.example/t?k=v.'
    assert redact_urls(text) == 'Could not connect to "http://h:1" nor https://x.example.'
    assert redact_urls("no url here") == "no url here"
    assert describe(ValueError("see http://u:p@h/x")) == "ValueError: see http://h"
    assert describe(TimeoutError()) == "TimeoutError"


async def test_a_plain_callable_returning_an_awaitable_is_awaited() -> None:
    calls = Flaky(ConnectionResetError())
    # not an ``async def``: the way aiobotocore's methods and lambdas look
    result = await retrying(lambda: calls(), what="x", backoff=None, sleep=Sleeps())
    assert result == "ok" and calls.calls == 2
