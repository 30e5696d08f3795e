"""``archive-files``: JSON Lines, one file per hour (UTC), gzip when the hour is over."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.builtin.conftest import StartWith, observed
from tests.conftest import SEEDS
from tests.support.system import Recorder
from tests.support.waiting import eventually
from workers.builtin import archive_files
from workers.consumer import ConsumerSpec, LoadedConsumer

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()
TRANSLATION = (SEEDS / "translation.1.xml").read_bytes()
SPEC = ConsumerSpec(name="files", routes=("TaskFinish.#",), retry_delays=(0.2,), max_attempts=3)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def files_consumer(directory: Path, clock: Clock, **options: object) -> LoadedConsumer:
    instance = archive_files.ArchiveFilesConsumer(
        SPEC,
        archive_files.Options.model_validate({"directory": directory, **options}),
        clock=clock,
    )
    return LoadedConsumer(SPEC, instance.handle, instance.startup, instance.shutdown, "test")


async def test_each_line_is_exactly_the_event_json_the_consumers_receive(
    start_with: StartWith, tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 3, 4, 10, 15, tzinfo=UTC))
    loaded, outcomes = observed(files_consumer(tmp_path, clock))
    witness = Recorder("witness", ["TaskFinish.#"])
    system = await start_with([loaded, witness.loaded()])
    for body in (OCR, TRANSLATION):
        assert (await system.post(body)).status == 200
    await eventually(lambda: len(outcomes.handled) == 2 and len(witness.events) == 2)
    lines = (tmp_path / "files-2026-03-04T10.jsonl").read_bytes().splitlines()
    assert sorted(lines) == sorted(e.model_dump_json().encode() for e in witness.events)
    assert names(tmp_path) == ["files-2026-03-04T10.jsonl"]


async def test_the_hour_turns_the_finished_file_is_gzipped_and_a_new_one_begins(
    start_with: StartWith, tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 3, 4, 10, 59, 59, tzinfo=UTC))
    loaded, outcomes = observed(files_consumer(tmp_path, clock))
    system = await start_with([loaded])
    assert (await system.post(OCR)).status == 200
    await eventually(lambda: len(outcomes.handled) == 1)
    clock.now += timedelta(seconds=1)
    assert (await system.post(TRANSLATION)).status == 200
    await eventually(lambda: len(outcomes.handled) == 2)
    first, second = (e.model_dump_json().encode() + b"\n" for e in outcomes.handled)
    assert names(tmp_path) == [
        "files-2026-03-04T10.jsonl.gz",
        "files-2026-03-04T11.jsonl",
    ]
    assert gzip.decompress((tmp_path / "files-2026-03-04T10.jsonl.gz").read_bytes()) == first
    assert (tmp_path / "files-2026-03-04T11.jsonl").read_bytes() == second


async def test_a_restart_in_a_later_hour_gzips_the_file_the_last_run_left(
    start_with: StartWith, tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 3, 4, 23, 30, tzinfo=UTC))
    loaded, outcomes = observed(files_consumer(tmp_path, clock))
    system = await start_with([loaded])
    assert (await system.post(OCR)).status == 200
    await eventually(lambda: len(outcomes.handled) == 1)
    await system.stop()
    left = (tmp_path / "files-2026-03-04T23.jsonl").read_bytes()
    assert left == outcomes.handled[0].model_dump_json().encode() + b"\n"
    clock.now = datetime(2026, 3, 5, 0, 1, tzinfo=UTC)
    await start_with([files_consumer(tmp_path, clock)], ingress=False, router=False)
    assert names(tmp_path) == ["files-2026-03-04T23.jsonl.gz"]
    assert gzip.decompress((tmp_path / "files-2026-03-04T23.jsonl.gz").read_bytes()) == left


def test_hourly_files_append_to_an_hour_already_compressed_as_a_second_gzip_member(
    tmp_path: Path,
) -> None:
    clock = Clock(datetime(2026, 3, 4, 10, 0, tzinfo=UTC))
    files = archive_files.HourlyFiles(tmp_path, "f", compress=True, clock=clock)
    files.open()
    files.append([b"a\n"])
    clock.now = datetime(2026, 3, 4, 11, 0, tzinfo=UTC)
    files.append([b"b\n"])
    clock.now = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)  # the clock stepped back
    files.append([b"c\n"])
    clock.now = datetime(2026, 3, 4, 11, 30, tzinfo=UTC)
    files.append([b"d\n"])
    files.close()
    assert gzip.decompress((tmp_path / "f-2026-03-04T10.jsonl.gz").read_bytes()) == b"a\nc\n"
    assert gzip.decompress((tmp_path / "f-2026-03-04T11.jsonl.gz").read_bytes()) == b"b\n"
    assert (tmp_path / "f-2026-03-04T11.jsonl").read_bytes() == b"d\n"
