"""The Grafana dashboards and the metric catalog against what really runs.

One stack for the module: a ``sentiment-monitor run`` of ``negative-surge`` scoring through the
local SageMaker-compatible endpoint server (paced, so it is still scoring while the queries
run), a Kafka worker (``sentiment-monitor worker``) on the session's broker fed by
``sentiment-monitor produce``, and a real Prometheus scraping both every second with the deploy
rules loaded. Then:

* every ``targets[].expr`` of both dashboards, with the Grafana variables substituted, returns
  data (at least one finite sample) through Prometheus's HTTP API;
* docs/metrics.md lists exactly the ``sentiment_*`` families the two processes expose, and
  every listed metric has samples unless its *appears* column says it needs a failure;
* the Kafka worker sends its alerts to the configured webhook, signed, without review texts;
* the provisioning files point Grafana at these dashboards and this data source.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers.endpoint import EndpointServer
from tests.servers.kafka import KafkaBroker
from tests.servers.ports import free_port
from tests.servers.prometheus import (
    DEPLOY,
    CliRun,
    PrometheusServer,
    WebhookReceiver,
    copy_rules,
    prometheus_config,
    scrape_families,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
METRICS_DOC = ROOT / "docs" / "metrics.md"
SECRET = "dashboard-test-secret"  # noqa: S105 - a test key
KAFKA_EVENTS = 8_000

#: values for the dashboards' variables (Grafana's own and the templating list)
VARIABLES = {
    "__rate_interval": "15s",
    "__interval": "5s",
    "__range": "10m",
    "category": "Dresses",
    "window": "1h",
    "method": "bbse",
    "label_source": "true",
    "instance": ".*",
}


@dataclass
class Stack:
    prometheus: PrometheusServer
    run: CliRun
    worker_port: int
    hooks: WebhookReceiver
    worker_log: Path


def _worker_env(
    broker: KafkaBroker, group: str, root: Path, port: int, hook: str
) -> dict[str, str]:
    return {
        **os.environ,
        "SENTIMENT_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
        "SENTIMENT_KAFKA__GROUP_ID": group,
        "SENTIMENT_KAFKA__PARTITIONS": "4",
        "SENTIMENT_KAFKA__REVIEWS_TOPIC": f"{group}.reviews",
        "SENTIMENT_KAFKA__ENRICHED_TOPIC": f"{group}.enriched",
        "SENTIMENT_KAFKA__DLQ_TOPIC": f"{group}.dlq",
        "SENTIMENT_KAFKA__ALERTS_TOPIC": f"{group}.alerts",
        "SENTIMENT_KAFKA__MONITOR_FEED_TOPIC": f"{group}.feed",
        "SENTIMENT_KAFKA__MONITOR_STATE_TOPIC": f"{group}.state",
        "SENTIMENT_LAKE_PATH": str(root / "lake"),
        "SENTIMENT_METRICS_PORT": str(port),
        "SENTIMENT_BATCH__MAX_EVENTS": "200",
        "SENTIMENT_ALERTS__WEBHOOK_URL": hook,
        "SENTIMENT_ALERTS__WEBHOOK_SECRET": SECRET,
    }


@pytest.fixture(scope="module")
def stack(kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("dashboards")
    group = f"dashboards-{os.getpid()}"
    worker_port = free_port()
    with contextlib.ExitStack() as stack:
        hooks = stack.enter_context(WebhookReceiver())
        endpoint = stack.enter_context(EndpointServer(workers=1))
        run = stack.enter_context(
            CliRun(
                root / "run",
                scenario="negative-surge",
                events=30_000,
                rate=500,
                linger_s=300,
                env={
                    "SENTIMENT_ENDPOINT__MODE": "sagemaker",
                    "SENTIMENT_ENDPOINT__URL": endpoint.url,
                    "AWS_ACCESS_KEY_ID": "local",
                    "AWS_SECRET_ACCESS_KEY": "local",
                    "AWS_DEFAULT_REGION": "us-east-1",
                },
            )
        )
        env = _worker_env(kafka_broker, group, root, worker_port, hooks.url + "/worker")
        worker_log = root / "worker.log"
        with worker_log.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "stream", "worker", "--loglevel", "warning"],
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        stack.callback(_stop, worker)

        def worker_up() -> bool:
            assert worker.poll() is None, worker_log.read_text()[-4000:]
            with contextlib.suppress(OSError):
                return bool(scrape_families(worker_port))
            return False

        # The worker creates its topics (4 partitions) before it serves /metrics.
        wait_until(worker_up, 120, "the Kafka worker's /metrics")
        command = [
            sys.executable, "-m", "stream", "produce", "--to", "kafka",
            "--scenario", "negative-surge", "--events", str(KAFKA_EVENTS),
            "--topic", f"{group}.reviews", "--no-progress",
        ]  # fmt: skip
        produce = subprocess.run(
            command,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert produce.returncode == 0, produce.stdout + produce.stderr
        prometheus = stack.enter_context(
            PrometheusServer(
                prometheus_config(
                    [run.target, f"127.0.0.1:{worker_port}"],
                    rule_files=copy_rules(root / "rules"),
                )
            )
        )
        yield Stack(prometheus, run, worker_port, hooks, worker_log)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in VARIABLES:
            raise AssertionError(f"unknown variable ${name} in {expr!r}")
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) of every target of every panel."""
    out = []
    for name, board in dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                out.append((name, panel["title"], substitute(target["expr"])))
    return out


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


