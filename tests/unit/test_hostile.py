"""The hostile-record strategies: reproducible, and every kind is drawn."""

from __future__ import annotations

import json
import re

from tests.hostile import STRING_FIELDS, hostile_corpus


def _doc(value: bytes) -> dict[str, object] | None:
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def test_the_same_seed_draws_the_same_corpus() -> None:
    assert hostile_corpus(40, 3) == hostile_corpus(40, 3)
    assert hostile_corpus(40, 3) != hostile_corpus(40, 4)
    assert len(hostile_corpus(40, 3)) == 40


def test_every_kind_is_in_a_corpus() -> None:
    corpus = hostile_corpus(300, 16)
    surrogate_fields = set()
    for value in corpus:
        doc = _doc(value) if b"\\ud800" in value else None
        if doc is not None:
            surrogate_fields |= {k for k in STRING_FIELDS if "\ud800" in str(doc.get(k, ""))}
    assert surrogate_fields == set(STRING_FIELDS)
    assert any(re.search(rb": 9{4301,}[,}]", v) for v in corpus)
    docs = [d for d in map(_doc, corpus) if d is not None]
    assert {"0001", "9999"} <= {str(d.get("event_time"))[:4] for d in docs}
    assert any(len(str(d.get("product_category")).encode()) >= 300 for d in docs)
    assert any(b"[" * 5_000 in v for v in corpus)
    assert any(len(str(d.get("attachment", ""))) >= 40_000 for d in docs)
    assert any(_doc(v) is None and not v.startswith(b"{") for v in corpus)  # plain bytes
