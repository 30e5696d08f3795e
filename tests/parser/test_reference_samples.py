"""The vendor's published callback samples, when a local copy is at hand.

They are third-party data and not part of the project: set ``CALLBACK_FANOUT_REFERENCE_DIR``
to a directory holding them (``docs-<family>-<Tag>-<origin>-<hash>.<ext>`` and
``SOURCES-docs.tsv``) to run these tests.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from shared.callbacks.events import CallbackEvent
from shared.callbacks.parser import parse_callback
from shared.errors import ParseError

REFERENCE_VARIABLE = "CALLBACK_FANOUT_REFERENCE_DIR"
UNBALANCED = "docs-ci-TaskFinish-api-81f15325.json"


def _reference_dir() -> Path | None:
    value = os.environ.get(REFERENCE_VARIABLE)
    return Path(value) if value else None


REFERENCE = _reference_dir()
pytestmark = pytest.mark.skipif(
    REFERENCE is None,
    reason=f"set {REFERENCE_VARIABLE} to a directory of the vendor's sample callbacks",
)


def test_the_reference_directory_named_holds_the_samples() -> None:
    """A mistyped directory fails here rather than skipping every sample."""
    assert REFERENCE is not None
    assert REFERENCE.is_dir(), f"{REFERENCE_VARIABLE}={REFERENCE} is not a directory"
    assert len(_samples()) >= 100, f"{REFERENCE} holds {len(_samples())} samples"
    assert (REFERENCE / "SOURCES-docs.tsv").is_file()


def _samples() -> list[Path]:
    if REFERENCE is None or not REFERENCE.is_dir():
        return []
    return sorted(p for p in REFERENCE.glob("docs-*.*") if p.suffix in (".xml", ".json"))


def _invalid_as_published() -> set[str]:
    assert REFERENCE is not None
    with (REFERENCE / "SOURCES-docs.tsv").open(encoding="utf-8") as listing:
        rows = csv.reader((line for line in listing if not line.startswith("#")), delimiter="\t")
        return {row[0] for row in rows if len(row) > 3 and row[3] == "INVALID"}


def _name_parts(path: Path) -> tuple[str, str]:
    """(family, tag) from ``docs-<family>-<Tag>-<origin>-<hash>``."""
    _, family, tag, *_ = path.stem.split("-")
    return family, tag


@pytest.mark.parametrize(
    "path", [p for p in _samples() if p.name != UNBALANCED], ids=lambda p: p.name
)
def test_every_published_sample_parses_into_events(path: Path) -> None:
    events = parse_callback(path.read_bytes())
    assert events
    family, tag = _name_parts(path)
    invalid = path.name in _invalid_as_published()
    for event in events:
        assert event.repaired == invalid
        assert CallbackEvent.model_validate_json(event.model_dump_json()) == event
        words = event.routing_key.split(".")
        assert len(words) == 3
        if family == "audit":
            assert event.event_name == tag
            assert words[2] in {"Pass", "Block", "Review"}
        elif tag == "WorkflowFinish":
            assert event.workflow_execution is not None
            assert event.workflow_execution.tasks
        elif tag == "TaskFinish":
            assert event.tag == "Unknown"
        else:
            assert (event.event_name, event.tag) == ("TaskFinish", tag)
            assert event.job_id


def test_the_sample_whose_brackets_do_not_balance_is_refused_with_the_reason() -> None:
    assert REFERENCE is not None
    with pytest.raises(ParseError) as raised:
        parse_callback((REFERENCE / UNBALANCED).read_bytes())
    assert "brackets do not balance" in raised.value.reason
    assert raised.value.location == "line 60, column 5"


def test_the_samples_invalid_as_published_are_the_ones_marked_repaired() -> None:
    invalid = _invalid_as_published()
    assert UNBALANCED in invalid
    repaired = {
        path.name
        for path in _samples()
        if path.name != UNBALANCED and parse_callback(path.read_bytes())[0].repaired
    }
    assert repaired == invalid - {UNBALANCED}
    assert len(repaired) == 3
