"""The alert rules, the Prometheus config and the Alertmanager config, checked by the real
tools: ``promtool check rules`` / ``check config`` / ``test rules`` and ``amtool``.

The tools are part of the test setup (Debian's ``prometheus`` and ``prometheus-alertmanager``,
installed by ``.ci/run``): when they are missing these tests fail, they never skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sinks.alert_format import alert_labels
from stream.events import Alert, Severity

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"

_T = datetime(2026, 1, 1, tzinfo=UTC)

#: the in-app alert names (monitors/suite.py); each has a business rule of the same name
IN_APP_ALERTS = {
    "SentimentShift",
    "PriorShift",
    "LabelDrift",
    "AccuracyDrop",
    "EstimatedAccuracyDrop",
    "DataDrift",
    "PredictionDrift",
}


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, (
        f"{name} is needed for these tests: apt-get install -y --no-install-recommends "
        "prometheus prometheus-alertmanager"
    )
    return found


def run(*args: str) -> str:
    """The tool's standard output; fails with both outputs when it exits non-zero."""
    proc = subprocess.run(
        list(args), capture_output=True, text=True, cwd=ROOT, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [{**r, "file": path.name} for r in group["rules"]]
    return out


def test_there_are_business_and_operations_rules_with_tests() -> None:
    assert {p.name for p in RULE_FILES} == {"business.yml", "operations.yml"}
    assert RULE_TESTS


def test_rule_files_pass_promtool_check_and_lint() -> None:
    output = run(
        tool("promtool"), "check", "rules", "--lint=all", "--lint-fatal", *map(str, RULE_FILES)
    )
    assert output.count("SUCCESS") == len(RULE_FILES)


def test_rule_unit_tests_pass() -> None:
    output = run(tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert "FAILED" not in output


def test_prometheus_config_is_valid() -> None:
    run(tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))


def test_every_rule_has_team_severity_and_annotations() -> None:
    for rule in rules():
        labels, annotations = rule["labels"], rule["annotations"]
        assert labels["team"] in {"business", "operations"}, rule["alert"]
        assert labels["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(annotations), rule["alert"]
        expected_team = "business" if rule["file"] == "business.yml" else "operations"
        assert labels["team"] == expected_team, rule["alert"]


def test_business_rules_mirror_the_in_app_alerts() -> None:
    business = {r["alert"]: r for r in rules() if r["labels"]["team"] == "business"}
    assert set(business) == IN_APP_ALERTS
    for name, rule in business.items():
        # same identity as the in-app alert: alertname + category (and team, severity)
        in_app = Alert(
            alert_id="x",
            name=name,
            status="firing",
            severity=Severity(rule["labels"]["severity"]),
            category="Dresses",
            summary="",
            window_start=_T,
            window_end=_T,
            raised_at=_T,
        )
        labels = alert_labels(in_app)
        assert rule["labels"]["category"] == "{{ $labels.product_category }}"
        assert labels["team"] == rule["labels"]["team"]
        assert labels["severity"] == rule["labels"]["severity"], name


def test_every_rule_fires_in_a_unit_test() -> None:
    fired: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    assert {r["alert"] for r in rules()} == fired


def test_rules_use_only_documented_metrics() -> None:
    documented = set(re.findall(r"^\| `(sentiment_[a-z0-9_]+)`", METRICS_DOC.read_text(), re.M))
    for rule in rules():
        for name in re.findall(r"\bsentiment_[a-z0-9_]+", rule["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in documented or base in documented, f"{rule['alert']}: {name}"


def test_alertmanager_config_is_valid() -> None:
    run(tool("amtool"), "check-config", str(ALERTMANAGER))


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["team=business", "alertname=SentimentShift", "category=Dresses"], "business"),
        (["team=business", "alertname=PriorShift", "category=all"], "business"),
        (["team=operations", "alertname=SentimentEndpointDown"], "operations"),
        (["alertname=Watchdog"], "operations"),
    ],
)
def test_alertmanager_routes_each_team_to_its_receiver(labels: list[str], receiver: str) -> None:
    output = run(
        tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels
    )
    assert output.split()[-1] == receiver, output


def test_alertmanager_receivers_are_webhooks_for_both_teams() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    assert set(receivers) == {"business", "operations"}
    for receiver in receivers.values():
        assert receiver["webhook_configs"][0]["url"].startswith("http")