def test_every_panel_query_returns_data(stack: Stack) -> None:
    # The review queue's panels: tests/integration/test_review_loop.py (needs Label Studio).
    pending = {
        expr: (board, title) for board, title, expr in queries() if REVIEW_METRIC not in expr
    }
    assert len(pending) >= 30

    def all_answered() -> bool:
        assert stack.run.running(), stack.run.log()
        for expr in list(pending):
            if has_data(stack.prometheus.query(expr)):
                del pending[expr]
        return not pending

    try:
        wait_until(all_answered, 180, "data for every panel", interval=2.0)
    except TimeoutError:
        missing = "\n".join(f"{b} / {t}: {e}" for e, (b, t) in pending.items())
        pytest.fail(f"no data for:\n{missing}\n{stack.run.log()}")


#: *appears* values of the review queue's metrics, checked by test_review_loop.py instead
REVIEW_ONLY = frozenset({"review", "labelled"})
#: the prefix of the review queue's metrics
REVIEW_METRIC = "sentiment_review_"


def documented() -> dict[str, str]:
    """docs/metrics.md: metric name -> its *appears* condition."""
    rows = re.findall(
        r"^\| `(sentiment_[a-z0-9_]+)` \|.*\| `([a-z-]+)` \|$", METRICS_DOC.read_text(), re.M
    )
    return dict(rows)


def exposed_name(family: Any) -> str:
    return f"{family.name}_total" if family.type == "counter" else str(family.name)


def test_metric_catalog_matches_what_the_processes_expose(stack: Stack) -> None:
    doc = documented()
    assert len(doc) >= 45

    def scraped() -> dict[str, Any]:
        families: dict[str, Any] = {}
        for port in (stack.run.port, stack.worker_port):
            for family in scrape_families(port).values():
                if family.name.startswith("sentiment_") and not family.name.endswith("_created"):
                    name = exposed_name(family)
                    if name in families:
                        families[name].samples.extend(family.samples)
                    else:
                        families[name] = family
        return families

    def complete() -> dict[str, Any]:
        families = scraped()
        with_samples = {n for n, f in families.items() if f.samples}
        needed = {n for n, when in doc.items() if when not in {"failure", *REVIEW_ONLY}}
        return families if needed <= with_samples else {}

    try:
        families = wait_until(complete, 180, "every documented metric exposed", interval=2.0)
    except TimeoutError:
        families = scraped()
        missing = sorted(n for n in doc if n not in families or not families[n].samples)
        pytest.fail(f"documented but not exposed (or without samples): {missing}")
    undocumented = sorted(set(families) - set(doc))
    assert not undocumented, f"exposed but not in docs/metrics.md: {undocumented}"
    # The review queue's metrics: tests/integration/test_review_loop.py (needs Label Studio).
    declared_only = sorted(n for n in doc if n not in families and doc[n] not in REVIEW_ONLY)
    assert not declared_only, f"documented but not even declared: {declared_only}"
    # the types agree with the catalog
    types = dict(
        re.findall(r"^\| `(sentiment_[a-z0-9_]+)` \| (\w+) \|", METRICS_DOC.read_text(), re.M)
    )
    for name, family in families.items():
        assert family.type == types[name], name


def test_kafka_worker_lag_is_reported_per_partition(stack: Stack) -> None:
    def partitions() -> set[str]:
        family = scrape_families(stack.worker_port).get("sentiment_consumer_lag_records")
        return {s.labels["partition"] for s in family.samples} if family else set()

    assert wait_until(lambda: partitions() == {"0", "1", "2", "3"}, 120, "lag of 4 partitions")
    # Once the worker has fetched everything, nothing is left behind.
    result = wait_until(
        lambda: stack.prometheus.query("sum(sentiment_consumer_lag_records) == 0"),
        120,
        "consumer lag back to 0",
    )
    assert result


def test_kafka_worker_sends_its_alerts_to_the_webhook(stack: Stack) -> None:
    def shift() -> list[dict[str, Any]]:
        return [
            r.json()
            for r in stack.hooks.received("/worker")
            if r.json()["labels"]["alertname"] == "SentimentShift"
        ]

    try:
        alerts = wait_until(shift, 180, "SentimentShift from the worker")
    except TimeoutError:
        log = stack.worker_log.read_text(errors="replace")[-6000:]
        pytest.fail(f"no SentimentShift from the worker at the webhook; worker log:\n{log}")
    assert {a["labels"]["category"] for a in alerts} >= {"Dresses"}
    for request in stack.hooks.received("/worker"):
        expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(expected, request.headers["x-sentiment-signature"])
        assert b"review_text" not in request.body


def test_dashboards_are_provisioned_from_files() -> None:
    boards = dashboards()
    assert set(boards) == {"business.json", "operations.json"}
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for board in boards.values():
        variables = {v["name"] for v in board["templating"]["list"]}
        assert "datasource" in variables
        ids = [p["id"] for p in panels(board)]
        assert len(set(ids)) == len(ids)
        for panel in panels(board):
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
                assert panel["targets"], panel["title"]
    [source] = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((PROVISIONING / "dashboards" / "sentiment.yml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    # docker-compose.yml mounts the dashboards where the provider reads them
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in compose["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    prometheus_mounts = [v for v in compose["prometheus"]["volumes"] if v.startswith("./")]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus_mounts
