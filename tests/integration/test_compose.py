"""docker-compose.yml: valid against the Compose Specification (Debian's docker-compose
validates it; no Docker engine runs here), its settings are what the code reads, and it is
safe to run: host ports on 127.0.0.1 only, no Prometheus lifecycle API, no anonymous or
default-password Grafana, secrets from files, the lake on an S3 server with SSE-S3 (the
workers' lake settings and generated keys checked against a real SeaweedFS)."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from stream.app import run_pipeline
from stream.cli import app
from stream.lake_factory import build_lake_sink
from stream.settings import Settings
from stream.sources import ReplaySource
from stream.synthetic import generate
from tests.servers.seaweedfs import SeaweedFS
from tests.settings_checks import assert_read_as_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SECRETS_SCRIPT = ROOT / "deploy" / "compose-secrets.sh"
LAKE_WORKERS = ("worker", "kinesis-worker")


def document() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def services() -> dict[str, Any]:
    result: dict[str, Any] = document()["services"]
    return result


def environment(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in services()[name].get("environment", {}).items()}


def sentiment_env(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The service's SENTIMENT_ variables, set in this process (and no others)."""
    ours = {k: v for k, v in environment(name).items() if k.startswith("SENTIMENT_")}
    for key in list(os.environ):
        if key.startswith("SENTIMENT_"):
            monkeypatch.delenv(key)
    for key, value in ours.items():
        monkeypatch.setenv(key, value)
    return ours


def make_secrets(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SECRETS_SCRIPT), str(directory)],
        capture_output=True,
        text=True,
        check=True,
    )


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
    ours = sentiment_env(name, monkeypatch)
    assert ours
    assert_read_as_settings(ours)


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


# -- safe to run ----------------------------------------------------------------------------


