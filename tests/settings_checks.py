"""Environment helpers shared by tests: variables really are settings (the deployment tests),
and the environment of a fresh ``sentiment-monitor`` process with none of our settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from stream.settings import Settings

__all__ = ["assert_read_as_settings", "fresh_process_env"]

#: Variables the entry point defers to (``stream.entry``): unset, a process makes its own choice.
_PROCESS_CHOICES = ("ARROW_DEFAULT_MEMORY_POOL", "MALLOC_ARENA_MAX")


def fresh_process_env() -> dict[str, str]:
    """This environment without ``SENTIMENT_`` settings or the entry point's process choices:
    what a freshly started process sees on a machine with nothing configured."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SENTIMENT_") and k not in _PROCESS_CHOICES
    }


def assert_read_as_settings(env: Mapping[str, str]) -> None:
    """Every ``SENTIMENT_`` variable of ``env`` (already set in the environment) names a
    setting, and :class:`Settings` reads it back as the same value."""
    settings = Settings().model_dump()
    for key, value in env.items():
        node: Any = settings
        for part in key.removeprefix("SENTIMENT_").lower().split("__"):
            assert part in node, f"{key} is not a setting"
            node = node[part]
        # Compose writes booleans as YAML strings ("true"); pydantic reads them as bool.
        shown = str(node).lower() if isinstance(node, bool) else str(node)
        assert shown == value, f"{key}={value} was read as {node!r}"
