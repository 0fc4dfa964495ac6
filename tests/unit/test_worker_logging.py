"""The worker's log level holds for the libraries it runs on: at WARNING and above, debug
records of aiokafka (one per Kafka request) are not built at all."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import faust
import pytest

from stream.worker import faust_worker


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize("loglevel", ["warning", "error"])
def test_a_quiet_worker_does_not_build_debug_records(loglevel: str, root_logging: None) -> None:
    app = faust.App("logging-test", broker="kafka://127.0.0.1:1", store="memory://")
    worker = faust_worker(app, loglevel)
    worker.stdout = io.StringIO()
    worker.redirect_stdouts = False  # the test process keeps its own sys.stdout
    worker._setup_logging()
    assert logging.getLogger().level == getattr(logging, loglevel.upper())
    assert not logging.getLogger("aiokafka.conn").isEnabledFor(logging.DEBUG)


def test_faust_itself_would_lower_the_root_logger(root_logging: None) -> None:
    """The reason for :func:`faust_worker`: a plain faust worker at ERROR enables DEBUG."""
    app = faust.App("logging-test-plain", broker="kafka://127.0.0.1:1", store="memory://")
    worker = faust.Worker(app, loglevel="error")
    worker.redirect_stdouts = False
    worker._setup_logging()
    assert logging.getLogger("aiokafka.conn").isEnabledFor(logging.DEBUG)
