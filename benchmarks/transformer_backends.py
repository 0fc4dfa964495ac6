"""A transformer flavour scored by ONNX Runtime against numpy, side by side in one run: macro-F1
and accuracy on the model's own validation reviews (rebuilt from ``model.json``'s split, as
training made it), the largest probability difference, and reviews/s of each.

    .venv/bin/python -m benchmarks.transformer_backends --model-dir minilm-model [--speed 256]

Without ``--model-dir`` it uses the ``--flavour``'s pre-trained encoder (minilm by default)
with an untrained head (speed and agreement only; its macro-F1 means nothing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.scoring import speed_only
from endpoint.model import CLASSES
from endpoint.train import DEFAULT_DATA, TrainConfig, _split, _validate, load_reviews
from endpoint.transformer import TransformerModel


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model-dir", type=Path, default=None, help="a transformer model dir")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the training CSV")
    parser.add_argument("--speed", type=int, default=256, help="reviews timed per backend")
    parser.add_argument(
        "--flavour", default="minilm", help="without --model-dir: whose pre-trained encoder"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or speed_only(args.flavour, Path(tmp))
        models = {b: TransformerModel.load(model_dir, backend=b) for b in ("numpy", "onnx")}
    config = models["numpy"].metadata.get("training", {}).get("config", {})
    reviews = load_reviews(args.data)
    split = TrainConfig(test_size=config.get("test_size", 0.2), seed=config.get("seed", 42))
    _, valid_idx = _split(reviews, split)
    texts = [reviews.texts[i] for i in valid_idx]
    truth = reviews.labels[valid_idx]
    print(f"{model_dir}: {len(texts)} validation reviews of {args.data.name}")
    proba, rates = {}, {}
    for name, model in models.items():
        model.predict_proba(texts[:8])  # warm up (ONNX Runtime builds its session)
        started = time.perf_counter()
        model.predict_proba(texts[: args.speed])
        rates[name] = min(args.speed, len(texts)) / (time.perf_counter() - started)
        proba[name] = model.predict_proba(texts)
    print(f"{'backend':<8} {'macro-F1':>8} {'accuracy':>8} {'reviews/s':>10}")
    for name in models:
        v = _validate(proba[name], truth)
        print(f"{name:<8} {v.macro_f1:8.4f} {v.accuracy:8.4f} {rates[name]:10.1f}")
    same = np.mean(np.argmax(proba["numpy"], 1) == np.argmax(proba["onnx"], 1))
    print(
        f"onnx / numpy speed: {rates['onnx'] / rates['numpy']:.2f}; largest probability "
        f"difference {np.max(np.abs(proba['numpy'] - proba['onnx'])):.2e}; same class for "
        f"{same:.2%} of {len(texts)} reviews (classes {list(CLASSES)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
