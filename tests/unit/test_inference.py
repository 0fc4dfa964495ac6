"""The SageMaker handler contract: content types, Accept, errors, exact outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from endpoint import inference
from endpoint.inference import (
    InvalidInput,
    Prediction,
    UnsupportedAccept,
    UnsupportedContentType,
    handle,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
)
from endpoint.model import FeatureBlock, SentimentModel


@pytest.fixture(scope="module")
def model() -> SentimentModel:
    loaded = model_fn(inference.default_model_dir())
    assert isinstance(loaded, SentimentModel)  # the shipped model is the tfidf flavour
    return loaded


@pytest.fixture
def tiny() -> SentimentModel:
    coef = np.array([[2.0, -1.0], [0.0, 0.0], [-2.0, 1.0]])
    return SentimentModel(
        [FeatureBlock(terms=("bad", "good"), norm=None)],
        coef,
        [0.0, 0.0, 0.0],
        {"name": "tiny", "version": "t1"},
    )


# -- input_fn --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"instances": ["a", "b c"]}', "application/json", ["a", "b c"]),
        (b'["a", "b"]', "application/json; charset=utf-8", ["a", "b"]),
        (
            json.dumps(
                {"instances": ["x", {"review_id": "r1", "review_text": "y", "rating": 5}]}
            ).encode(),
            "Application/JSON",
            ["x", "y"],
        ),
        (
            b'{"instances": [{"review_body": "from the csv column"}]}',
            "application/json",
            ["from the csv column"],
        ),
        ('{"instances": ["caf\u00e9 \u2764"]}', "application/json", ["caf\u00e9 \u2764"]),
        (b'\xef\xbb\xbf{"instances": ["bom"]}', "application/json", ["bom"]),
        (b'"a"\n\n{"review_text": "b"}\n"c"', "application/jsonlines", ["a", "b", "c"]),
        (b'"a"\r\n"b"\r\n', "application/jsonl", ["a", "b"]),
        (b'"a"', "application/x-jsonlines", ["a"]),
        (b"one\ntwo\n\nthree\n", "text/csv", ["one", "two", "three"]),
        (b'"with, comma"\n"multi\nline"\n', "text/csv", ["with, comma", "multi\nline"]),
        (
            b'review_id,review_text,channel\nr1,"good, really",web\nr2,bad,app\n',
            "text/csv",
            ["good, really", "bad"],
        ),
        (b"sentiment,review_body\n1,nice\n-1,meh\n", "text/csv", ["nice", "meh"]),
        (b'""\n', "text/csv", [""]),
        (b'{"instances": [""]}', "application/json", [""]),
    ],
)
def test_input_fn_decodes_every_supported_content_type(
    body: bytes | str, content_type: str, expected: list[str]
) -> None:
    assert input_fn(body, content_type) == expected


def test_input_fn_accepts_bytearray_and_memoryview() -> None:
    body = b'{"instances": ["a"]}'
    assert input_fn(bytearray(body), "application/json") == ["a"]
    assert input_fn(memoryview(body), "application/json") == ["a"]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", "application/json", "malformed JSON"),
        (b'{"inputs": ["a"]}', "application/json", "instances"),
        (b'{"instances": "a"}', "application/json", "must be a list"),
        (b'"just a string"', "application/json", "must be a list"),
        (b'{"instances": [1]}', "application/json", "instance 0"),
        (b'{"instances": ["a", {"text": "b"}]}', "application/json", "instance 1"),
        (b'{"instances": [{"review_text": 3}]}', "application/json", "review_text"),
        (b'{"instances": []}', "application/json", "no instances"),
        (b"[]", "application/json", "no instances"),
        (b"", "application/json", "malformed JSON"),
        (b"\xff\xfe bad utf-8", "application/json", "UTF-8"),
        (b'"a"\n{bad\n', "application/jsonlines", "line 2"),
        (b'"a"\n[1]\n', "application/jsonlines", "line 2"),
        (b"\n\n", "application/jsonlines", "no instances"),
        (b"a,b\n", "text/csv", "2 fields"),
        (b'"unterminated\n', "text/csv", "malformed CSV"),
        (b"x,review_text\n1\n", "text/csv", "record 2"),
        (b"", "text/csv", "no instances"),
    ],
)
def test_input_fn_rejects_bad_bodies_with_invalid_input(
    body: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        input_fn(body, content_type)
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, UnsupportedContentType)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-npy", "", None, "json"])
def test_input_fn_rejects_unsupported_content_types(content_type: str | None) -> None:
    with pytest.raises(UnsupportedContentType, match="unsupported content type"):
        input_fn(b'["a"]', content_type)


def test_input_fn_rejects_non_bytes_bodies() -> None:
    with pytest.raises(InvalidInput, match="bytes or str"):
        input_fn(123, "application/json")  # type: ignore[arg-type]


# -- predict_fn and output_fn ----------------------------------------------------------------


def test_exact_json_response_of_a_tiny_model(tiny: SentimentModel) -> None:
    prediction = predict_fn(["good", "bad bad", "nothing"], tiny)
    body, content_type = output_fn(prediction, "application/json")
    assert content_type == "application/json"
    doc = json.loads(body)
    assert doc["model_name"] == "tiny" and doc["model_version"] == "t1"
    # softmax of z - max(z): scores (-1, 0, 1) for "good", (4, 0, -4) for "bad bad"
    e1, e2 = np.exp([-2.0, -1.0, 0.0]), np.exp([0.0, -4.0, -8.0])
    p_good, p_bad = e1 / e1.sum(), e2 / e2.sum()
    third = 1.0 / 3.0
    assert doc["predictions"] == [
        {
            "label": 1,
            "sentiment_label": "positive",
            "probabilities": dict(
                zip(["negative", "neutral", "positive"], p_good.tolist(), strict=True)
            ),
        },
        {
            "label": -1,
            "sentiment_label": "negative",
            "probabilities": dict(
                zip(["negative", "neutral", "positive"], p_bad.tolist(), strict=True)
            ),
        },
        {
            "label": -1,  # a three-way tie goes to the first class, as argmax does
            "sentiment_label": "negative",
            "probabilities": {"negative": third, "neutral": third, "positive": third},
        },
    ]
    assert prediction.labels.tolist() == [1, -1, -1]


def test_jsonlines_response_has_one_line_per_instance(tiny: SentimentModel) -> None:
    prediction = predict_fn(["good", "bad"], tiny)
    body, content_type = output_fn(prediction, "application/jsonlines")
    assert content_type == "application/jsonlines"
    lines = body.decode().splitlines()
    assert len(lines) == 2 and body.endswith(b"\n")
    rows = [json.loads(line) for line in lines]
    assert [r["label"] for r in rows] == [1, -1]
    assert all(r["model_name"] == "tiny" and r["model_version"] == "t1" for r in rows)
    json_doc = json.loads(output_fn(prediction, None)[0])
    for r, j in zip(rows, json_doc["predictions"], strict=True):
        assert {k: r[k] for k in ("label", "sentiment_label", "probabilities")} == j


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        ("text/html, application/jsonlines;q=0.9, */*;q=0.1", "application/jsonlines"),
        ("application/jsonl", "application/jsonlines"),
    ],
)
def test_accept_picks_the_response_type(
    tiny: SentimentModel, accept: str | None, expected: str
) -> None:
    assert output_fn(predict_fn(["good"], tiny), accept)[1] == expected


@pytest.mark.parametrize("accept", ["text/csv", "text/html", "application/xml"])
def test_unsupported_accept_is_refused_before_scoring(
    tiny: SentimentModel, accept: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: Any) -> Prediction:
        raise AssertionError("scored although the response could not be written")

    monkeypatch.setattr(inference, "predict_fn", boom)
    with pytest.raises(UnsupportedAccept, match="Accept"):
        handle(b'["good"]', "application/json", accept, tiny)


def test_handle_runs_the_whole_contract(model: SentimentModel) -> None:
    texts = ["love this top  so soft", "the zipper broke on day one  very disappointed"]
    body, content_type = handle(
        json.dumps({"instances": texts}).encode(), "application/json", None, model
    )
    assert content_type == "application/json"
    doc = json.loads(body)
    expected = model.predict_proba(texts)
    got = np.array(
        [
            [p["probabilities"][k] for k in ("negative", "neutral", "positive")]
            for p in doc["predictions"]
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    assert [p["label"] for p in doc["predictions"]] == model.predict(texts).tolist()
    assert (doc["model_name"], doc["model_version"]) == (model.name, model.version)


def test_all_content_types_give_the_same_predictions(model: SentimentModel) -> None:
    texts = ["runs small  order a size up", 'perfect, "flattering" fit', "meh"]
    bodies = {
        "application/json": json.dumps({"instances": texts}).encode(),
        "application/jsonlines": "\n".join(json.dumps({"review_text": t}) for t in texts).encode(),
        "text/csv": (
            "review_text\n" + "\n".join('"' + t.replace('"', '""') + '"' for t in texts) + "\n"
        ).encode(),
    }
    results = [json.loads(handle(b, ct, "application/json", model)[0]) for ct, b in bodies.items()]
    assert results[0] == results[1] == results[2]
    assert len(results[0]["predictions"]) == 3


def test_model_fn_loads_a_model_directory(tmp_path: Path, tiny: SentimentModel) -> None:
    tiny.save(tmp_path)
    loaded = model_fn(str(tmp_path))
    assert (loaded.name, loaded.version) == ("tiny", "t1")
    with pytest.raises(FileNotFoundError):
        model_fn(tmp_path / "missing")
