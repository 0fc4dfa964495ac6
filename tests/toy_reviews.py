"""A tiny, perfectly separable reviews CSV for command-line tests of training."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_toy_reviews"]

WORDS = ("awful broken", "fine okay", "lovely great")


def write_toy_reviews(path: Path, rows: int) -> Path:
    """``rows`` reviews (sentiment, review_body), the classes -1/0/1 in turn, each with words
    only its class uses; returns ``path``."""
    path.write_text(
        "sentiment,review_body\n"
        + "".join(f"{i % 3 - 1},{WORDS[i % 3]} item {i}\n" for i in range(rows)),
        encoding="utf-8",
    )
    return path
