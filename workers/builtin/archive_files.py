"""The ``archive-files`` built-in: every event as a JSON line, one file per hour (UTC).

``<directory>/<consumer>-<YYYY-MM-DDTHH>.jsonl`` holds the events written during that hour,
one ``event.model_dump_json()`` per line. When the hour turns (or at startup, for files a
previous run left), the finished file is compressed to ``.jsonl.gz`` and the plain one
removed. Events are written in batches like the database archive: a batch is appended,
fsynced, and only then do its handlers return and the runtime acks them. One worker process
per directory.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pydantic import BaseModel, ConfigDict, Field

from shared.callbacks import CallbackEvent
from shared.logs import get_logger
from workers.builtin.groupwrite import Batcher
from workers.consumer import Consumer, ConsumerSpec, LoadedConsumer

__all__ = ["ArchiveFilesConsumer", "HourlyFiles", "Options", "build"]

log = get_logger("consumer.archive_files")

Clock = Callable[[], datetime]


class Options(BaseModel):
    """Options of ``use = "archive-files"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    directory: Path = Field(description="Where the hourly files go (created if missing).")
    batch_size: int = Field(
        200,
        ge=1,
        le=10000,
        description="Events per write and fsync at most. The consumer's `concurrency` "
        "defaults to twice this.",
    )
    batch_wait_ms: float = Field(
        20.0, ge=0, description="Milliseconds a batch waits for more events after its first."
    )
    compress: bool = Field(True, description="gzip each hour's file when the hour is over.")


def _now() -> datetime:
    return datetime.now(UTC)


class HourlyFiles:
    """Appends lines to the current hour's file; rotates and compresses finished hours.

    Blocking: call it from a thread.
    """

    def __init__(self, directory: Path, stem: str, *, compress: bool, clock: Clock = _now) -> None:
        self.directory = directory
        self.stem = stem
        self.compress = compress
        self.clock = clock
        self._hour: str | None = None
        self._file: IO[bytes] | None = None
        self._pattern = re.compile(rf"^{re.escape(stem)}-(\d{{4}}-\d\d-\d\dT\d\d)\.jsonl$")

    def path_for(self, hour: str) -> Path:
        return self.directory / f"{self.stem}-{hour}.jsonl"

    def open(self) -> None:
        """Create the directory; compress the finished hours a previous run left plain."""
        self.directory.mkdir(parents=True, exist_ok=True)
        current = self._hour_of(self.clock())
        for path in sorted(self.directory.iterdir()):
            found = self._pattern.match(path.name)
            if found and found.group(1) != current:
                self._finish(path)

    def append(self, lines: list[bytes]) -> None:
        """Append ``lines`` (each ending in a newline) and fsync before returning."""
        hour = self._hour_of(self.clock())
        if hour != self._hour:
            self._rotate(hour)
        assert self._file is not None
        self._file.write(b"".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _rotate(self, hour: str) -> None:
        previous = self._hour
        self.close()
        self._hour = hour
        self._file = self.path_for(hour).open("ab")
        _fsync_dir(self.directory)
        if previous is not None:
            self._finish(self.path_for(previous))

    def _finish(self, path: Path) -> None:
        """Compress a finished hour's file to ``.gz`` (durably), then remove the plain one."""
        if not self.compress or not path.exists():
            return
        target = path.with_name(path.name + ".gz")
        partial = path.with_name(path.name + ".gz.partial")
        with path.open("rb") as source, partial.open("wb") as sink:
            with gzip.GzipFile(filename=path.name, mode="wb", fileobj=sink, mtime=0) as zipped:
                shutil.copyfileobj(source, zipped)
            sink.flush()
            os.fsync(sink.fileno())
        if target.exists():  # an earlier part of the same hour: gzip members concatenate
            with target.open("ab") as whole, partial.open("rb") as part:
                shutil.copyfileobj(part, whole)
                whole.flush()
                os.fsync(whole.fileno())
            partial.unlink()
        else:
            partial.rename(target)
        path.unlink()
        _fsync_dir(self.directory)
        log.info("hour file compressed", file=target.name)

    @staticmethod
    def _hour_of(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArchiveFilesConsumer(Consumer):
    """Writes events as JSON lines in batches, one fsync per batch."""

    def __init__(self, spec: ConsumerSpec, options: Options, clock: Clock = _now) -> None:
        self.spec = spec
        self.options = options
        self.files = HourlyFiles(
            options.directory, spec.name, compress=options.compress, clock=clock
        )
        self._lock = asyncio.Lock()  # one batch at a time on the file, in order
        self._batcher = Batcher(
            self._write, max_size=options.batch_size, max_wait=options.batch_wait_ms / 1000
        )

    async def startup(self) -> None:
        await asyncio.to_thread(self.files.open)
        log.info("archiving to files", consumer=self.spec.name, directory=str(self.files.directory))

    async def shutdown(self) -> None:
        await self._batcher.close()
        async with self._lock:
            await asyncio.to_thread(self.files.close)

    async def handle(self, event: CallbackEvent) -> None:
        await self._batcher.submit(event.model_dump_json().encode() + b"\n")

    async def _write(self, lines: list[bytes]) -> None:
        async with self._lock:
            await asyncio.to_thread(self.files.append, lines)


def build(spec: ConsumerSpec, options: Options) -> LoadedConsumer:
    """An ``archive-files`` consumer for ``spec``."""
    if spec.concurrency is None:
        spec = replace(spec, concurrency=2 * options.batch_size)
    return LoadedConsumer.from_instance(
        spec, ArchiveFilesConsumer(spec, options), f"built-in archive-files as {spec.name!r}"
    )
