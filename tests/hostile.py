"""Hostile records a producer can send, as hypothesis strategies.

:func:`hostile_records` draws raw record bytes of these kinds, each built from a valid event so
that the one thing wrong with it is what the kind names:

* ``any bytes``: arbitrary binary;
* ``surrogate``: an unpaired surrogate ``\\ud800`` (JSON-escaped, as a producer's encoder
  writes it) in one string field, each field in turn;
* ``huge integer``: a 4,301 to 6,000-digit integer as the rating, the product id or an unknown
  field (past Python's 4,300-digit conversion limit);
* ``extreme year``: event times in years 0001 and 9999, with offsets that push them out of range
  once converted to UTC;
* ``long category``: a product category of 100-256 characters from far Unicode planes, at
  least 300 UTF-8 bytes (past a file-name component and, prefixed, an S3 key);
* ``deep nesting``: an unknown field nested 50 to 100,000 levels;
* ``big unknown field``: an unknown field of 40-45 KB.

:func:`hostile_corpus` turns the strategy into a fixed list (seeded, no example database), for
mixing into a stream; property tests use :func:`hostile_records` with ``@given`` directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

__all__ = ["KINDS", "STRING_FIELDS", "hostile_corpus", "hostile_records"]

STRING_FIELDS: Final = (
    "review_id",
    "product_id",
    "product_category",
    "review_text",
    "channel",
    "event_time",
    "language",
    "customer_segment",
)

KINDS: Final = (
    "any bytes",
    "surrogate",
    "huge integer",
    "extreme year",
    "long category",
    "deep nesting",
    "big unknown field",
)

_EXTREME_TIMES: Final = (
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:30:00+00:45",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:00:00-23:59",
)


def _base(review_id: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "review_id": review_id,
        "product_id": "DR-1001",
        "product_category": "Dresses",
        "review_text": "The fabric is soft and the fit is true to size.",
        "channel": "web",
        "event_time": "2026-01-01T12:00:00Z",
        "rating": 5,
        "language": "en",
        "customer_segment": "returning",
    }


def _dump(doc: dict[str, Any]) -> str:
    # ASCII escapes: a lone surrogate travels as "\ud800", as JSON encoders write it.
    return json.dumps(doc, ensure_ascii=True)


def _append_raw(doc: dict[str, Any], name: str, raw_json: str) -> bytes:
    """``doc`` with field ``name`` set to ``raw_json`` verbatim (text json.dumps cannot make)."""
    doc = {k: v for k, v in doc.items() if k != name}
    text = _dump(doc)
    return f'{text[:-1]}, "{name}": {raw_json}}}'.encode()


def _surrogate(rid: str, name: str, at_end: bool) -> bytes:
    doc = _base(rid)
    value = str(doc.get(name, ""))
    doc[name] = value + "\ud800" if at_end else "\ud800" + value
    return _dump(doc).encode()


def _huge_integer(rid: str, digits: int, name: str) -> bytes:
    return _append_raw(_base(rid), name, "9" * digits)


def _extreme_year(rid: str, when: str) -> bytes:
    doc = _base(rid)
    doc["event_time"] = when
    return _dump(doc).encode()


def _long_category(rid: str, category: str) -> bytes:
    doc = _base(rid)
    doc["product_category"] = category
    return json.dumps(doc, ensure_ascii=False).encode()


def _deep(rid: str, depth: int) -> bytes:
    return _append_raw(_base(rid), "nested", "[" * depth + "]" * depth)


def _big_unknown(rid: str, size: int) -> bytes:
    doc = _base(rid)
    doc["attachment"] = "x" * size
    return _dump(doc).encode()


def _ids() -> st.SearchStrategy[str]:
    return st.uuids().map(lambda u: f"hostile-{u}")


def _long_text() -> st.SearchStrategy[str]:
    letters = st.characters(min_codepoint=0x800, max_codepoint=0x2FFFF, exclude_categories=["Cs"])
    return st.text(letters, min_size=100, max_size=256).filter(
        lambda s: len(s.encode("utf-8")) >= 300 and s.strip() != ""
    )


def hostile_records() -> st.SearchStrategy[bytes]:
    """Raw record bytes of every kind in :data:`KINDS`."""
    ids = _ids()
    kinds: list[st.SearchStrategy[bytes]] = [
        st.binary(max_size=512),
        st.builds(_surrogate, ids, st.sampled_from(STRING_FIELDS), st.booleans()),
        st.builds(
            _huge_integer,
            ids,
            st.integers(4_301, 6_000),
            st.sampled_from(("rating", "product_id", "visits")),
        ),
        st.builds(_extreme_year, ids, st.sampled_from(_EXTREME_TIMES)),
        st.builds(_long_category, ids, _long_text()),
        st.builds(_deep, ids, st.sampled_from((50, 500, 990, 5_000, 100_000))),
        st.builds(_big_unknown, ids, st.integers(40_000, 45_000)),
    ]
    return st.one_of(kinds)


def hostile_corpus(n: int, seed_value: int) -> list[bytes]:
    """``n`` draws of :func:`hostile_records`, the same for the same seed (each kind in turn,
    so every kind is there in equal shares)."""
    found: list[bytes] = []
    strategy = hostile_records()

    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_value)
    @given(strategy)
    def collect(value: bytes) -> None:
        found.append(value)

    run: Callable[[], None] = collect
    run()
    return found[:n]