def published(service: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(host address or None for every interface, host port) of each published port."""
    out: list[tuple[str | None, str]] = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip"), str(port.get("published"))))
            continue
        parts = str(port).split(":")
        if len(parts) == 3:
            out.append((parts[0], parts[1]))
        else:
            out.append((None, parts[0]))
    return out


def test_every_published_port_is_bound_to_the_loopback_interface() -> None:
    ports = {name: published(svc) for name, svc in services().items()}
    assert {name for name, p in ports.items() if p} >= {"prometheus", "alertmanager", "grafana"}
    for name, bindings in ports.items():
        for host, port in bindings:
            assert host == "127.0.0.1", f"{name} publishes {port} on every interface"


def test_prometheus_runs_without_the_lifecycle_api() -> None:
    command = services()["prometheus"]["command"]
    assert not any("enable-lifecycle" in str(arg) for arg in command)
    assert not any("enable-admin-api" in str(arg) for arg in command)


def secret_files(name: str) -> dict[str, Path]:
    """The secrets a service mounts: /run/secrets/<name> -> the file in the repository."""
    declared = document()["secrets"]
    mounted = services()[name].get("secrets", [])
    out = {}
    for entry in mounted:
        secret = entry if isinstance(entry, str) else entry["source"]
        out[f"/run/secrets/{secret}"] = (ROOT / declared[secret]["file"]).resolve()
    return out


def test_grafana_has_no_anonymous_access_and_no_default_password() -> None:
    env = environment("grafana")
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED", "false") == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env  # never a literal in the file
    files = secret_files("grafana")
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] in files
    assert files[env["GF_SECURITY_ADMIN_PASSWORD__FILE"]].parent == ROOT / "deploy" / "secrets"
    gitignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "/deploy/secrets/" in gitignore


def test_no_credentials_are_written_in_the_compose_file() -> None:
    for name in LAKE_WORKERS:
        env = environment(name)
        assert "AWS_SECRET_ACCESS_KEY" not in env and "AWS_ACCESS_KEY_ID" not in env
        assert env["AWS_SHARED_CREDENTIALS_FILE"] in secret_files(name)


def test_the_lake_is_on_the_s3_server_with_sse_s3() -> None:
    svc = services()
    s3 = svc["s3"]
    assert s3["image"].startswith("chrislusf/seaweedfs:")
    config = next(a.split("=", 1)[1] for a in s3["command"] if a.startswith("-s3.config="))
    assert config in secret_files("s3")
    port = next(a.split("=", 1)[1] for a in s3["command"] if a.startswith("-s3.port="))
    assert port in s3["expose"]
    for name in LAKE_WORKERS:
        env = environment(name)
        assert env["SENTIMENT_LAKE_PATH"].startswith("s3://")
        url = urlparse(env["SENTIMENT_LAKE__S3_ENDPOINT_URL"])
        assert (url.hostname, str(url.port)) == ("s3", port)
        assert env.get("SENTIMENT_LAKE__SSE", "AES256") == "AES256"
        assert svc[name]["depends_on"]["s3"]["condition"] == "service_healthy"
        mounts = [str(v) for v in svc[name].get("volumes", [])]
        assert not any(m.startswith("lake:") for m in mounts), "the lake is a local volume"


def test_the_secrets_script_writes_matching_keys_once(tmp_path: Path) -> None:
    out = tmp_path / "secrets"
    make_secrets(out)
    first = {p.name: p.read_text() for p in out.iterdir()}
    assert set(first) == {
        "grafana-admin-password",
        "s3.json",
        "aws-credentials",
        "label-studio-password",
        "label-studio-token",
    }
    assert len(first["grafana-admin-password"].strip()) >= 24
    assert len(first["label-studio-password"].strip()) >= 24
    assert re.fullmatch(r"[0-9a-f]{40}", first["label-studio-token"])
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    [identity] = json.loads(first["s3.json"])["identities"]
    [keys] = identity["credentials"]
    ini = configparser.ConfigParser()
    ini.read_string(first["aws-credentials"])
    assert ini["default"]["aws_access_key_id"] == keys["accessKey"]
    assert ini["default"]["aws_secret_access_key"] == keys["secretKey"]
    make_secrets(out)  # a second run keeps what is there
    assert {p.name: p.read_text() for p in out.iterdir()} == first
    other = tmp_path / "other"
    make_secrets(other)
    assert (other / "s3.json").read_text() != first["s3.json"]


async def test_the_workers_lake_settings_write_encrypted_objects_to_seaweedfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's own lake settings and the generated keys, against SeaweedFS (the compose
    image's server) on 127.0.0.1 instead of http://s3:8333."""
    secrets = tmp_path / "secrets"
    make_secrets(secrets)
    [identity] = json.loads((secrets / "s3.json").read_text())["identities"]
    [keys] = identity["credentials"]
    server = SeaweedFS()
    server.access_key, server.secret_key = keys["accessKey"], keys["secretKey"]
    sentiment_env("worker", monkeypatch)
    monkeypatch.setenv("SENTIMENT_LAKE__S3_ENDPOINT_URL", server.endpoint_url)
    # Scored here (the compose endpoint is not running): only the lake settings are the test.
    monkeypatch.setenv("SENTIMENT_ENDPOINT__MODE", "inprocess")
    monkeypatch.delenv("SENTIMENT_ENDPOINT__URL")
    # Nor is Label Studio (the review loop has its own tests).
    monkeypatch.setenv("SENTIMENT_REVIEW__ENABLED", "false")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(secrets / "aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = Settings().model_copy(
        update={"alerts_path": tmp_path / "alerts.jsonl", "metrics_port": 0}
    )
    bucket, prefix = settings.lake_path.removeprefix("s3://").split("/", 1)
    records = [(r.key, r.value) for r in generate("steady", events=300, seed=3)]
    server.start()
    try:
        pipeline = await run_pipeline(
            settings,
            ReplaySource(records),
            [build_lake_sink(settings)],
            source_name="replay",
            serve_metrics=False,
        )
        assert pipeline.summary.scored > 0
        client = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=keys["accessKey"],
            aws_secret_access_key=keys["secretKey"],
        )
        listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
        objects = [o["Key"] for o in listed.get("Contents", [])]
        assert any("/reviews/" in k for k in objects), objects
        for key in objects:
            head = client.head_object(Bucket=bucket, Key=key)
            assert head.get("ServerSideEncryption") == "AES256", key
    finally:
        server.close()
