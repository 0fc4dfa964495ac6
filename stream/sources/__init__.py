"""Sources: adapters that turn a transport's records into :class:`~stream.pipeline.RawRecord`."""

from stream.sources.replay import ReplaySource

__all__ = ["ReplaySource"]
