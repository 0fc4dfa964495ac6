"""A checker for the history of a Kafka run, in the style of Kafka's system tests.

A fault-injection test records three things while workers run, and this module judges them:

* what was produced: every record of the input topic with its partition and offset
  (:class:`Produced`); whether it is valid is decided by the project's own decoder
  (:func:`stream.validation.decode_event`), see :func:`expect`;
* samples taken every ~150 ms (:class:`Sample`): the group's committed offset of each partition
  and, read just after, the lake files that existed at that moment (their names give the source
  partition and the offset range they hold, see :func:`sinks.lake.parse_file_range`);
* the end state: every row of the lake's ``reviews/`` and ``dlq/`` tables (:class:`StoredRow`),
  the topic's end offsets and the group's final committed offsets.

:func:`check_history` answers with a :class:`Report` listing every :class:`Violation`:

* every valid record is in ``reviews`` exactly once (with its ``review_id``), and not a dead
  letter;
* every invalid record is a dead letter exactly once, with the decoder's reason, and not in
  ``reviews`` (a record the decoder raised on counts as invalid, any reason, and is reported);
* no commit past unstored data: at every sample, every record below its partition's committed
  offset is covered by a file that exists in the directory where the record ends up (checked at
  the first sample whose commit passes the record; the final lake check catches a stored record
  that disappears later);
* the group caught up: final committed offset == end offset on every partition;
* no stray files: nothing under ``reviews/`` or ``dlq/`` that a ``**/*.parquet`` glob reads but
  that is not a lake file (for example a temporary file left by a crash).

Pure and synchronous: the recording happens in ``tests/servers/kafka_history.py``.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from sinks.lake import parse_file_range
from stream.events import DeadLetter, ReviewEvent, SourcePosition
from stream.validation import DEFAULT_MAX_TEXT_BYTES, decode_event

__all__ = [
    "COMMIT_PAST_UNSTORED",
    "DECODER_RAISED",
    "DUPLICATE",
    "DUPLICATE_DEAD_LETTER",
    "INVALID_IN_REVIEWS",
    "KINDS",
    "LOST",
    "MISSING_DEAD_LETTER",
    "NOT_CAUGHT_UP",
    "STRAY_FILE",
    "UNKNOWN_ROW",
    "VALID_DEAD_LETTERED",
    "WRONG_REASON",
    "WRONG_REVIEW_ID",
    "Expected",
    "Produced",
    "Report",
    "Sample",
    "StoredRow",
    "Violation",
    "check_history",
    "decoder",
    "expect",
    "lake_file_index",
]

LOST: Final = "lost"
"""A valid record is neither in ``reviews`` nor a dead letter."""
VALID_DEAD_LETTERED: Final = "valid_dead_lettered"
"""A valid record is not in ``reviews`` but in ``dlq`` (detail: its reason)."""
DUPLICATE: Final = "duplicate"
"""A record is in ``reviews`` more than once."""
WRONG_REVIEW_ID: Final = "wrong_review_id"
"""The ``reviews`` row at a record's position has another ``review_id``."""
MISSING_DEAD_LETTER: Final = "missing_dead_letter"
"""An invalid record is not in ``dlq``."""
DUPLICATE_DEAD_LETTER: Final = "duplicate_dead_letter"
"""An invalid record is in ``dlq`` more than once."""
WRONG_REASON: Final = "wrong_reason"
"""An invalid record's dead letter gives another reason than the decoder."""
INVALID_IN_REVIEWS: Final = "invalid_in_reviews"
"""An invalid record is in ``reviews``."""
DECODER_RAISED: Final = "decoder_raised"
"""The decoder raised on a record instead of answering (it must never raise)."""
UNKNOWN_ROW: Final = "unknown_row"
"""A lake row at a position where nothing was produced."""
COMMIT_PAST_UNSTORED: Final = "commit_past_unstored"
"""The group committed past a record that no lake file held at that moment."""
NOT_CAUGHT_UP: Final = "not_caught_up"
"""At the end the committed offset of a partition is not its end offset."""
STRAY_FILE: Final = "stray_file"
"""A ``*.parquet`` file under ``reviews/`` or ``dlq/`` that is not a lake file."""

KINDS: Final = (
    LOST,
    VALID_DEAD_LETTERED,
    DUPLICATE,
    WRONG_REVIEW_ID,
    MISSING_DEAD_LETTER,
    DUPLICATE_DEAD_LETTER,
    WRONG_REASON,
    INVALID_IN_REVIEWS,
    DECODER_RAISED,
    UNKNOWN_ROW,
    COMMIT_PAST_UNSTORED,
    NOT_CAUGHT_UP,
    STRAY_FILE,
)

_TABLES: Final = ("reviews", "dlq")


