"""A check shared by the deployment tests: environment variables really are settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.settings import Settings

__all__ = ["assert_read_as_settings"]


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
