"""Real Prometheus and Alertmanager (Debian's ``prometheus``, ``prometheus-alertmanager``) on
127.0.0.1, the ``sentiment-monitor run`` CLI as a scrape target, and a webhook receiver.

* :class:`PrometheusServer` / :class:`AlertmanagerServer` start the binaries on free ports with
  their data in a temp dir (``--web.enable-lifecycle``; Alertmanager without clustering), wait
  for ``/-/ready`` and stop them by PID. The configs are test copies of the deploy files:
  :func:`prometheus_config` points the deploy scrape job at local targets with short intervals,
  :func:`copy_rules` copies the rule files with every ``for`` shortened,
  :func:`alertmanager_config` sends each receiver's webhooks to a local URL.
* :class:`CliRun` runs ``python -m stream run ...`` in a subprocess with its /metrics on a free
  port, so it can be scraped while it replays and lingers.
* :class:`WebhookReceiver` is a small threaded HTTP server that records every POST (and can be
  told to answer with errors first).

When a binary is missing the server raises :class:`ServerUnavailableError`: the tests that need
it fail, they never skip (CI installs the packages, see ``.ci/run``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.servers.base import Managed, ServerProcess, http_status
from tests.servers.ports import free_port

__all__ = [
    "DEPLOY",
    "JOB",
    "AlertmanagerServer",
    "CliRun",
    "PrometheusServer",
    "Request",
    "ServerUnavailableError",
    "WebhookReceiver",
    "alertmanager_config",
    "copy_rules",
    "prometheus_config",
    "scrape_families",
    "wait_until",
]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: the scrape job of deploy/prometheus/prometheus.yml that the rules select
JOB = "sentiment-monitor"


class ServerUnavailableError(RuntimeError):
    """A binary the tests need is not installed, or did not start."""


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``check()`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


class _Server(ServerProcess):
    """A binary (:attr:`name`) on a free loopback port, with a temp dir, stopped by PID."""

    package = ""
    storage_flag = ""
    extra_flags: tuple[str, ...] = ()
    start_error = ServerUnavailableError
    stop_group = False

    def __init__(self, config: Mapping[str, Any], *, start_timeout_s: float = 60.0) -> None:
        found = shutil.which(self.name)
        if found is None:
            raise ServerUnavailableError(
                f"{self.name} is not installed: apt-get install -y --no-install-recommends "
                f"{self.package}"
            )
        super().__init__(prefix=f"{self.name}-")
        self._binary = found
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_file = self.workdir / "config.yml"
        self.config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        self._timeout = start_timeout_s

    def args(self) -> list[str]:
        return [
            f"--config.file={self.config_file}",
            f"{self.storage_flag}={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.extra_flags,
            "--log.level=warn",
        ]

    def start(self) -> Self:
        self._spawn([self._binary, *self.args()], new_session=False)
        ready = self.url + "/-/ready"
        self._await(lambda: http_status(ready) == 200, self._timeout, interval=0.25, what="ready")
        return self

    def get_json(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return json.loads(_get(f"{self.url}{path}{query}"))


class PrometheusServer(_Server):
    name = "prometheus"
    package = "prometheus"
    storage_flag = "--storage.tsdb.path"
    extra_flags = ("--web.enable-lifecycle",)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Result of an instant query (vector or scalar results as a list of samples)."""
        doc = self.get_json("/api/v1/query", query=expr)
        if doc.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {doc}")
        data = doc["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Prometheus holds (pending and firing)."""
        result: list[dict[str, Any]] = self.get_json("/api/v1/alerts")["data"]["alerts"]
        return result

    def targets_up(self) -> int:
        active = self.get_json("/api/v1/targets")["data"]["activeTargets"]
        return sum(1 for t in active if t["health"] == "up")


class AlertmanagerServer(_Server):
    name = "prometheus-alertmanager"
    package = "prometheus-alertmanager"
    storage_flag = "--storage.path"
    extra_flags = ("--cluster.listen-address=",)


def prometheus_config(
    targets: Iterable[str],
    *,
    rule_files: Sequence[Path] = (),
    alertmanager: str | None = None,
    interval: str = "1s",
) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the sentiment job scraping ``targets`` (host:port)
    every ``interval``, rules evaluated as often, and alerts sent to ``alertmanager``."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    if len(jobs) != 1:
        raise AssertionError(f"deploy/prometheus/prometheus.yml has no single {JOB!r} job")
    job = {k: v for k, v in jobs[0].items() if not k.endswith("_sd_configs")}
    job["static_configs"] = [{"targets": list(targets)}]
    job["scrape_interval"] = interval
    config["scrape_configs"] = [job]
    config["global"] = {**config.get("global", {}), "scrape_interval": interval}
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(p) for p in rule_files]
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def copy_rules(dest: Path, *, for_: str = "1s") -> list[Path]:
    """The deploy rule files, copied to ``dest`` with every ``for`` set to ``for_`` (the
    promtool tests check the real durations; a live test cannot wait for them)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        doc = yaml.safe_load(src.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = for_
        path = dest / src.name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(path)
    return out


def alertmanager_config(
    urls: Mapping[str, str], *, group_wait: str = "1s", group_interval: str = "2s"
) -> dict[str, Any]:
    """deploy/alertmanager/alertmanager.yml with receiver ``name``'s webhooks sent to
    ``urls[name]`` and short grouping delays. Every receiver must be given a URL."""
    config: dict[str, Any] = yaml.safe_load(
        (DEPLOY / "alertmanager" / "alertmanager.yml").read_text()
    )
    names = {r["name"] for r in config["receivers"]}
    if names != set(urls):
        raise AssertionError(f"receivers are {sorted(names)}, URLs given for {sorted(urls)}")
    for receiver in config["receivers"]:
        hooks = receiver.get("webhook_configs")
        if not hooks:
            raise AssertionError(f"receiver {receiver['name']} has no webhook")
        for hook in hooks:
            hook["url"] = urls[receiver["name"]]

    def shorten(route: dict[str, Any]) -> None:
        for key, value in (("group_wait", group_wait), ("group_interval", group_interval)):
            if key in route or route is config["route"]:
                route[key] = value
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    return config


def scrape_families(port: int) -> dict[str, Any]:
    """The metric families of http://127.0.0.1:port/metrics by name (as the parser names
    them: counters without ``_total``)."""
    text = _get(f"http://127.0.0.1:{port}/metrics").decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


# -- the CLI as a scrape target ---------------------------------------------------------------


class CliRun(ServerProcess):
    """``python -m stream run --scenario ... --metrics-port P`` in a subprocess."""

    name = "the run"
    log_name = "run.log"
    stop_timeout = 30.0
    stop_group = False

    def __init__(
        self,
        workdir: Path,
        *,
        scenario: str,
        events: int,
        rate: float | None = None,
        linger_s: float = 120.0,
        seed: int = 7,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir)
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.alerts_path = workdir / "alerts.jsonl"
        self.cmd = [
            sys.executable, "-m", "stream", "run",
            "--scenario", scenario, "--events", str(events), "--seed", str(seed),
            "--lake", str(workdir / "lake"), "--alerts", str(self.alerts_path),
            "--metrics-port", str(self.port), "--no-progress", "--linger", str(linger_s),
        ]  # fmt: skip
        if rate is not None:
            self.cmd += ["--rate", str(rate)]
        self.env = {**os.environ, "COLUMNS": "200", **(env or {})}

    def start(self) -> Self:
        """Start the run; it serves /metrics soon after (see :meth:`families`)."""
        self._spawn(self.cmd, env=self.env, new_session=False)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def families(self) -> dict[str, Any]:
        """The current /metrics, by family name ({} while it does not answer yet)."""
        if not self.running():
            raise AssertionError(f"the run exited early:\n{self.log()}")
        try:
            return scrape_families(self.port)
        except OSError:
            return {}

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        total = 0.0
        for family in self.families().values():
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def in_app_alerts(self) -> list[dict[str, Any]]:
        if not self.alerts_path.exists():
            return []
        lines = self.alerts_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


# -- a webhook receiver -----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  #: lower-case names
    body: bytes
    status: int  #: what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver(Managed):
    """A threaded HTTP server on 127.0.0.1 that records every POST. ``fail_first`` answers the
    first N POSTs with ``fail_status`` (and ``Retry-After: 0``) before it accepts them;
    :meth:`received` lists the accepted ones, :attr:`requests` every attempt."""

    fail_first: int = 0
    fail_status: int = 503
    requests: list[Request] = field(default_factory=list)
    attempts: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.attempts += 1
                    fail = receiver.attempts <= receiver.fail_first
                    status = receiver.fail_status if fail else 200
                    receiver.requests.append(Request(self.path, headers, body, status))
                self.send_response(status)
                if fail:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def received(self, path: str | None = None) -> list[Request]:
        """The accepted POSTs (to ``path``, if given)."""
        with self._lock:
            return [
                r for r in self.requests if r.status == 200 and (path is None or r.path == path)
            ]
