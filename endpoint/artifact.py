"""Build the SageMaker model artifact ``model.tar.gz``.

Layout (what SageMaker unpacks into ``/opt/ml/model``)::

    model.json                the model files, at the archive root
    weights.npz
    MODEL_CARD.md             the model card, rendered from model.json
    code/inference.py         the handler (``SAGEMAKER_PROGRAM=inference.py``)
    code/model.py             numpy-only inference, loaded by inference.py from beside it
    code/explain.py           per-term explanations (numpy only), loaded the same way
    code/requirements.txt     numpy only

A transformer flavour (``endpoint.transformer``) has ``encoder.safetensors``,
``tokenizer.json`` and ``vocabulary.txt`` in place of ``weights.npz``, ``code/transformer.py``
besides, and requirements numpy, scipy, tokenizers, safetensors, onnx and onnxruntime (no
torch, no jax); the SageMaker container installs them from ``code/requirements.txt`` when it
starts. An ensemble (``endpoint.ensemble``) has its ``model.json`` at the root, each member's
files under ``members/<i>-<flavour>/``, ``code/ensemble.py``, and the code and requirements of
its members.

The archive is reproducible: entries are sorted, with fixed timestamps, owners and modes, so
the same model gives the same bytes. The model is loaded once before packaging, so a broken
model directory fails here rather than in the container.

Public API::

    build_artifact(out="model.tar.gz", model_dir=<shipped model>) -> Path
    artifact_members(model_dir) -> dict[str, bytes]     # archive path -> content
    REQUIREMENTS                                          # content of code/requirements.txt
    python -m endpoint.artifact [--model-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

from .card import CARD_FILE, model_card
from .ensemble import EnsembleModel
from .inference import model_fn
from .model import MODEL_FILE, WEIGHTS_FILE, ModelInfo, SentimentModel
from .transformer import ENCODER_FILE, TOKENIZER_FILE, VOCABULARY_FILE

__all__ = ["REQUIREMENTS", "artifact_members", "build_artifact", "main"]

_HERE = Path(__file__).resolve().parent
#: ``code/requirements.txt``: the handler needs numpy and nothing else.
REQUIREMENTS = "numpy>=1.24\n"
#: ``code/requirements.txt`` of a transformer flavour: its tokenizer, its tensor file, ONNX
#: Runtime with onnx to build the graph (scipy's error function for numpy's fallback);
#: nothing of torch or jax.
TRANSFORMER_REQUIREMENTS = (
    "numpy>=1.24\nscipy>=1.10\ntokenizers>=0.20\nsafetensors>=0.4\nonnx>=1.15\nonnxruntime>=1.17\n"
)
#: Handler modules copied into ``code/`` (and ``transformer.py``, ``ensemble.py`` for the
#: flavours that need them).
_CODE_FILES = ("inference.py", "model.py", "explain.py")


def _default_model_dir() -> Path:
    return _HERE / "model_data"


def artifact_members(model_dir: str | Path | None = None) -> dict[str, bytes]:
    """Archive path -> file content, after checking that the model loads."""
    root = Path(model_dir) if model_dir is not None else _default_model_dir()
    members, code = _model_files(root, model_fn(root), "")
    # the card of this model.json, rendered again: a card on disk may be older than it
    members[CARD_FILE] = model_card(json.loads(members[MODEL_FILE])).encode()
    for name in (*_CODE_FILES, *sorted(code)):
        members[f"code/{name}"] = (_HERE / name).read_bytes()
    needs = TRANSFORMER_REQUIREMENTS if "transformer.py" in code else REQUIREMENTS
    members["code/requirements.txt"] = needs.encode()
    return members


def _model_files(root: Path, model: ModelInfo, prefix: str) -> tuple[dict[str, bytes], set[str]]:
    """The files of the model loaded from ``root`` under archive path ``prefix``, and the
    handler modules beyond :data:`_CODE_FILES` that loading it takes."""
    if isinstance(model, SentimentModel):
        names: tuple[str, ...] = (MODEL_FILE, WEIGHTS_FILE)
        code: set[str] = set()
    elif isinstance(model, EnsembleModel):
        names, code = (MODEL_FILE,), {"ensemble.py"}
    else:
        names, code = (
            (MODEL_FILE, ENCODER_FILE, TOKENIZER_FILE, VOCABULARY_FILE),
            {"transformer.py"},
        )
    files = {f"{prefix}{name}": (root / name).read_bytes() for name in names}
    if isinstance(model, EnsembleModel):
        listed = json.loads(files[f"{prefix}{MODEL_FILE}"])["members"]
        for entry, member in zip(listed, model.members, strict=True):
            more, needs = _model_files(root / entry["path"], member, f"{prefix}{entry['path']}/")
            files.update(more)
            code |= needs
    return files, code


def build_artifact(out: str | Path = "model.tar.gz", model_dir: str | Path | None = None) -> Path:
    """Write the artifact to ``out`` (parent directories created) and return its path."""
    members = artifact_members(model_dir)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        code_dir = tarfile.TarInfo("code")
        code_dir.type = tarfile.DIRTYPE
        code_dir.mode = 0o755
        tar.addfile(code_dir)
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m endpoint.artifact", description="Build the SageMaker model.tar.gz."
    )
    parser.add_argument("--model-dir", type=Path, default=_default_model_dir())
    parser.add_argument("--out", type=Path, default=Path("model.tar.gz"))
    args = parser.parse_args(argv)
    path = build_artifact(args.out, args.model_dir)
    sys.stdout.write(f"{path} ({path.stat().st_size} bytes)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
