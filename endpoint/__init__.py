"""The sentiment model, its SageMaker handler and the local SageMaker-compatible endpoint.

Imports nothing else of this project: the SageMaker artifact (``endpoint.artifact``) ships
``model.py``, ``inference.py`` and ``explain.py`` alone. Modules: ``model`` (numpy
inference), ``tokens`` (the model's batch tokenizer, where pyarrow is installed; the monitors
use it too), ``explain`` (exact per-term contributions, global importance), ``inference``
(handler contract), ``train`` (scikit-learn), ``transformer`` and ``finetune`` (the
fine-tuned flavours), ``ensemble`` and ``stack`` (the stacked flavour), ``select`` (the
search), ``artifact`` (model.tar.gz), ``server`` (local endpoint), ``cli`` (typer sub-apps).
"""

from .model import CLASSES, LABELS, InvalidInput, SentimentModel

__all__ = ["CLASSES", "LABELS", "InvalidInput", "SentimentModel"]
