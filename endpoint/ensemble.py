"""The ensemble flavour: other flavours' models stacked, as Autopilot's ensembling mode does.

Scores are the weighted sum of the members' calibrated log-probabilities, centred per row --
``z = sum_m w_m log p_m(x)``, a weighted geometric mean of their opinions -- and the ensemble's
probabilities are ``softmax(z / T + b)`` with its own calibration, as every flavour's are. The
weights and that calibration are fitted by :mod:`endpoint.stack` on reviews no member was
fitted on.

Model directory (no pickle)::

    model.json    as every flavour's (:mod:`endpoint.model`), with ``"flavour": "ensemble"`` and
                  ``"members"``: ``[{"path": "members/0-mpnet", "flavour": "mpnet",
                  "weight": w}, ...]``
    members/      each member's own model directory, loaded by the handler's ``model_fn``

The words monitors measure out-of-vocabulary rates against are the first TF-IDF member's (the
first member's when there is none). Like :mod:`endpoint.transformer`, this module is numpy
only and is copied into a SageMaker archive's ``code/`` beside ``inference.py``.

Public API::

    MEMBERS_DIR = "members"
    EnsembleModel(members, weights, metadata)
        .members, .weights, .decision_function(texts), .predict_proba(texts)
        .save(model_dir) / EnsembleModel.load(model_dir, load_member)
    log_probabilities(member, texts) -> (n, 3)      # a member's calibrated log-probabilities
    combine(member_scores, weights) -> (n, 3)       # the ensemble's scores from them
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING or __package__:
    from .model import CLASSES, MODEL_FILE, ModelInfo
else:  # ``code/ensemble.py`` of a SageMaker archive: inference.py loaded model.py first
    import sys

    _model = sys.modules["_sentiment_endpoint_model"]
    CLASSES, MODEL_FILE, ModelInfo = _model.CLASSES, _model.MODEL_FILE, _model.ModelInfo

__all__ = ["FLAVOUR", "MEMBERS_DIR", "EnsembleModel", "combine", "log_probabilities"]

FLAVOUR = "ensemble"
#: Where a saved ensemble keeps its members' model directories.
MEMBERS_DIR = "members"
#: Format of the ensemble's model directory.
FORMAT = 1
#: Probabilities are clipped here before their logarithm (a member sure of a class).
_FLOOR = 1e-12

FloatArray = npt.NDArray[np.float64]


def log_probabilities(member: ModelInfo, texts: Sequence[str]) -> FloatArray:
    """A member's calibrated probabilities of ``texts`` (n, 3), as logarithms (a probability
    below 1e-12 counts as 1e-12)."""
    out: FloatArray = np.log(np.maximum(member.predict_proba(texts), _FLOOR))
    return out


def combine(member_scores: Sequence[FloatArray], weights: Sequence[float]) -> FloatArray:
    """The ensemble's scores from its members' :func:`log_probabilities`: their weighted
    sum, centred per row."""
    z = np.zeros_like(member_scores[0], dtype=np.float64)
    for w, scores in zip(weights, member_scores, strict=True):
        z += w * scores
    out: FloatArray = z - z.mean(axis=1, keepdims=True)
    return out


class EnsembleModel(ModelInfo):
    """Members (each a :class:`ModelInfo`) and their weights; see the module docstring."""

    def __init__(
        self,
        members: Sequence[ModelInfo],
        weights: Sequence[float],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not members or len(members) != len(weights):
            raise ValueError("an ensemble needs one weight per member, and a member")
        w = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
        if any(m.flavour == FLAVOUR for m in members):
            raise ValueError("an ensemble's members cannot be ensembles")
        self.members = tuple(members)
        self.weights = tuple(float(v) for v in w)
        words = [m for m in members if m.flavour == "tfidf"] or list(members)
        self._word_block = words[0]._word_block
        self.metadata: dict[str, Any] = json.loads(json.dumps(dict(metadata or {})))
        self.metadata["flavour"] = FLAVOUR
        _ = self.calibration

    @property
    def backend(self) -> str:
        return "+".join(dict.fromkeys(m.backend for m in self.members))

    @property
    def size_text(self) -> str:
        parts = (f"{m.flavour} x {w:.2f}" for m, w in zip(self.members, self.weights, strict=True))
        return "ensemble of " + " and ".join(parts)

    def decision_function(self, texts: Sequence[str]) -> FloatArray:
        """The weighted sum of the members' calibrated log-probabilities (n, 3), centred per
        row, columns in class order [-1, 0, 1] (a member of weight 0 is not asked)."""
        none = np.zeros((len(texts), len(CLASSES)))
        scores = [
            log_probabilities(m, texts) if w and len(texts) else none
            for m, w in zip(self.members, self.weights, strict=True)
        ]
        return combine(scores, self.weights)

    def save(self, model_dir: str | Path) -> Path:
        """Each member into ``members/<i>-<flavour>/``, then ``model.json``."""
        root = Path(model_dir)
        root.mkdir(parents=True, exist_ok=True)
        listed = []
        for i, (member, w) in enumerate(zip(self.members, self.weights, strict=True)):
            path = f"{MEMBERS_DIR}/{i}-{member.flavour}"
            member.save(root / path)
            listed.append({"path": path, "flavour": member.flavour, "weight": w})
        self._write_metadata(root, FORMAT, members=listed)
        return root

    @classmethod
    def load(cls, model_dir: str | Path, load_member: Callable[[Path], ModelInfo]) -> EnsembleModel:
        """The ensemble in ``model_dir``, its members loaded by ``load_member`` (the handler's
        ``model_fn``)."""
        root = Path(model_dir)
        meta = json.loads((root / MODEL_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{root / MODEL_FILE}: unsupported format {meta.get('format')!r}")
        listed = meta.get("members")
        if not isinstance(listed, list) or not listed:
            raise ValueError(f"{root / MODEL_FILE}: an ensemble lists its members")
        members, weights = [], []
        for entry in listed:
            path = (root / str(entry["path"])).resolve()
            if not path.is_relative_to(root.resolve()):
                raise ValueError(f"{root / MODEL_FILE}: member {entry['path']!r} is outside it")
            members.append(load_member(path))
            weights.append(float(entry["weight"]))
        return cls(members, weights, {k: v for k, v in meta.items() if k != "members"})

    def __repr__(self) -> str:
        return f"EnsembleModel({self.size_text!r}, name={self.name!r}, version={self.version!r})"
