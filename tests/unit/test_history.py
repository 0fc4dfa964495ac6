"""The history checker on small hand-made histories, with exact verdicts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from stream.events import DeadLetter, Reason, ReviewEvent, SourcePosition
from tests.history import (
    COMMIT_PAST_UNSTORED,
    DECODER_RAISED,
    DUPLICATE,
    INVALID_IN_REVIEWS,
    LOST,
    MISSING_DEAD_LETTER,
    NOT_CAUGHT_UP,
    STRAY_FILE,
    UNKNOWN_ROW,
    VALID_DEAD_LETTERED,
    WRONG_REASON,
    WRONG_REVIEW_ID,
    Expected,
    Produced,
    Report,
    Sample,
    StoredRow,
    check_history,
    decoder,
    expect,
    lake_file_index,
)


def event(review_id: str, category: str = "Dresses") -> bytes:
    return json.dumps(
        {
            "review_id": review_id,
            "product_id": "P-1",
            "product_category": category,
            "review_text": "Lovely fabric, runs small.",
            "channel": "web",
            "event_time": "2026-01-01T10:00:00Z",
            "rating": 4,
        }
    ).encode()


def name(p: int, first: int, last: int) -> str:
    return f"part-kafka-t-{p}-{first:020d}-{last:020d}.parquet"


DRESSES = "reviews/dt=2026-01-01/product_category=Dresses"
KNITS = "reviews/dt=2026-01-01/product_category=Knits"
NOT_JSON = "dlq/dt=2026-12-01/reason=not_json"
NOT_OBJECT = "dlq/dt=2026-12-01/reason=not_object"

PRODUCED = [
    Produced(0, 0, b"k", event("r-0")),
    Produced(0, 1, b"k", b"not json"),
    Produced(0, 2, b"k", event("r-2")),
    Produced(0, 3, b"k", event("r-3", "Knits")),
    Produced(1, 0, b"k", event("r-10")),
    Produced(1, 1, b"k", b"[1]"),
]

FILES = {
    "p0 dresses": f"{DRESSES}/{name(0, 0, 2)}",
    "p0 knits": f"{KNITS}/{name(0, 3, 3)}",
    "p0 dlq": f"{NOT_JSON}/{name(0, 1, 1)}",
    "p1 dresses": f"{DRESSES}/{name(1, 0, 0)}",
    "p1 dlq": f"{NOT_OBJECT}/{name(1, 1, 1)}",
}

ROWS = [
    StoredRow("reviews", FILES["p0 dresses"], 0, 0, review_id="r-0"),
    StoredRow("reviews", FILES["p0 dresses"], 0, 2, review_id="r-2"),
    StoredRow("reviews", FILES["p0 knits"], 0, 3, review_id="r-3"),
    StoredRow("dlq", FILES["p0 dlq"], 0, 1, reason="not_json"),
    StoredRow("reviews", FILES["p1 dresses"], 1, 0, review_id="r-10"),
    StoredRow("dlq", FILES["p1 dlq"], 1, 1, reason="not_object"),
]

END = {0: 4, 1: 2}


def check(
    rows: list[StoredRow] = ROWS,
    samples: list[Sample] | None = None,
    *,
    produced: list[Produced] = PRODUCED,
    committed: dict[int, int] = END,
    files: list[str] | None = None,
) -> Report:
    every = frozenset(FILES.values())
    return check_history(
        produced,
        rows,
        samples if samples is not None else [Sample(1.0, END, every)],
        end_offsets=END,
        final_committed=committed,
        final_files=files if files is not None else sorted(every),
    )


def kinds(report: Report) -> list[tuple[str, int | None, int | None]]:
    return [(v.kind, v.partition, v.offset) for v in report.violations]


def test_a_clean_history_passes() -> None:
    report = check()
    assert report.ok
    assert kinds(report) == []
    assert (report.records, report.valid, report.invalid) == (6, 4, 2)
    assert (report.samples, report.stored_reviews, report.stored_dead_letters) == (1, 4, 2)
    assert report.describe().endswith("no violation")


def test_expect_uses_the_projects_decoder() -> None:
    decode = decoder()
    assert expect(event("r-9"), decode) == Expected(valid=True, review_id="r-9")
    assert expect(b"not json", decode) == Expected(valid=False, reason="not_json")
    assert expect(b"[1]", decode) == Expected(valid=False, reason="not_object")
    long_text = json.loads(event("r-9"))
    long_text["review_text"] = "x" * 600
    small = decoder(max_text_bytes=500)
    assert expect(json.dumps(long_text).encode(), small).reason == "oversize_text"


def test_lost_duplicated_and_misfiled_records_are_each_reported() -> None:
    rows = [
        ROWS[0],  # p0@0 stored once
        ROWS[0],  # ... and again: a duplicate
        # p0@2 lost
        StoredRow("reviews", FILES["p0 knits"], 0, 3, review_id="r-999"),  # wrong id
        StoredRow("dlq", FILES["p0 dlq"], 0, 1, reason="not_object"),  # wrong reason
        StoredRow("reviews", FILES["p0 dresses"], 0, 1, review_id="junk"),  # invalid stored
        StoredRow("dlq", FILES["p1 dlq"], 1, 0, reason="scoring_rejected"),  # valid, dead
        # p1@1 has no dead letter
        StoredRow("reviews", FILES["p1 dresses"], 1, 7, review_id="r-77"),  # nothing produced
    ]
    report = check(rows, samples=[])  # the commits are another test's subject
    assert kinds(report) == [
        (DUPLICATE, 0, 0),
        (INVALID_IN_REVIEWS, 0, 1),
        (WRONG_REASON, 0, 1),
        (LOST, 0, 2),
        (WRONG_REVIEW_ID, 0, 3),
        (VALID_DEAD_LETTERED, 1, 0),
        (MISSING_DEAD_LETTER, 1, 1),
        (UNKNOWN_ROW, 1, 7),
    ]
    assert report.of(WRONG_REASON)[0].detail == "['not_object'] != 'not_json'"
    assert report.of(VALID_DEAD_LETTERED)[0].detail == "reason ['scoring_rejected']"
    assert report.counts() == {
        LOST: 1,
        VALID_DEAD_LETTERED: 1,
        DUPLICATE: 1,
        WRONG_REVIEW_ID: 1,
        MISSING_DEAD_LETTER: 1,
        WRONG_REASON: 1,
        INVALID_IN_REVIEWS: 1,
        UNKNOWN_ROW: 1,
    }
    assert not report.ok


def test_a_commit_past_records_no_file_held_yet_is_reported_once() -> None:
    early = frozenset({f"{DRESSES}/{name(0, 0, 0)}"})  # only p0@0 stored so far
    samples = [
        Sample(0.5, {0: 1}, early),  # p0@0 committed and stored: fine
        Sample(1.0, {0: 3}, early),  # commits p0@1 (no dlq file) and p0@2 (not covered)
        Sample(1.5, {0: 3}, early),  # the same commit again: not reported twice
        Sample(2.0, {0: 4, 1: 2}, frozenset(FILES.values())),
    ]
    report = check(samples=samples)
    assert kinds(report) == [(COMMIT_PAST_UNSTORED, 0, 1), (COMMIT_PAST_UNSTORED, 0, 2)]
    assert report.of(COMMIT_PAST_UNSTORED)[0].detail == "committed 3 at t=1.00s, no file held it"


def test_a_file_of_another_directory_covering_the_offset_does_not_count() -> None:
    # A Knits file spanning offsets 0..3 of partition 0 does not hold the Dresses record p0@2.
    files = frozenset({f"{DRESSES}/{name(0, 0, 0)}", f"{KNITS}/{name(0, 0, 3)}", FILES["p0 dlq"]})
    report = check(samples=[Sample(1.0, {0: 4}, files)])
    assert kinds(report) == [(COMMIT_PAST_UNSTORED, 0, 2)]


def test_a_record_the_lake_lost_after_a_commit_is_lost_and_committed_past() -> None:
    rows = [r for r in ROWS if (r.partition, r.offset) != (0, 2)]
    report = check(rows)
    assert kinds(report) == [(LOST, 0, 2), (COMMIT_PAST_UNSTORED, 0, 2)]
    assert report.of(COMMIT_PAST_UNSTORED)[0].detail.endswith("never stored")


def test_commits_are_checked_in_time_order() -> None:
    samples = [Sample(2.0, {0: 4}, frozenset(FILES.values())), Sample(1.0, {0: 2}, frozenset())]
    assert kinds(check(samples=samples)) == [
        (COMMIT_PAST_UNSTORED, 0, 0),
        (COMMIT_PAST_UNSTORED, 0, 1),
    ]


def test_a_group_that_did_not_catch_up_is_reported_per_partition() -> None:
    report = check(committed={0: 4})
    assert kinds(report) == [(NOT_CAUGHT_UP, 1, None)]
    assert report.of(NOT_CAUGHT_UP)[0].detail == "committed 0, end 2"


def test_temporary_files_a_glob_reads_are_stray() -> None:
    stray = f"{DRESSES}/.tmp-abc123.parquet"
    report = check(files=[*FILES.values(), stray, "alerts/dt=2026-01-01/.tmp-x.parquet"])
    assert kinds(report) == [(STRAY_FILE, None, None)]
    assert report.of(STRAY_FILE)[0].detail == stray


def test_a_decoder_that_raises_is_reported_and_the_record_must_be_a_dead_letter() -> None:
    boom = [Produced(0, 0, None, b"boom"), Produced(0, 1, None, b"boom")]

    def decode(raw: bytes) -> ReviewEvent | DeadLetter:
        if raw == b"boom":
            raise ValueError("exceeds the limit (4300 digits)")
        pos = SourcePosition("kafka", "t", "0", 0)
        return DeadLetter(raw, Reason.NOT_JSON, "", pos, datetime(2026, 1, 1, tzinfo=UTC))

    rows = [StoredRow("dlq", f"{NOT_JSON}/{name(0, 0, 0)}", 0, 0, reason="not_json")]
    report = check_history(
        boom, rows, [], end_offsets={0: 2}, final_committed={0: 2}, decode=decode
    )
    assert kinds(report) == [
        (DECODER_RAISED, 0, 0),
        (DECODER_RAISED, 0, 1),
        (MISSING_DEAD_LETTER, 0, 1),
    ]
    assert report.of(DECODER_RAISED)[0].detail == "ValueError: exceeds the limit (4300 digits)"
    assert report.invalid == 2


def test_the_file_index_reads_ranges_and_old_names() -> None:
    index = lake_file_index(
        [
            f"{DRESSES}/{name(0, 10, 20)}",
            f"{DRESSES}/{name(0, 30, 35)}",
            f"{DRESSES}/part-kafka-t-0-{50:020d}.parquet",  # an older name: first only
            f"{DRESSES}/.tmp-x.parquet",
            f"alerts/dt=2026-01-01/{name(0, 0, 99)}",
        ]
    )
    assert set(index) == {(DRESSES, 0)}
    ranges = index[(DRESSES, 0)]
    covered = [o for o in range(60) if ranges.covers(o)]
    assert covered == [*range(10, 21), *range(30, 36), 50]
