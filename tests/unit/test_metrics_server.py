"""The /metrics server: the port it takes, and a clear refusal when that port is taken."""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream.app import MetricsServer, MetricsUnavailable
from stream.cli import app
from stream.metrics import PipelineMetrics


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_port_zero_serves_on_the_port_the_system_gave(caplog: pytest.LogCaptureFixture) -> None:
    server = MetricsServer(PipelineMetrics(["Dresses"]), "127.0.0.1", 0)
    with caplog.at_level(logging.INFO, logger="stream.app"):
        server.start()
    try:
        assert server.port != 0
        assert f"serving /metrics on http://127.0.0.1:{server.port}/metrics" in caplog.text
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert b"sentiment_records_received_total" in resp.read()
    finally:
        server.stop()


def test_a_taken_port_is_refused_with_the_address_and_the_setting(taken_port: int) -> None:
    server = MetricsServer(PipelineMetrics(["Dresses"]), "127.0.0.1", taken_port)
    with pytest.raises(MetricsUnavailable) as refused:
        server.start()
    message = str(refused.value)
    assert f"127.0.0.1:{taken_port}" in message
    assert "Address already in use" in message
    assert "SENTIMENT_METRICS_PORT" in message
    assert isinstance(refused.value.__cause__, OSError)


def test_run_on_a_taken_port_says_so_and_exits_1(taken_port: int, tmp_path: Path) -> None:
    args = ["run", "--events", "50", "--no-progress", "--metrics-port", str(taken_port)]
    args += ["--lake", str(tmp_path / "lake"), "--alerts", str(tmp_path / "alerts.jsonl")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert f"127.0.0.1:{taken_port}" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.rglob("*.parquet")) == []  # refused before the first record
