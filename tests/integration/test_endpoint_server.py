"""The local SageMaker-compatible endpoint as a real server (subprocess, free port): boto3's
``sagemaker-runtime`` client on the runtime route, the container contract, the service's
error statuses and shapes, worker processes and shutdown."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from botocore.exceptions import ClientError

from endpoint.inference import default_model_dir
from endpoint.model import SentimentModel
from endpoint.server import MAX_BODY_BYTES, ServerConfig, create_app
from stream.endpoint_client import EndpointScorer
from stream.errors import ConfigurationError
from stream.settings import EndpointSettings
from stream.synthetic import generate
from tests.servers.endpoint import EndpointServer, children_of, http_status
from tests.servers.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data" / "reviews.csv"
TEXTS = [
    "love this dress  it fits perfectly",
    "cheap fabric and the seams came apart  returned it",
    "it is ok  nothing special",
]


@pytest.fixture(scope="module")
def server() -> Iterator[EndpointServer]:
    with EndpointServer(workers=2) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: EndpointServer) -> Any:
    return server.client(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="module")
def model() -> SentimentModel:
    return SentimentModel.load(default_model_dir())


def probabilities(doc: dict[str, Any]) -> np.ndarray:
    return np.array(
        [
            [p["probabilities"][k] for k in ("negative", "neutral", "positive")]
            for p in doc["predictions"]
        ]
    )


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# -- success ---------------------------------------------------------------------------------


def test_ping(server: EndpointServer) -> None:
    # the server was ready for one ping: every later one, whichever worker takes it, is 200
    assert [http_status(server.url + "/ping") for _ in range(30)] == [200] * 30


async def test_ping_waits_for_every_worker_to_load_the_model() -> None:
    """A worker that has its model still answers 503 while another worker loads its own:
    the kernel may hand the next request to either."""
    loaded = multiprocessing.get_context("fork").Value("i", 0)
    app = create_app(ServerConfig(), started=(loaded, 2))
    async with TestClient(TestServer(app)) as client:
        for _ in range(600):  # until this worker has its model
            response = await client.get("/ping")
            text = await response.text()
            if text != "model loading\n":
                break
            await asyncio.sleep(0.05)
        assert (response.status, text) == (503, "model loaded in 1 of 2 workers\n")
        assert loaded.value == 1  # this worker counted itself
        with loaded.get_lock():
            loaded.value += 1  # the other worker
        assert (await client.get("/ping")).status == 200


def test_boto3_invoke_endpoint_round_trip(client: Any, model: SentimentModel) -> None:
    response = client.invoke_endpoint(
        EndpointName="any",
        Body=json.dumps({"instances": TEXTS}).encode(),
        ContentType="application/json",
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["RequestId"]
    doc = json.loads(response["Body"].read())
    assert (doc["model_name"], doc["model_version"]) == (model.name, model.version)
    np.testing.assert_allclose(probabilities(doc), model.predict_proba(TEXTS), rtol=1e-15)
    assert [p["label"] for p in doc["predictions"]] == model.predict(TEXTS).tolist()
    assert doc["predictions"][0]["sentiment_label"] == "positive"


def test_explanations_on_request_default_unchanged(
    server: EndpointServer, client: Any, model: SentimentModel
) -> None:
    from endpoint.explain import explain

    body = json.dumps({"instances": TEXTS}).encode()
    plain = client.invoke_endpoint(EndpointName="x", Body=body, ContentType="application/json")
    plain_doc = json.loads(plain["Body"].read())
    assert all("explanation" not in p for p in plain_doc["predictions"])
    expected = [e.to_json() for e in explain(model, TEXTS, 4)]

    verbose = client.invoke_endpoint(
        EndpointName="x",
        Body=body,
        ContentType="application/json",
        Accept="application/json;verbose=4",
    )
    assert verbose["ContentType"] == "application/json"
    doc = json.loads(verbose["Body"].read())
    assert [p.pop("explanation") for p in doc["predictions"]] == expected
    assert doc == plain_doc

    field = json.dumps({"instances": TEXTS, "explain": 4}).encode()
    status, _headers, out = post(
        server.url + "/invocations", field, {"Content-Type": "application/json"}
    )
    assert status == 200
    assert [p["explanation"] for p in json.loads(out)["predictions"]] == expected

    status, _headers, out = post(
        server.url + "/invocations",
        body,
        {"Content-Type": "application/json", "Accept": "application/json;verbose=lots"},
    )
    assert status == 400 and b"verbose" in out


def test_review_event_objects_jsonlines_and_csv(client: Any, model: SentimentModel) -> None:
    events = [
        {"review_id": f"r{i}", "review_text": t, "channel": "web"} for i, t in enumerate(TEXTS)
    ]
    jsonlines = client.invoke_endpoint(
        EndpointName="reviews-endpoint",
        Body="\n".join(json.dumps(e) for e in events).encode(),
        ContentType="application/jsonlines",
        Accept="application/jsonlines",
    )
    assert jsonlines["ContentType"] == "application/jsonlines"
    rows = [json.loads(line) for line in jsonlines["Body"].read().decode().splitlines()]
    assert [r["label"] for r in rows] == model.predict(TEXTS).tolist()
    assert all(r["model_version"] == model.version for r in rows)

    csv_body = "review_id,review_text\n" + "\n".join(f"r{i},{t}" for i, t in enumerate(TEXTS))
    via_csv = client.invoke_endpoint(EndpointName="x", Body=csv_body, ContentType="text/csv")
    doc = json.loads(via_csv["Body"].read())
    np.testing.assert_allclose(probabilities(doc), model.predict_proba(TEXTS), rtol=1e-15)


def test_container_route_invocations(server: EndpointServer, model: SentimentModel) -> None:
    status, headers, body = post(
        server.url + "/invocations",
        json.dumps({"instances": TEXTS}).encode(),
        {"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["x-Amzn-Invoked-Production-Variant"] == "AllTraffic"
    np.testing.assert_allclose(
        probabilities(json.loads(body)), model.predict_proba(TEXTS), rtol=1e-15
    )


def test_body_of_exactly_six_megabytes_is_accepted(client: Any) -> None:
    prefix, suffix = b'{"instances": ["', b'"]}'
    body = prefix + b"a" * (MAX_BODY_BYTES - len(prefix) - len(suffix)) + suffix
    assert len(body) == 6 * 1024 * 1024
    response = client.invoke_endpoint(EndpointName="any", Body=body, ContentType="application/json")
    assert len(json.loads(response["Body"].read())["predictions"]) == 1


def test_real_reviews_in_concurrent_requests_to_two_workers(
    server: EndpointServer, model: SentimentModel
) -> None:
    import csv

    with DATA.open(newline="") as f:
        texts = [r["review_body"] for r, _ in zip(csv.DictReader(f), range(800), strict=False)]
    chunks = [texts[i : i + 50] for i in range(0, len(texts), 50)]
    clients = [server.client() for _ in range(4)]

    def score(i: int) -> np.ndarray:
        r = clients[i % 4].invoke_endpoint(
            EndpointName="any",
            Body=json.dumps({"instances": chunks[i]}).encode(),
            ContentType="application/json",
        )
        return probabilities(json.loads(r["Body"].read()))

    with ThreadPoolExecutor(4) as pool:
        got = np.vstack(list(pool.map(score, range(len(chunks)))))
    np.testing.assert_allclose(got, model.predict_proba(texts), rtol=1e-15)
    assert len(children_of(server.pid)) == 2


# -- errors ----------------------------------------------------------------------------------


def assert_validation_error(
    client: Any, info: pytest.ExceptionInfo[ClientError], status: int
) -> None:
    assert isinstance(info.value, client.exceptions.ValidationError)
    err = info.value.response
    assert err["Error"]["Code"] == "ValidationError"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == status
    assert err["Error"]["Message"]


def test_oversize_body_is_413(client: Any) -> None:
    body = b'{"instances": ["' + b"a" * MAX_BODY_BYTES + b'"]}'
    with pytest.raises(ClientError) as info:
        client.invoke_endpoint(EndpointName="any", Body=body, ContentType="application/json")
    assert_validation_error(client, info, 413)
    assert "6291456" in info.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", "application/json", "malformed JSON"),
        (b'{"instances": [42]}', "application/json", "instance 0"),
        (b'{"instances": []}', "application/json", "no instances"),
        (b"\xff\xfe", "application/json", "UTF-8"),
        (b"a,b\n", "text/csv", "2 fields"),
        (b'["a"]', "text/plain", "unsupported content type"),
        (b'["a"]', "application/x-npy", "unsupported content type"),
    ],
)
def test_bad_requests_raise_validation_error(
    client: Any, body: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(ClientError) as info:
        client.invoke_endpoint(EndpointName="any", Body=body, ContentType=content_type)
    assert_validation_error(client, info, 400)
    assert message in info.value.response["Error"]["Message"]


def test_unsupported_accept_is_a_validation_error(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationError) as info:
        client.invoke_endpoint(
            EndpointName="any", Body=b'["a"]', ContentType="application/json", Accept="text/csv"
        )
    assert "Accept" in info.value.response["Error"]["Message"]


def test_invalid_endpoint_name_is_a_validation_error(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationError, match="endpoint name"):
        client.invoke_endpoint(
            EndpointName="bad_name", Body=b'["a"]', ContentType="application/json"
        )


def test_container_route_statuses(server: EndpointServer) -> None:
    url = server.url + "/invocations"
    status, headers, body = post(url, b"{bad", {"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["__type"] == "ValidationError"
    assert headers["x-amzn-ErrorType"].startswith("ValidationError")
    assert post(url, b'["a"]', {"Content-Type": "text/plain"})[0] == 415
    assert post(url, b'["a"]', {"Content-Type": "application/json", "Accept": "text/csv"})[0] == 406
    assert post(url, b"x" * (MAX_BODY_BYTES + 1), {"Content-Type": "text/csv"})[0] == 413


# -- readiness, port from the environment, shutdown ------------------------------------------


def test_not_loaded_model_is_503_service_unavailable_and_retried_by_botocore() -> None:
    port = free_port()
    with EndpointServer(
        "--load-delay",
        "60",
        workers=1,
        port=port,
        env={"SAGEMAKER_BIND_TO_PORT": str(port)},
        use_port_flag=False,
        wait_ready=False,
    ) as s:
        assert http_status(s.url + "/ping") == 503
        client = s.client(retries={"total_max_attempts": 2, "mode": "standard"})
        with pytest.raises(ClientError) as info:
            client.invoke_endpoint(
                EndpointName="any", Body=b'["a"]', ContentType="application/json"
            )
        err = info.value.response
        assert isinstance(info.value, client.exceptions.ServiceUnavailable)
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert err["ResponseMetadata"]["RetryAttempts"] == 1  # botocore retried it
        status, _, _ = post(s.url + "/invocations", b'["a"]', {"Content-Type": "application/json"})
        assert status == 503


def test_endpoint_name_can_be_pinned() -> None:
    with EndpointServer("--endpoint-name", "reviews", workers=1) as s:
        client = s.client()
        ok = client.invoke_endpoint(
            EndpointName="reviews", Body=b'["a"]', ContentType="application/json"
        )
        assert ok["ResponseMetadata"]["HTTPStatusCode"] == 200
        with pytest.raises(client.exceptions.ValidationError, match="not found"):
            client.invoke_endpoint(
                EndpointName="other", Body=b'["a"]', ContentType="application/json"
            )


def test_sigterm_stops_the_supervisor_and_every_worker() -> None:
    with EndpointServer(workers=3) as s:
        workers = children_of(s.pid)
        assert len(workers) == 3
        # A worker that dies is replaced.
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = children_of(s.pid)
            if len(now) == 3 and workers[0] not in now:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"worker not replaced: {children_of(s.pid)}")
        s.wait_ready()
        workers = children_of(s.pid)
        assert s.proc is not None
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=20) == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        )


def test_broken_model_directory_fails_at_start(tmp_path: Path) -> None:
    server = EndpointServer("--model-dir", str(tmp_path), workers=1, start_timeout_s=30)
    with pytest.raises(RuntimeError, match=r"exited \(2\).*model file missing"):
        server.__enter__()


# -- hostile requests: deep JSON, stalled bodies ---------------------------------------------

DEEP = b"[" * 200_000 + b"]" * 200_000


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (DEEP, "application/json"),
        (b'{"instances": ' + DEEP + b"}", "application/json"),
        (b'"fine"\n' + DEEP + b"\n", "application/jsonlines"),
    ],
)
def test_json_nested_too_deeply_is_a_short_400(
    server: EndpointServer, client: Any, body: bytes, content_type: str
) -> None:
    with pytest.raises(ClientError) as info:
        client.invoke_endpoint(EndpointName="any", Body=body, ContentType=content_type)
    assert_validation_error(client, info, 400)
    message = info.value.response["Error"]["Message"]
    assert "nested too deeply" in message
    assert len(message) < 200 and "Recursion" not in message
    status, _, raw = post(server.url + "/invocations", body, {"Content-Type": content_type})
    assert status == 400
    doc = json.loads(raw)
    assert doc["__type"] == "ValidationError" and "nested too deeply" in doc["message"]
    assert b"Traceback" not in raw and len(raw) < 300


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (fails after 60 s)."""
    sock.settimeout(60)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_stalled_body_is_answered_408_and_closed_while_others_are_served() -> None:
    with EndpointServer("--body-timeout", "1", workers=1) as s:
        with socket.create_connection(("127.0.0.1", s.port)) as stalled:
            stalled.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n["only part of it'
            )
            # The one worker still answers others while that body is missing.
            status, _, body = post(
                s.url + "/invocations", b'["fine"]', {"Content-Type": "application/json"}
            )
            assert status == 200 and json.loads(body)["predictions"]
            answer = read_until_closed(stalled)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"RequestTimeout" in answer
        assert http_status(s.url + "/ping") == 200


