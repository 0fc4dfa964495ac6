"""One error root for the project. ``retriable`` tells the caller whether waiting helps."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ScoringRejected",
    "SentimentMonitorError",
    "ServiceUnavailable",
]


class SentimentMonitorError(Exception):
    """Root of every error this project raises on purpose."""

    retriable: bool = False


class ServiceUnavailable(SentimentMonitorError):
    """A dependency (endpoint, broker, store) is down or throttling: pause and try again."""

    retriable = True


class ScoringRejected(SentimentMonitorError):
    """The endpoint refused a request for good (400): retrying the same request cannot help."""


class ConfigurationError(SentimentMonitorError):
    """Settings that cannot work; the message says which and how to fix them."""
