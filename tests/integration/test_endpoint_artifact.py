"""The SageMaker model artifact: layout, reproducibility, and the handler served from the
unpacked archive exactly as a framework container does (``code/`` on ``sys.path``,
``import inference``, ``model_fn("/opt/ml/model")``), in a fresh interpreter that cannot
import this project, scikit-learn, scipy or pandas."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from endpoint import inference
from endpoint.artifact import REQUIREMENTS, build_artifact
from endpoint.model import MODEL_FILE, WEIGHTS_FILE
from tests.container import container_script

pytestmark = pytest.mark.integration

REQUESTS: list[tuple[str, str, str]] = [
    (
        json.dumps({"instances": ["love it", {"review_id": "r1", "review_text": "hate it"}]}),
        "application/json",
        "application/json",
    ),
    (
        '"runs small"\n{"review_text": "perfect fit"}\n',
        "application/jsonlines",
        "application/jsonlines",
    ),
    ('review_id,review_text\nr1,"soft, comfy"\nr2,itchy\n', "text/csv", "*/*"),
    # explanations, asked for in the body and in Accept
    (
        json.dumps({"instances": ["the zipper broke, so disappointed"], "explain": 3}),
        "application/json",
        "application/json",
    ),
    ('"runs small"\n', "application/jsonlines", "application/jsonlines;verbose=2"),
]

# Runs inside the fresh interpreter: what a SageMaker framework container does with the archive.
CONTAINER = container_script(
    ("endpoint", "stream", "monitors", "sinks", "sklearn", "scipy", "pandas", "aiohttp", "pyarrow"),
    r"""
out = []
for body, content_type, accept in given:
    data = handler.input_fn(body.encode(), content_type)
    payload, kind = handler.output_fn(handler.predict_fn(data, model), accept)
    out.append([payload.decode(), kind])
try:
    handler.input_fn(b"{bad", "application/json")
except handler.InvalidInput as err:
    out.append(["InvalidInput", str(err), isinstance(err, ValueError)])
print(json.dumps(out))
""",
)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_artifact(tmp_path_factory.mktemp("artifact") / "model.tar.gz")


def test_archive_layout(artifact: Path) -> None:
    with tarfile.open(artifact, "r:gz") as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
        assert names == sorted(
            [
                MODEL_FILE,
                WEIGHTS_FILE,
                "MODEL_CARD.md",
                "code/explain.py",
                "code/inference.py",
                "code/model.py",
                "code/requirements.txt",
            ]
        )
        req = tar.extractfile("code/requirements.txt")
        assert req is not None
        assert req.read().decode() == REQUIREMENTS
        assert REQUIREMENTS.split(">")[0].strip() == "numpy"
        model_json = tar.extractfile(MODEL_FILE)
        assert model_json is not None
        shipped = (inference.default_model_dir() / MODEL_FILE).read_bytes()
        assert model_json.read() == shipped
    assert artifact.stat().st_size < 4 * 1024 * 1024


def test_archive_is_reproducible(artifact: Path, tmp_path: Path) -> None:
    again = build_artifact(tmp_path / "again.tar.gz")
    assert again.read_bytes() == artifact.read_bytes()


def test_handler_served_from_the_unpacked_archive(artifact: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    with tarfile.open(artifact, "r:gz") as tar:
        tar.extractall(model_dir, filter="data")
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CONTAINER, str(model_dir)],
        input=json.dumps(REQUESTS),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results: list[Any] = json.loads(proc.stdout)

    # The same requests through this project's package give the same bytes.
    model = inference.model_fn(inference.default_model_dir())
    for (body, content_type, accept), (payload, kind) in zip(REQUESTS, results, strict=False):
        expected, expected_kind = inference.handle(body.encode(), content_type, accept, model)
        assert (payload, kind) == (expected.decode(), expected_kind)
    assert results[0][1] == "application/json"
    assert json.loads(results[0][0])["predictions"][0]["label"] == 1
    assert results[1][1] == "application/jsonlines"
    assert results[2][1] == "application/json"
    # the default responses carry no explanation; the asked-for ones do, with the exact sums
    for payload, _kind in results[:3]:
        assert "explanation" not in payload
    explained = json.loads(results[3][0])["predictions"][0]
    assert [t["term"] for t in explained["explanation"]["terms"]][:1] == ["disappointed"]
    assert len(explained["explanation"]["terms"]) == 3
    line = json.loads(results[4][0])
    e = line["explanation"]
    assert len(e["terms"]) == 2
    for k in ("negative", "neutral", "positive"):
        total = e["base"][k] + sum(t[k] for t in e["terms"]) + e["remainder"][k]
        assert total == pytest.approx(e["logits"][k], abs=1e-12)
    assert results[5][0] == "InvalidInput" and results[5][2] is True
    assert "malformed JSON" in results[5][1]
