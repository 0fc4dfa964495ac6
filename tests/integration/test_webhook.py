"""The in-app alert notifiers against real receivers: a local HTTP server for the webhook
(signature, review texts and terms withheld unless allowed, retries, final failures, URLs
redacted in logs), the ``run`` command with a webhook configured, and SNS on ``moto_server``
(delivered to an SQS queue subscribed to the topic)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sinks.alert_format import SIGNATURE_HEADER, strip_private
from sinks.sns import SnsAlertSink
from sinks.webhook import WebhookAlertSink, build_notifiers
from stream.events import Alert, Severity
from stream.settings import AlertSettings
from stream.synthetic import generate
from tests.servers.moto import MotoServer
from tests.servers.ports import free_port
from tests.servers.prometheus import WebhookReceiver

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-tests"  # noqa: S105 - a test key
REVIEW_TEXT = "The seams came apart after one wash and the fabric is itchy"
T0 = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def alert(**changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "alert_id": "SentimentShift-Dresses-20260102T1200",
        "name": "SentimentShift",
        "status": "firing",
        "severity": Severity.CRITICAL,
        "category": "Dresses",
        "summary": "Negative share of Dresses rose to 61.7%",
        "window_start": T0,
        "window_end": T0,
        "raised_at": T0,
        "evidence": {
            "current_share": 0.617,
            "example_review_ids": ["r-1", "r-2"],
            "terms": [{"term": "itchy", "z": 4.2}],
            "examples": [{"review_id": "r-1", "review_text": REVIEW_TEXT}],
            "text": REVIEW_TEXT,
            "negative_texts": [REVIEW_TEXT],
        },
    }
    fields.update(changes)
    return Alert(**fields)


def signature_ok(body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


async def test_signed_alert_reaches_the_receiver_without_review_words() -> None:
    with WebhookReceiver() as receiver:
        async with WebhookAlertSink(receiver.url + "/hook", secret=SECRET) as sink:
            await sink.emit([alert()])
        [request] = receiver.received("/hook")
    assert signature_ok(request.body, request.headers[SIGNATURE_HEADER.lower()])
    assert request.headers["content-type"] == "application/json"
    doc = request.json()
    # the identity of the Prometheus rule, plus the episode's alert_id
    assert doc["labels"] == {
        "alertname": "SentimentShift",
        "category": "Dresses",
        "severity": "critical",
        "team": "business",
    }
    assert doc["alert_id"] == request.headers["x-sentiment-alert-id"] == alert().alert_id
    assert doc["status"] == "firing"
    # no review text and no evidence term (words from reviews) anywhere; ids stay
    assert REVIEW_TEXT.encode() not in request.body
    assert b"review_text" not in request.body
    assert b"itchy" not in request.body
    assert doc["evidence"]["example_review_ids"] == ["r-1", "r-2"]
    assert "terms" not in doc["evidence"]
    assert doc["evidence"]["examples"] == [{"review_id": "r-1"}]
    assert "text" not in doc["evidence"] and "negative_texts" not in doc["evidence"]
    assert sink.delivered == 1 and sink.failed == 0


async def test_a_receiver_configured_for_texts_gets_them() -> None:
    with WebhookReceiver() as receiver:
        async with WebhookAlertSink(receiver.url, secret=SECRET, include_text=True) as sink:
            await sink.emit([alert()])
        [request] = receiver.received()
    assert signature_ok(request.body, request.headers[SIGNATURE_HEADER.lower()])
    evidence = request.json()["evidence"]
    assert evidence["examples"][0]["review_text"] == REVIEW_TEXT
    assert evidence["text"] == REVIEW_TEXT
    assert evidence["terms"] == [{"term": "itchy", "z": 4.2}]


async def test_tampered_body_fails_the_signature() -> None:
    with WebhookReceiver() as receiver:
        async with WebhookAlertSink(receiver.url, secret=SECRET) as sink:
            await sink.emit([alert()])
        [request] = receiver.received()
    tampered = request.body.replace(b"Dresses", b"Knits")
    assert not signature_ok(tampered, request.headers[SIGNATURE_HEADER.lower()])


async def test_failed_attempts_are_retried_with_growing_backoff() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    with WebhookReceiver(fail_first=3, fail_status=503) as receiver:
        async with WebhookAlertSink(
            receiver.url, secret=SECRET, backoff_s=0.5, sleep=sleep, rng=lambda: 1.0
        ) as sink:
            await sink.emit([alert(), alert(alert_id="second", category="Knits")])
        attempts = receiver.requests
    assert [r.status for r in attempts] == [503, 503, 503, 200, 200]
    assert waits == [0.5, 1.0, 2.0]
    # one notification: the same delivery id and signed body on every attempt
    first = attempts[:4]
    assert len({r.headers["x-sentiment-delivery"] for r in first}) == 1
    assert len({r.body for r in first}) == 1
    assert [r.json()["alert_id"] for r in attempts[3:]] == [alert().alert_id, "second"]
    assert (sink.delivered, sink.failed, sink.attempts) == (2, 0, 5)


async def test_a_final_status_is_not_retried() -> None:
    with WebhookReceiver(fail_first=10, fail_status=400) as receiver:
        async with WebhookAlertSink(receiver.url, backoff_s=0.0) as sink:
            await sink.emit([alert()])
        assert receiver.attempts == 1
    assert (sink.delivered, sink.failed, sink.attempts) == (0, 1, 1)


async def test_an_unreachable_receiver_never_holds_the_stream() -> None:
    sink = WebhookAlertSink(f"http://127.0.0.1:{free_port()}/", max_attempts=3, backoff_s=0.0)
    await sink.emit([alert()])
    # emit only queued the alert: delivery runs in the background
    assert sink.attempts == 0
    await sink.close()
    assert (sink.delivered, sink.failed, sink.attempts) == (0, 1, 3)
    await sink.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await sink.emit([alert()])


def test_strip_private_removes_text_and_term_fields_at_any_depth() -> None:
    doc = {
        "summary": "kept",
        "review_text": "x",
        "a": [{"text": "x", "id": 1}, {"b": {"texts": ["x"], "c_text": "x", "context": "kept"}}],
        "terms": [{"term": "x", "z": 1.0}],
        "evidence": {"top_terms": ["x"], "term": "x", "terminal": "kept", "determs": "kept"},
    }
    assert strip_private(doc) == {
        "summary": "kept",
        "a": [{"id": 1}, {"b": {"context": "kept"}}],
        "evidence": {"terminal": "kept", "determs": "kept"},
    }


async def test_logs_name_the_receiver_without_credentials_or_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, password, token = "hookuser", "hunter2-pass", "T0KEN-abc123"
    with WebhookReceiver(fail_first=10, fail_status=503) as receiver:
        host = receiver.url.removeprefix("http://")
        url = f"http://{user}:{password}@{host}/services/{token}?key={token}"
        with caplog.at_level(logging.DEBUG):
            async with WebhookAlertSink(url, max_attempts=3, backoff_s=0.0) as sink:
                await sink.emit([alert()])
                assert token not in repr(sink) and password not in repr(sink)
        assert receiver.attempts == 3
        # the receiver was really called at the full URL, with the credentials
        assert receiver.requests[0].path == f"/services/{token}?key={token}"
        assert receiver.requests[0].headers["authorization"].startswith("Basic ")
    # an unreachable receiver fails with a connection error: its message is redacted too
    unreachable = f"http://{user}:{password}@127.0.0.1:{free_port()}/services/{token}"
    with caplog.at_level(logging.DEBUG):
        async with WebhookAlertSink(unreachable, max_attempts=2, backoff_s=0.0) as other:
            await other.emit([alert()])
    assert (sink.failed, other.failed) == (1, 1)
    logged = [r.getMessage() for r in caplog.records]
    retries = [m for m in logged if "retry" in m]
    failures = [m for m in logged if "not delivered after" in m]
    assert len(retries) == 3 and len(failures) == 2
    assert any(f"http://{host}" in m for m in retries)
    for message in logged:
        for secret in (user, password, token, "/services"):
            assert secret not in message, message
    for record in caplog.records:
        assert record.exc_info is None  # no traceback whose messages could hold the URL


def test_notifiers_come_from_the_settings() -> None:
    assert build_notifiers(AlertSettings()) == []
    settings = AlertSettings.model_validate(
        {"webhook_url": "http://127.0.0.1:1/hook", "webhook_secret": SECRET}
    )
    [hook] = build_notifiers(settings)
    assert isinstance(hook, WebhookAlertSink)
    assert SECRET not in repr(hook) and SECRET not in repr(settings)
    assert not hook.include_text


@pytest.mark.slow
def test_run_command_posts_its_alerts_to_the_webhook(tmp_path: Path) -> None:
    events, seed = 8_000, 7
    with WebhookReceiver() as receiver:
        env = {
            **os.environ,
            "SENTIMENT_ALERTS__WEBHOOK_URL": receiver.url + "/alerts",
            "SENTIMENT_ALERTS__WEBHOOK_SECRET": SECRET,
        }
        cmd = [
            sys.executable, "-m", "stream", "run", "--scenario", "negative-surge",
            "--events", str(events), "--seed", str(seed), "--lake", str(tmp_path / "lake"),
            "--alerts", str(tmp_path / "alerts.jsonl"), "--metrics-port", "0", "--no-progress",
        ]  # fmt: skip
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        requests = receiver.received("/alerts")
    logged = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert logged
    # every alert of the log was posted once, signed, with the same alert_id
    posted = [r.json() for r in requests]
    assert [(p["alert_id"], p["status"]) for p in posted] == [
        (a["alert_id"], a["status"]) for a in logged
    ]
    assert all(signature_ok(r.body, r.headers[SIGNATURE_HEADER.lower()]) for r in requests)
    shift = [p for p in posted if p["labels"]["alertname"] == "SentimentShift"]
    assert {p["labels"]["category"] for p in shift} >= {"Dresses"}
    assert shift[0]["evidence"]["example_review_ids"]
    # and never a review text
    records = generate("negative-surge", events=events, seed=seed)
    texts = [r.event.review_text for r in records if r.event is not None]
    bodies = b"\n".join(r.body for r in requests).decode()
    assert not any(t in bodies for t in texts if t)


async def test_sns_publishes_the_alert_with_its_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    with MotoServer() as moto:
        session = moto.session()
        sns = session.client("sns", endpoint_url=moto.endpoint_url)
        sqs = session.client("sqs", endpoint_url=moto.endpoint_url)
        topic = sns.create_topic(Name="sentiment-alerts")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.secret_key)
        async with SnsAlertSink(topic, endpoint_url=moto.endpoint_url) as sink:
            await sink.emit([alert()])
        assert (sink.delivered, sink.failed) == (1, 0)

        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5).get("Messages", [])
        [message] = messages
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        # a topic configured for texts gets the texts and the evidence terms
        async with SnsAlertSink(topic, endpoint_url=moto.endpoint_url, include_text=True) as full:
            await full.emit([alert()])
        assert (full.delivered, full.failed) == (1, 0)
        [with_text] = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
    envelope = json.loads(message["Body"])
    assert REVIEW_TEXT not in envelope["Message"]
    assert "itchy" not in envelope["Message"]
    evidence = json.loads(json.loads(with_text["Body"])["Message"])["evidence"]
    assert evidence["terms"] == [{"term": "itchy", "z": 4.2}]
    assert evidence["text"] == REVIEW_TEXT
    doc = json.loads(envelope["Message"])
    assert doc["labels"]["alertname"] == "SentimentShift"
    assert doc["evidence"]["example_review_ids"] == ["r-1", "r-2"]
    attributes = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
    assert attributes == {
        "alertname": "SentimentShift",
        "category": "Dresses",
        "severity": "critical",
        "team": "business",
        "alert_id": alert().alert_id,
        "status": "firing",
    }