def test_a_connection_that_stalls_in_its_headers_is_closed() -> None:
    with (
        EndpointServer("--idle-timeout", "1", workers=1) as s,
        socket.create_connection(("127.0.0.1", s.port)) as stalled,
    ):
        stalled.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
        answer = read_until_closed(stalled)
        assert not answer.startswith(b"HTTP/1.1 2"), answer[:200]


# -- the optional bearer token ---------------------------------------------------------------

TOKEN = "s3cr3t-t0ken-for-the-test"  # noqa: S105 - a throwaway token


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointServer]:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(TOKEN + "\n")
    with EndpointServer("--auth-token-file", str(path), workers=1) as s:
        yield s


def invoke_status(url: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    status, _, body = post(url, b'["fine"]', headers)
    return status, json.loads(body)


def test_with_a_token_file_every_invocation_needs_the_bearer_token(
    token_server: EndpointServer,
) -> None:
    assert http_status(token_server.url + "/ping") == 200  # the health check stays open
    for route in ("/invocations", "/endpoints/any/invocations"):
        url = token_server.url + route
        status, doc = invoke_status(url, None)
        assert (status, doc["__type"]) == (401, "MissingAuthenticationToken")
        assert TOKEN not in json.dumps(doc)
        status, doc = invoke_status(url, "Bearer not-the-token")
        assert (status, doc["__type"]) == (401, "UnrecognizedClientException")
        assert TOKEN not in json.dumps(doc)
        assert invoke_status(url, f"Basic {TOKEN}")[0] == 401
        status, doc = invoke_status(url, f"Bearer {TOKEN}")
        assert status == 200 and len(doc["predictions"]) == 1
    assert http_status(token_server.url + "/execution-parameters") == 401
    assert TOKEN not in token_server.log()


def test_the_token_can_come_from_the_environment() -> None:
    with EndpointServer(workers=1, env={"ENDPOINT_AUTH_TOKEN": TOKEN}) as s:
        assert invoke_status(s.url + "/invocations", None)[0] == 401
        assert invoke_status(s.url + "/invocations", f"Bearer {TOKEN}")[0] == 200


def test_an_empty_token_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    server = EndpointServer("--auth-token-file", str(tmp_path / "token"), workers=1)
    with pytest.raises(RuntimeError, match=r"exited \(2\).*is empty"):
        server.__enter__()


async def test_the_stream_scorer_sends_the_configured_token(
    token_server: EndpointServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    events = [r.event for r in generate("steady", events=30, seed=5) if r.event is not None]
    settings = EndpointSettings(
        mode="sagemaker", name="review-sentiment", url=token_server.url, auth_token=TOKEN
    )
    async with EndpointScorer(settings) as scorer:
        result = await scorer.score(events)
    assert len(result.predictions) == len(events)
    without = settings.model_copy(update={"auth_token": None})
    async with EndpointScorer(without) as scorer:
        with pytest.raises(ConfigurationError):
            await scorer.score(events)
