"""docker-compose.yml: valid against the Compose Specification (Debian's docker-compose
validates it; no Docker engine runs here), and its settings are what the code reads."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from typer.testing import CliRunner

from stream.cli import app
from stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def services() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    result: dict[str, Any] = doc["services"]
    return result


def test_compose_file_is_valid_per_the_compose_specification() -> None:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose (Debian package) is needed to validate the compose file"
    proc = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ["worker", "producer"])
def test_every_sentiment_variable_is_a_setting_the_code_reads(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: str(v) for k, v in services()[name]["environment"].items()}
    ours = {k: v for k, v in env.items() if k.startswith("SENTIMENT_")}
    assert ours
    for key in list(os.environ):
        if key.startswith("SENTIMENT_"):
            monkeypatch.delenv(key)
    for key, value in ours.items():
        monkeypatch.setenv(key, value)
    settings = Settings().model_dump()
    for key, value in ours.items():
        node: Any = settings
        for part in key.removeprefix("SENTIMENT_").lower().split("__"):
            assert part in node, f"{key} is not a setting"
            node = node[part]
        assert str(node) == value, f"{key}={value} was read as {node!r}"


def test_services_point_at_each_other() -> None:
    svc = services()
    worker_env = svc["worker"]["environment"]
    endpoint_port = svc["endpoint"]["environment"]["SAGEMAKER_BIND_TO_PORT"]
    url = urlparse(worker_env["SENTIMENT_ENDPOINT__URL"])
    assert (url.hostname, str(url.port)) == ("endpoint", endpoint_port)
    assert endpoint_port in svc["endpoint"]["expose"]
    advertised = svc["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert advertised == f"PLAINTEXT://{worker_env['SENTIMENT_KAFKA__BOOTSTRAP_SERVERS']}"
    assert (
        svc["producer"]["environment"]["SENTIMENT_KAFKA__BOOTSTRAP_SERVERS"]
        == (worker_env["SENTIMENT_KAFKA__BOOTSTRAP_SERVERS"])
    )
    assert worker_env["SENTIMENT_METRICS_PORT"] in svc["worker"]["expose"]
    # Workers must be scalable: no fixed container name, no published host port.
    assert "container_name" not in svc["worker"] and "ports" not in svc["worker"]


@pytest.mark.parametrize("name", ["endpoint", "worker", "producer"])
def test_service_commands_are_commands_of_the_cli(name: str) -> None:
    command = services()[name]["command"]
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
