"""Alerts end to end: real Prometheus and Alertmanager, real pipelines, real webhook receivers.

Two ``sentiment-monitor run`` processes are the scrape targets: one replays ``negative-surge``
(scored in process), the other a slow ``steady`` stream scored through the local SageMaker-
compatible endpoint server. Prometheus (test copy of deploy/prometheus/prometheus.yml: 1 s
scrape and evaluation intervals, the deploy rules with ``for`` shortened to 1 s) sends its
alerts to Alertmanager (test copy of deploy/alertmanager/alertmanager.yml: the same routes, the
receivers' webhooks pointed at a local HTTP server). The test stops the endpoint once the second
run has scored through it, and checks that the business receiver gets SentimentShift for
Dresses and the operations receiver gets SentimentEndpointDown, each only its own team's alerts.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from tests.servers.endpoint import EndpointServer
from tests.servers.prometheus import (
    AlertmanagerServer,
    CliRun,
    PrometheusServer,
    WebhookReceiver,
    alertmanager_config,
    copy_rules,
    prometheus_config,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENDPOINT_ENV = {
    "SENTIMENT_ENDPOINT__MODE": "sagemaker",
    "SENTIMENT_ENDPOINT__TIMEOUT_S": "2",
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def notified(
    hooks: WebhookReceiver, path: str, alertname: str, **labels: str
) -> list[dict[str, Any]]:
    """Firing alerts called ``alertname`` (with ``labels``) that Alertmanager posted to
    ``path``."""
    out = []
    for request in hooks.received(path):
        for alert in request.json()["alerts"]:
            got = alert["labels"]
            if (
                alert["status"] == "firing"
                and got.get("alertname") == alertname
                and all(got.get(k) == v for k, v in labels.items())
            ):
                out.append(alert)
    return out


def test_business_and_operations_alerts_reach_their_receivers(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        hooks = stack.enter_context(WebhookReceiver())
        endpoint = stack.enter_context(EndpointServer(workers=1))
        surge = stack.enter_context(
            CliRun(
                tmp_path / "surge",
                scenario="negative-surge",
                events=10_000,
                rate=2_000,
                linger_s=240,
            )
        )
        scored = stack.enter_context(
            CliRun(
                tmp_path / "endpoint",
                scenario="steady",
                events=100_000,
                rate=100,
                linger_s=240,
                env={**ENDPOINT_ENV, "SENTIMENT_ENDPOINT__URL": endpoint.url},
            )
        )
        urls = {team: f"{hooks.url}/{team}" for team in ("business", "operations")}
        alertmanager = stack.enter_context(AlertmanagerServer(alertmanager_config(urls)))
        prometheus = stack.enter_context(
            PrometheusServer(
                prometheus_config(
                    [surge.target, scored.target],
                    rule_files=copy_rules(tmp_path / "rules"),
                    alertmanager=f"127.0.0.1:{alertmanager.port}",
                )
            )
        )

        # The second run scores through the endpoint; then the endpoint goes away.
        wait_until(
            lambda: scored.value("sentiment_reviews_scored_total") > 0,
            120,
            "reviews scored through the endpoint",
        )
        assert scored.value("sentiment_endpoint_errors_total") == 0
        endpoint.stop()

        shift = wait_until(
            lambda: notified(hooks, "/business", "SentimentShift", category="Dresses"),
            120,
            f"SentimentShift [Dresses] at the business receiver\n{surge.log()}",
        )
        down = wait_until(
            lambda: notified(hooks, "/operations", "SentimentEndpointDown"),
            120,
            f"SentimentEndpointDown at the operations receiver\n{scored.log()}",
        )

        # What the receivers got: the rule's identity, team, severity and annotations.
        assert shift[0]["labels"]["team"] == "business"
        assert shift[0]["labels"]["severity"] == "critical"
        assert "Dresses" in shift[0]["annotations"]["summary"]
        assert shift[0]["annotations"]["runbook"]
        assert down[0]["labels"]["team"] == "operations"
        assert down[0]["labels"]["instance"] == scored.target
        assert scored.value("sentiment_endpoint_errors_total") > 0

        # Routing: each receiver got its own team's alerts only.
        for path, team in (("/business", "business"), ("/operations", "operations")):
            requests = hooks.received(path)
            assert requests
            for request in requests:
                doc = request.json()
                assert doc["receiver"] == team
                assert {a["labels"]["team"] for a in doc["alerts"]} == {team}

        # The in-app alert of the same identity (alertname + category) is in the alert log.
        in_app = [
            a
            for a in surge.in_app_alerts()
            if (a["name"], a["category"], a["status"]) == ("SentimentShift", "Dresses", "firing")
        ]
        assert len(in_app) == 1
        # Prometheus holds the firing alert with the same identity.
        firing = [
            a
            for a in prometheus.alerts()
            if a["state"] == "firing" and a["labels"]["alertname"] == "SentimentShift"
        ]
        assert {a["labels"]["category"] for a in firing} >= {"Dresses"}
