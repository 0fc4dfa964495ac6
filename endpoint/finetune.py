"""Fine-tune a transformer flavour (:mod:`endpoint.transformer`) on labelled reviews, with JAX.

JAX's CPU wheels are small (``jaxlib`` is about 85 MB; PyPI's torch is a 3 GB CUDA build), so
fine-tuning runs on the machine that trains the TF-IDF flavour. The model is the same forward
pass the server scores with (:func:`endpoint.transformer.encode` over ``jax.numpy``); the
tensors it ends with are served by numpy, so a served model gives the probabilities training
measured.

Recipe (:class:`FinetuneConfig` defaults, the ``minilm`` flavour's): every encoder weight and a
new linear head (normal, std 0.02) are trained together with AdamW (learning rate 5e-5, linear
warm-up over the first 10 % of steps and linear decay to zero, weight decay 0.01 on matrices
only), batches of 32 reviews in a seeded order, each padded to the next multiple of 16 tokens
(``length_step``: one compiled step per length), for 3 epochs, cross-entropy loss. No
dropout: the run is deterministic for a seed.

With ``frozen_layers`` = k > 0 (the ``mpnet`` flavour's recipe, :data:`RECIPES`: the top 3 of
its 12 layers and the head, 2 epochs, batches of 16), the embeddings and the bottom k layers
keep their pre-trained weights, so their output for each review is computed once (epoch 0 of
the progress) and only the layers above it run in the training steps: about a quarter of the
work per epoch for mpnet, and what makes the 110M-parameter encoder trainable on 2 cores.

Data: the TF-IDF flavour's stratified, seeded split (:func:`endpoint.train._split`) holds out the
same validation reviews; of the training part, a stratified ``calibration_size`` share is kept
out of fine-tuning and fits the calibration (vector scaling by default) on the served model's
scores. ``model.json`` records the validation figures before and after calibration, as for
the TF-IDF flavour, and ``model train`` writes the model card beside it.

Public API::

    FinetuneConfig(flavour="minilm", max_length=128, epochs=3, batch_size=32, ...)
    FinetuneConfig.recipe(flavour, **overrides) -> the flavour's recipe
    grid(flavours, epochs=(), learning_rates=(), **fixed) -> [FinetuneConfig]   # select's
    finetune(reviews, config, progress=None) -> TrainResult     # nothing written
    finetune_and_save(data, out_dir, config, progress=None) -> TrainResult
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .calibration import CHOICES, Choice, fit_choice
from .model import CLASSES, calibrated_softmax
from .train import (
    Reviews,
    TrainResult,
    _speed,
    _split,
    _validate,
    evaluation_metadata,
    load_reviews,
    save_model,
    train_result,
)
from .transformer import (
    FLAVOURS,
    EncoderConfig,
    TransformerModel,
    pad,
    pretrained_weights,
    require_extra,
    token_ids,
    word_vocabulary,
)

__all__ = ["FinetuneConfig", "Progress", "finetune", "finetune_and_save", "grid", "split_rows"]

#: Padded lengths are multiples of this by default (fewer distinct shapes, fewer compilations
#: than padding to each batch's longest review, less padding than the truncation length).
LENGTH_STEP = 16

#: ``progress(epoch, epochs, step, steps, loss, seconds)`` after every logged step; epoch 0 is
#: the pass that computes the frozen layers' outputs (``loss`` is nan there).
Progress = Callable[[int, int, int, int, float, float], None]

#: Each flavour's recipe: where it differs from :class:`FinetuneConfig`'s defaults.
RECIPES: dict[str, dict[str, Any]] = {
    "minilm": {},
    "mpnet": {"epochs": 2, "batch_size": 16, "frozen_layers": 9},
}


@dataclass(frozen=True)
class FinetuneConfig:
    """A transformer flavour's fine-tuning recipe; the defaults are the documented one."""

    flavour: str = "minilm"
    max_length: int = 128
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    test_size: float = 0.2
    calibration_size: float = 0.1
    calibration_method: Choice = "vector"
    #: Bottom encoder layers kept at their pre-trained weights (0: every layer is trained).
    frozen_layers: int = 0
    #: Batches are padded to a multiple of this many tokens (at most ``max_length``). Each
    #: distinct padded length compiles the training step once more; on a GPU, where that
    #: compilation costs more than the padding, the truncation length makes it one shape.
    #: Padding is masked, so it changes no result beyond float rounding.
    length_step: int = LENGTH_STEP
    seed: int = 42
    #: Log every this many steps (and the last).
    log_every: int = 10
    name: str = "review-sentiment"

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"unknown flavour {self.flavour!r}: one of {sorted(FLAVOURS)}")
        if min(self.epochs, self.batch_size, self.log_every, self.length_step) < 1:
            raise ValueError("epochs, batch_size, log_every and length_step must be >= 1")
        if not 0.0 < self.test_size < 1.0 or not 0.0 < self.calibration_size < 1.0:
            raise ValueError("test_size and calibration_size must be in (0, 1)")
        if self.learning_rate <= 0 or not 0.0 <= self.warmup < 1.0:
            raise ValueError("learning_rate must be > 0 and warmup in [0, 1)")
        if self.calibration_method not in CHOICES:
            raise ValueError(f"calibration_method must be one of {list(CHOICES)}")
        if self.frozen_layers < 0:
            raise ValueError("frozen_layers must be >= 0")

    @classmethod
    def recipe(cls, flavour: str, **overrides: Any) -> FinetuneConfig:
        """``flavour``'s recipe (:data:`RECIPES`) with ``overrides``; an override of None
        keeps the recipe's value."""
        if flavour not in RECIPES:
            raise ValueError(f"unknown flavour {flavour!r}: one of {sorted(RECIPES)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(flavour=flavour, **{**RECIPES[flavour], **given})


def grid(
    flavours: Sequence[str],
    *,
    epochs: Sequence[int] = (),
    learning_rates: Sequence[float] = (),
    frozen_layers: Sequence[int] = (),
    **fixed: Any,
) -> list[FinetuneConfig]:
    """``model select``'s transformer candidates: each flavour's recipe at every combination
    of ``frozen_layers``, ``epochs`` and ``learning_rates`` (an empty one keeps the recipe's
    value), with ``fixed`` overrides, in that order and without repeats."""
    out: list[FinetuneConfig] = []
    for flavour in flavours:
        for frozen in frozen_layers or (None,):
            for n in epochs or (None,):
                for rate in learning_rates or (None,):
                    config = FinetuneConfig.recipe(
                        flavour, frozen_layers=frozen, epochs=n, learning_rate=rate, **fixed
                    )
                    if config not in out:
                        out.append(config)
    return out


def _jax(flavour: str) -> tuple[Any, Any, Any]:
    """jax, jax.numpy and optax, or :class:`MissingExtra` naming what to install."""
    return (
        require_extra("jax", flavour),
        require_extra("jax.numpy", flavour),
        require_extra("optax", flavour),
    )


def _batches(
    ids: Sequence[Sequence[int]], batch_size: int, rng: np.random.Generator
) -> list[npt.NDArray[np.int64]]:
    """One epoch's batches of row indices, in a seeded random order."""
    order = rng.permutation(len(ids))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _padded_length(rows: Sequence[Sequence[int]], max_length: int, step: int) -> int:
    """The length a batch of ``rows`` is padded to: its longest row rounded up to a multiple
    of ``step``, at most ``max_length``."""
    longest = max(len(r) for r in rows)
    return min(max_length, -(-longest // step) * step)


def _trainable(name: str, frozen_layers: int) -> bool:
    """Whether fine-tuning with ``frozen_layers`` updates the tensor ``name``: with some frozen,
    only the layers above them (the embeddings and the shared relative-position bias stay)."""
    if not frozen_layers or name.startswith("head."):
        return True
    parts = name.split(".")
    return name.startswith("encoder.layer.") and int(parts[2]) >= frozen_layers


def _frozen_states(
    tensors: dict[str, npt.NDArray[np.float32]],
    encoder: EncoderConfig,
    ids: list[list[int]],
    config: FinetuneConfig,
    progress: Callable[[int, int, float], None] | None,
) -> list[npt.NDArray[np.float32]]:
    """Each review's token vectors (tokens, hidden) after the embeddings and the bottom
    ``config.frozen_layers`` layers, computed in length-sorted batches."""
    jax, jnp, _ = _jax(config.flavour)
    frozen_layers = config.frozen_layers
    from .transformer import SCORE_BATCH, embed, encoder_layers

    fixed = {k: jnp.asarray(v) for k, v in tensors.items() if not _trainable(k, frozen_layers)}

    def bottom(t: Any, batch_ids: Any, mask: Any) -> Any:
        x = embed(jnp, t, encoder, batch_ids)
        return encoder_layers(jnp, jax.scipy.special.erf, t, encoder, x, mask, range(frozen_layers))

    run = jax.jit(bottom)
    order = np.argsort([len(r) for r in ids], kind="stable")
    out: list[npt.NDArray[np.float32]] = [np.empty(0, np.float32)] * len(ids)
    started = time.perf_counter()
    batches = range(0, len(order), SCORE_BATCH)
    for k, start in enumerate(batches, start=1):
        rows = order[start : start + SCORE_BATCH]
        batch = [ids[i] for i in rows]
        padded, mask = pad(batch, _padded_length(batch, encoder.max_length, config.length_step))
        x = np.asarray(run(fixed, jnp.asarray(padded), jnp.asarray(mask)))
        for j, i in enumerate(rows):
            out[i] = x[j, : len(ids[i])].copy()
        if progress is not None and (k % 10 == 0 or k == len(batches)):
            progress(k, len(batches), time.perf_counter() - started)
    return out


def _fit(
    tensors: dict[str, npt.NDArray[np.float32]],
    encoder: EncoderConfig,
    ids: list[list[int]],
    labels: npt.NDArray[np.int64],
    config: FinetuneConfig,
    progress: Progress | None,
) -> tuple[dict[str, npt.NDArray[np.float32]], list[float]]:
    """Fine-tune ``tensors`` plus a new head on ``ids``/``labels``; returns the trained
    tensors (numpy, head included) and the mean loss of each epoch."""
    jax, jnp, optax = _jax(config.flavour)
    from .transformer import embed, encoder_layers, head_logits, mean_pool

    frozen = config.frozen_layers
    if frozen >= encoder.layers:
        raise ValueError(f"frozen_layers must be below the encoder's {encoder.layers} layers")
    rng = np.random.default_rng(config.seed)
    fixed = {k: jnp.asarray(v) for k, v in tensors.items() if not _trainable(k, frozen)}
    params = {k: jnp.asarray(v) for k, v in tensors.items() if _trainable(k, frozen)}
    params["head.weight"] = jnp.asarray(
        rng.normal(0.0, 0.02, (encoder.hidden, len(CLASSES))).astype(np.float32)
    )
    params["head.bias"] = jnp.zeros(len(CLASSES), dtype=jnp.float32)
    steps_per_epoch = -(-len(ids) // config.batch_size)
    total = steps_per_epoch * config.epochs
    warm = int(total * config.warmup)
    schedule = optax.join_schedules(
        [
            optax.linear_schedule(0.0, config.learning_rate, max(warm, 1)),
            optax.linear_schedule(config.learning_rate, 0.0, max(total - warm, 1)),
        ],
        [max(warm, 1)],
    )
    decay_mask = {k: v.ndim == 2 and not k.startswith("embeddings.") for k, v in params.items()}
    optimiser = optax.adamw(schedule, weight_decay=config.weight_decay, mask=decay_mask)
    state = optimiser.init(params)
    started = time.perf_counter()
    states: list[npt.NDArray[np.float32]] = []
    if frozen:
        states = _frozen_states(
            tensors,
            encoder,
            ids,
            config,
            None
            if progress is None
            else lambda k, n, s: progress(0, config.epochs, k, n, float("nan"), s),
        )

    def loss_fn(p: Any, fixed: Any, inputs: Any, mask: Any, y: Any) -> Any:
        t = {**fixed, **p}
        x = inputs if frozen else embed(jnp, t, encoder, inputs)
        x = encoder_layers(
            jnp, jax.scipy.special.erf, t, encoder, x, mask, range(frozen, encoder.layers)
        )
        logits = head_logits(jnp, t, mean_pool(jnp, x, mask))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def train_step(p: Any, s: Any, fixed: Any, inputs: Any, mask: Any, y: Any) -> Any:
        loss, grads = jax.value_and_grad(loss_fn)(p, fixed, inputs, mask, y)
        updates, s = optimiser.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    step = jax.jit(train_step)

    epoch_losses = []
    for epoch in range(1, config.epochs + 1):
        losses = []
        for k, rows in enumerate(_batches(ids, config.batch_size, rng), start=1):
            batch = [ids[i] for i in rows]
            length = _padded_length(batch, encoder.max_length, config.length_step)
            inputs, mask = pad([states[i] for i in rows] if frozen else batch, length)
            params, state, loss = step(
                params,
                state,
                fixed,
                jnp.asarray(inputs),
                jnp.asarray(mask),
                jnp.asarray(labels[rows] + 1),
            )
            losses.append(float(loss))
            if progress is not None and (k % config.log_every == 0 or k == steps_per_epoch):
                progress(
                    epoch,
                    config.epochs,
                    k,
                    steps_per_epoch,
                    float(np.mean(losses[-config.log_every :])),
                    time.perf_counter() - started,
                )
        epoch_losses.append(float(np.mean(losses)))
    trained = {**tensors, **{k: np.asarray(v, dtype=np.float32) for k, v in params.items()}}
    return trained, epoch_losses


def split_rows(
    reviews: Reviews, test_size: float, calibration_size: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row indices a fine-tuned flavour is fitted on, calibrated on and validated on: the
    TF-IDF flavour's stratified, seeded split (:func:`endpoint.train.train`'s), then a
    stratified ``calibration_size`` share of its training part with the same seed."""
    from sklearn.model_selection import train_test_split

    from .train import TrainConfig

    train_idx, valid_idx = _split(reviews, TrainConfig(test_size=test_size, seed=seed))
    fit_idx, cal_idx = train_test_split(
        train_idx,
        test_size=calibration_size,
        stratify=reviews.labels[train_idx],
        random_state=seed,
    )
    return fit_idx, cal_idx, valid_idx


def finetune(
    reviews: Reviews, config: FinetuneConfig | None = None, progress: Progress | None = None
) -> TrainResult:
    """Split (:func:`split_rows`), fine-tune on the training part less its calibration share,
    fit the calibration on that share, validate on the validation part; nothing is written."""
    config = config or FinetuneConfig()
    started = time.perf_counter()
    tensors, tokenizer_json, encoder, source = pretrained_weights(config.flavour, config.max_length)
    fit_idx, cal_idx, valid_idx = split_rows(
        reviews, config.test_size, config.calibration_size, config.seed
    )
    train_idx = np.concatenate([fit_idx, cal_idx])
    texts = reviews.texts
    vocabulary = word_vocabulary([texts[i] for i in train_idx])
    tokenizer = require_extra("tokenizers", config.flavour).Tokenizer.from_str(tokenizer_json)
    fit_ids = token_ids(tokenizer, [texts[i] for i in fit_idx], encoder.max_length)
    trained, epoch_losses = _fit(
        tensors, encoder, fit_ids, reviews.labels[fit_idx], config, progress
    )
    model = TransformerModel(trained, tokenizer_json, encoder, vocabulary)
    x_cal = [texts[i] for i in cal_idx]
    chosen = fit_choice(
        model.decision_function(x_cal),
        reviews.labels[cal_idx] + 1,
        config.calibration_method,
        seed=config.seed,
    )
    calibration = chosen.calibration
    x_valid = [texts[i] for i in valid_idx]
    y_valid = reviews.labels[valid_idx]
    scores = model.decision_function(x_valid)
    raw = _validate(calibrated_softmax(scores), y_valid)
    validation = _validate(calibration.apply(scores), y_valid)
    where = FLAVOURS[config.flavour]
    meta: dict[str, Any] = {
        "name": config.name,
        "flavour": config.flavour,
        "description": (
            f"Review sentiment: {where.model} fine-tuned on reviews, mean-pooled, with a linear "
            "head; probabilities are softmax(z / T + b) of the head's row-centred logits z "
            "with the calibration's temperature T (one, or one per class) and biases b."
        ),
        "classifier": {"type": "fine_tuned_transformer", "pretrained": source},
    }
    meta = evaluation_metadata(
        meta,
        reviews,
        reviews.labels[fit_idx],
        len(valid_idx),
        validation,
        raw,
        chosen,
        fitted_on=(
            f"scores of {len(cal_idx)} training reviews kept out of fine-tuning (stratified "
            f"{config.calibration_size:g} of the training split, seed {config.seed})"
        ),
        split=f"stratified hold-out, test_size={config.test_size}, seed={config.seed}",
        config={k: v for k, v in asdict(config).items() if k not in ("name", "log_every")},
    )
    meta["training"]["epoch_loss"] = [round(v, 6) for v in epoch_losses]
    meta["training"]["fine_tuned_on"] = _device(config.flavour)
    model = TransformerModel(trained, tokenizer_json, encoder, vocabulary, meta)
    model.metadata["version"] = _digest(trained, calibration.to_json())[:12]
    model.metadata["speed"] = _speed(model, x_valid[:256])
    return train_result(model, None, validation, raw, calibration, len(fit_idx), started)


def _device(flavour: str) -> str:
    """What JAX fine-tuned on: its default device (a GPU when its CUDA build is installed)."""
    import os

    jax, _, _ = _jax(flavour)
    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"CPU, {os.cpu_count()} cores (jax {jax.__version__})"
    return f"{device.platform.upper()}: {device.device_kind} (jax {jax.__version__})"


def _digest(tensors: dict[str, npt.NDArray[np.float32]], calibration: dict[str, Any]) -> str:
    import hashlib
    import json

    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(np.ascontiguousarray(tensors[k]).tobytes())
    h.update(json.dumps(calibration, sort_keys=True).encode())
    return h.hexdigest()


def finetune_and_save(
    data: str | Path,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """:func:`finetune` on the CSV ``data``, saved to ``out_dir`` with its model card."""
    result = finetune(load_reviews(data), config, progress)
    save_model(result, out_dir)
    return result
