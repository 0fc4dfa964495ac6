"""One error root for the project, and how a failure is told in a log without leaking.

Every error this project raises on purpose derives from :class:`SentimentMonitorError`. Its
``retriable`` flag tells the caller whether waiting helps, and ``retry_after`` how long the
other side asked us to wait (seconds, when it said); the retry code (:mod:`stream.retry`)
reads both. Like :mod:`stream.events`, this module imports nothing else of the project, so
``sinks/`` may use it.

Logs name a service by scheme, host and port only: :func:`redact_url` drops the user, the
password, the path (webhook tokens live there), the query and the fragment, and
:func:`describe` does the same for every URL inside an error's message.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = [
    "CheckpointConflict",
    "ConfigurationError",
    "DeliveryError",
    "LakeUnavailable",
    "MembershipLapsed",
    "MonitorStateFenced",
    "ScoringRejected",
    "SentimentMonitorError",
    "ServiceUnavailable",
    "describe",
    "redact_url",
    "redact_urls",
]


class SentimentMonitorError(Exception):
    """Root of every error this project raises on purpose."""

    retriable: bool = False
    #: the wait the other side asked for, in seconds (None: it did not say)
    retry_after: float | None = None


class ServiceUnavailable(SentimentMonitorError):
    """A dependency (endpoint, broker, store) is down or throttling: pause and try again."""

    retriable = True


class LakeUnavailable(ServiceUnavailable):
    """The lake's store stayed unavailable until its writer was stopped. A later run writes the
    same files again (nothing was committed past them)."""


class ScoringRejected(SentimentMonitorError):
    """The endpoint refused a request for good (400): retrying the same request cannot help."""


class ConfigurationError(SentimentMonitorError):
    """Settings that cannot work; the message says which and how to fix them."""


class CheckpointConflict(SentimentMonitorError):
    """Another worker holds or wrote this stream's checkpoints. Not retriable: run one worker
    per stream (see docs/kinesis.md), or give each its own stream."""


class MonitorStateFenced(SentimentMonitorError):
    """Another worker took the monitor feed and its state since this one claimed them (this
    one was evicted from the group, say frozen past its session, and has not heard yet). Not
    retriable: the state is the new owner's, and this worker writes none until it is given the
    feed again."""


class MembershipLapsed(SentimentMonitorError):
    """This worker may no longer hold the partitions it was reading: its process stalled
    longer than the group lease allows (frozen, a long pause), or the broker refused a commit
    of its generation. Not retriable in place: what it holds uncommitted is the next owner's
    to read again, so it writes nothing more of that generation."""


class DeliveryError(SentimentMonitorError):
    """One failed attempt to deliver a notification. ``retriable``: whether trying again can
    help; ``retry_after``: the receiver's requested wait in seconds, if it gave one."""

    def __init__(self, message: str, *, retriable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retriable = retriable
        self.retry_after = retry_after


#: a URL in running text (trailing punctuation left to the sentence)
_URL = re.compile(r"""\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]*[^\s"'<>.,;:!?)\]]""")


def redact_url(url: str) -> str:
    """``url`` as a log may show it: ``scheme://host[:port]``, without user, password, path,
    query or fragment. A string that does not parse as a URL is replaced whole."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<url>"
    if not parts.scheme or not host:
        return "<url>"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def redact_urls(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def describe(err: BaseException) -> str:
    """``<ErrorType>: <message>`` for a log line, URLs redacted."""
    message = redact_urls(str(err))
    name = type(err).__name__
    return f"{name}: {message}" if message else name
