"""A script that loads a model archive's handler as a SageMaker framework container does:
``code/`` on ``sys.path``, ``import inference``, ``model_fn(model_dir)``, in a fresh
interpreter (run it with ``python -I -c``; argv[1] is the unpacked archive) where the modules
named ``blocked`` cannot be imported."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["container_script"]

_PREAMBLE = r"""
import importlib, importlib.abc, json, sys

BLOCKED = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"the artifact must not import {{name}}")
        return None

sys.meta_path.insert(0, Block())
model_dir, given = sys.argv[1], json.loads(sys.stdin.read())
sys.path.insert(0, model_dir + "/code")
handler = importlib.import_module("inference")
model = handler.model_fn(model_dir)
"""


def container_script(blocked: Sequence[str], body: str) -> str:
    """The preamble, then ``body``, which may use ``handler``, ``model`` and ``given`` (the
    JSON read from standard input)."""
    return _PREAMBLE.format(blocked=tuple(blocked)) + body
