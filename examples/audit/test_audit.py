"""The audit consumer through the test kit: its startup, its table and its dedupe."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from audit import DB_ENV, Audit

from workers.testing.plugin import FanoutKit


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "audit.sqlite3"
    monkeypatch.setenv(DB_ENV, str(path))
    return path


def rows(database: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT idempotency_key, routing_key FROM audit").fetchall()


async def test_an_event_is_kept_once_and_its_copy_is_dropped(
    fanout: FanoutKit, database: Path
) -> None:
    event = fanout.make_event(tag="Snapshot", state="Success")
    async with fanout.harness(Audit) as harness:  # runs startup, then shutdown
        first = await harness.deliver(event)
        copy = await harness.deliver(event)
    assert (first.kind, copy.kind) == ("handled", "duplicate")
    assert rows(database) == [(event.idempotency_key, "TaskFinish.Snapshot.Success")]


async def test_every_job_of_a_callback_is_kept_whatever_its_kind(
    fanout: FanoutKit, database: Path
) -> None:
    async with fanout.harness(Audit) as harness:
        outcomes = await harness.feed(fanout.seed("ocr.1.xml"))
        outcomes += await harness.feed(fanout.seed("translation.1.json"))
    assert [o.kind for o in outcomes] == ["handled", "handled"]
    assert [routing_key for _, routing_key in rows(database)] == [
        "TaskFinish.ImageOCR.Success",
        "TaskFinish.Translation.Success",
    ]