@dataclass(frozen=True, slots=True)
class Produced:
    """A record of the input topic as the broker holds it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One row of the final lake: its table (``reviews`` or ``dlq``), the path of its file
    relative to the lake root, its source position, and its ``review_id`` (reviews) or
    ``reason`` (dead letters)."""

    table: str
    path: str
    partition: int
    offset: int
    review_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """The group's committed offsets (partition -> next offset to read) at one moment, and the
    lake files (paths relative to the lake root) listed right after."""

    at: float
    committed: Mapping[int, int]
    files: frozenset[str]


@dataclass(frozen=True, slots=True)
class Expected:
    """What should become of a record: a review (``review_id``) or a dead letter
    (``reason``). ``raised`` is set when the decoder raised on it (then any reason will do)."""

    valid: bool
    review_id: str | None = None
    reason: str | None = None
    raised: str | None = None


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    partition: int | None
    offset: int | None
    detail: str

    def __str__(self) -> str:
        where = "" if self.partition is None else f" p{self.partition}"
        where += "" if self.offset is None else f"@{self.offset}"
        return f"{self.kind}{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Report:
    """The checker's verdict over one run."""

    violations: tuple[Violation, ...]
    records: int
    valid: int
    invalid: int
    samples: int
    stored_reviews: int
    stored_dead_letters: int

    @property
    def ok(self) -> bool:
        return not self.violations

    def counts(self) -> dict[str, int]:
        """Violations per kind (kinds without any left out)."""
        found = Counter(v.kind for v in self.violations)
        return {k: found[k] for k in KINDS if found[k]}

    def of(self, kind: str) -> list[Violation]:
        return [v for v in self.violations if v.kind == kind]

    def describe(self, examples: int = 3) -> str:
        head = (
            f"{self.records} records ({self.valid} valid, {self.invalid} invalid), "
            f"{self.samples} samples; lake: {self.stored_reviews} reviews, "
            f"{self.stored_dead_letters} dead letters"
        )
        if self.ok:
            return head + "; no violation"
        lines = [head + f"; violations: {self.counts()}"]
        for kind in self.counts():
            lines += [f"  {v}" for v in self.of(kind)[:examples]]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


# -- what each record should become ------------------------------------------------------------

Decoder = Callable[[bytes], ReviewEvent | DeadLetter]


def decoder(
    *, received_at: datetime | None = None, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
) -> Decoder:
    """The project's decoder as the worker runs it: ``decode_event`` with the worker's
    settings and ``received_at`` (default: now, so that rules relative to the arrival time
    judge as they did in the run)."""
    when = received_at or datetime.now(UTC)
    position = SourcePosition("kafka", "history", "0", 0)

    def decode(raw: bytes) -> ReviewEvent | DeadLetter:
        return decode_event(raw, position, when, max_text_bytes=max_text_bytes)

    return decode


def expect(value: bytes, decode: Decoder) -> Expected:
    """What ``decode`` says ``value`` must become."""
    try:
        out = decode(value)
    except Exception as err:  # noqa: BLE001 - a raising decoder is a finding, not a crash
        return Expected(valid=False, raised=f"{type(err).__name__}: {str(err)[:120]}")
    if isinstance(out, ReviewEvent):
        return Expected(valid=True, review_id=out.review_id)
    return Expected(valid=False, reason=out.reason.value)


# -- lake files --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Ranges:
    """Offset ranges of one (directory, partition): sorted firsts and the running maximum of
    lasts, so "some file covers offset o" is one bisection."""

    firsts: list[int] = field(default_factory=list)
    max_lasts: list[int] = field(default_factory=list)

    def covers(self, offset: int) -> bool:
        i = bisect.bisect_right(self.firsts, offset)
        return i > 0 and self.max_lasts[i - 1] >= offset


def lake_file_index(files: Iterable[str]) -> dict[tuple[str, int], _Ranges]:
    """(directory, source partition) -> the offset ranges of its lake files. Paths that are
    not lake files (or not under ``reviews/`` and ``dlq/``) are left out."""
    spans: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for path in files:
        directory, _, name = path.rpartition("/")
        if directory.split("/", 1)[0] not in _TABLES:
            continue
        parsed = parse_file_range(name)
        if parsed is None or not parsed[0][2].isdigit():
            continue
        (_source, _stream, partition), first, last = parsed
        spans[(directory, int(partition))].append((first, first if last is None else last))
    index: dict[tuple[str, int], _Ranges] = {}
    for slot, ranges in spans.items():
        ranges.sort()
        r = _Ranges()
        top = -1
        for first, last in ranges:
            top = max(top, last)
            r.firsts.append(first)
            r.max_lasts.append(top)
        index[slot] = r
    return index


def _stray(files: Iterable[str]) -> list[str]:
    return sorted(
        p
        for p in files
        if p.split("/", 1)[0] in _TABLES
        and p.endswith(".parquet")
        and parse_file_range(p.rpartition("/")[2]) is None
    )


# -- the checker -------------------------------------------------------------------------------


def check_history(
    produced: Sequence[Produced],
    rows: Sequence[StoredRow],
    samples: Sequence[Sample],
    *,
    end_offsets: Mapping[int, int],
    final_committed: Mapping[int, int],
    final_files: Iterable[str] = (),
    decode: Decoder | None = None,
) -> Report:
    """Judge one run (see the module docstring). ``decode`` decides validity (default:
    :func:`decoder` with the default settings)."""
    decode = decode or decoder()
    out: list[Violation] = []
    by_position: dict[tuple[int, int], list[StoredRow]] = defaultdict(list)
    for row in rows:
        by_position[(row.partition, row.offset)].append(row)
    expected = {(r.partition, r.offset): expect(r.value, decode) for r in produced}

    for (p, o), exp in sorted(expected.items()):
        here = by_position.get((p, o), [])
        reviews = [r for r in here if r.table == "reviews"]
        dead = [r for r in here if r.table == "dlq"]
        if exp.raised is not None:
            out.append(Violation(DECODER_RAISED, p, o, exp.raised))
        if exp.valid:
            if not reviews:
                if dead:
                    reasons = sorted({str(d.reason) for d in dead})
                    out.append(Violation(VALID_DEAD_LETTERED, p, o, f"reason {reasons}"))
                else:
                    out.append(Violation(LOST, p, o, f"review {exp.review_id!r} not in the lake"))
                continue
            if len(reviews) > 1:
                out.append(Violation(DUPLICATE, p, o, f"{len(reviews)} rows in reviews"))
            wrong = {r.review_id for r in reviews} - {exp.review_id}
            if wrong:
                out.append(
                    Violation(
                        WRONG_REVIEW_ID, p, o, f"{sorted(map(str, wrong))} != {exp.review_id!r}"
                    )
                )
            if dead:
                out.append(Violation(VALID_DEAD_LETTERED, p, o, "also a dead letter"))
            continue
        if reviews:
            out.append(Violation(INVALID_IN_REVIEWS, p, o, f"{len(reviews)} rows in reviews"))
        if not dead:
            why = exp.reason if exp.raised is None else "decoder raised"
            out.append(Violation(MISSING_DEAD_LETTER, p, o, f"expected reason {why}"))
            continue
        if len(dead) > 1:
            out.append(Violation(DUPLICATE_DEAD_LETTER, p, o, f"{len(dead)} rows in dlq"))
        if exp.reason is not None:
            got = sorted({str(d.reason) for d in dead} - {exp.reason})
            if got:
                out.append(Violation(WRONG_REASON, p, o, f"{got} != {exp.reason!r}"))

    for (p, o), here in sorted(by_position.items()):
        if (p, o) not in expected:
            tables = sorted({r.table for r in here})
            out.append(Violation(UNKNOWN_ROW, p, o, f"rows in {tables} for no produced record"))

    out += _commits(produced, by_position, samples)

    for p in sorted(set(end_offsets) | set(final_committed)):
        end, committed = end_offsets.get(p, 0), final_committed.get(p, 0)
        if committed != end:
            out.append(Violation(NOT_CAUGHT_UP, p, None, f"committed {committed}, end {end}"))

    out += [Violation(STRAY_FILE, None, None, path) for path in _stray(final_files)]
    return Report(
        violations=tuple(out),
        records=len(expected),
        valid=sum(e.valid for e in expected.values()),
        invalid=sum(not e.valid for e in expected.values()),
        samples=len(samples),
        stored_reviews=sum(r.table == "reviews" for r in rows),
        stored_dead_letters=sum(r.table == "dlq" for r in rows),
    )


def _commits(
    produced: Sequence[Produced],
    by_position: Mapping[tuple[int, int], list[StoredRow]],
    samples: Sequence[Sample],
) -> list[Violation]:
    """Each record is checked at the first sample whose commit passes it: some file of the
    directory it ends up in (any, for a record the lake lost) must cover its offset."""
    offsets: dict[int, list[int]] = defaultdict(list)
    for r in produced:
        offsets[r.partition].append(r.offset)
    for values in offsets.values():
        values.sort()
    homes = {
        pos: {row.path.rpartition("/")[0] for row in rows} for pos, rows in by_position.items()
    }
    checked: dict[int, int] = {}  # partition -> committed offset already checked below
    out: list[Violation] = []
    for sample in sorted(samples, key=lambda s: s.at):
        index: dict[tuple[str, int], _Ranges] | None = None
        for p, committed in sorted(sample.committed.items()):
            done = checked.get(p, 0)
            if committed <= done or p not in offsets:
                continue
            checked[p] = committed
            values = offsets[p]
            lo = bisect.bisect_left(values, done)
            hi = bisect.bisect_left(values, committed)
            if lo >= hi:
                continue
            if index is None:
                index = lake_file_index(sample.files)
            for o in values[lo:hi]:
                dirs = homes.get((p, o), set())
                if not any((d, p) in index and index[(d, p)].covers(o) for d in dirs):
                    out.append(
                        Violation(
                            COMMIT_PAST_UNSTORED,
                            p,
                            o,
                            f"committed {committed} at t={sample.at:.2f}s, "
                            + ("no file held it" if dirs else "never stored"),
                        )
                    )
    return out
