"""The ingress's local write-ahead spool: bodies kept on disk while the broker is away.

A :class:`Spool` is a directory of segment files (format in :mod:`ingress.spoolfile`).
Each process appends to a segment of its own, held with an exclusive ``flock``; a process
that finds a segment nobody holds (its writer is gone) claims it and forwards it. Several
ingress processes on one host can therefore share a directory without ever writing to the
same file.

Thread-safe: the ingress appends from worker threads (an fsync blocks), concurrent appends
share one fsync, and the forwarder reads and removes records from the event loop.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from ingress.groupcommit import RawMeta
from ingress.spoolfile import (
    FILE_HEADER,
    SEGMENT_SUFFIX,
    TEMP_PREFIX,
    DamagedRecord,
    Record,
    Segment,
    create_segment,
    encode_record,
    open_orphan,
)
from shared.errors import BrokerUnavailable
from shared.logs import get_logger

__all__ = ["DAMAGED_SUFFIX", "Record", "Spool"]

log = get_logger("ingress.spool")

#: A segment whose records stopped reading back as valid is renamed aside with this suffix.
DAMAGED_SUFFIX = ".damaged"
#: Temporary files of a segment being created are cleaned up once they are this old.
_STALE_TEMP_SECONDS = 60.0
#: After a disk error (a write, an fsync or a new segment failed), appends are refused at once
#: for this long, then the next one tries the disk again (on a new segment).
DISK_RETRY_SECONDS = 1.0


class Spool:
    """A bounded, durable, ordered queue of request bodies in a directory.

    :meth:`append` returns once the record is on disk. :meth:`records` yields the records
    not yet removed, oldest segment first and in append order within a segment;
    :meth:`remove` takes one out once the broker has confirmed it (in order within its
    segment). A segment is deleted as soon as all its records are removed.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int,
        *,
        segment_bytes: int | None = None,
        disk_retry: float = DISK_RETRY_SECONDS,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or min(64 * 1024 * 1024, max(max_bytes // 8, 65536))
        self._lock = threading.Lock()
        self._claim_lock = threading.Lock()
        self._segments: dict[str, Segment] = {}
        self._active: Segment | None = None
        self._other_bytes = 0  # segments of other live processes, as of the last scan
        self._open = False
        #: Seconds appends are refused after a disk error before the disk is tried again.
        self.disk_retry = disk_retry
        self._broken: str | None = None  # the last disk error, until an append succeeds
        self._retry_at = 0.0  # (monotonic) when the disk is tried again

    # Life cycle

    def open(self, *, claim: bool = True) -> int:
        """Create the directory if needed and claim what dead processes left; the count.

        ``claim=False`` only opens (fast): the caller claims later with :meth:`claim_orphans`.
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            self._open = True
        return self.claim_orphans() if claim else 0

    def close(self) -> None:
        """Release every segment; what is not removed stays on disk for the next process."""
        with self._lock:
            self._open = False
            for segment in self._segments.values():
                segment.close()
            self._segments.clear()
            self._active = None

    def __enter__(self) -> Spool:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # State

    @property
    def pending(self) -> int:
        """Records appended or claimed and not yet removed."""
        with self._lock:
            return sum(segment.pending for segment in self._segments.values())

    @property
    def used_bytes(self) -> int:
        """Bytes of the directory's segments: this process's, and others' as last seen."""
        with self._lock:
            return self._used_bytes()

    def _used_bytes(self) -> int:
        return self._other_bytes + sum(s.disk_bytes for s in self._segments.values())

    def oldest_received_at(self) -> float | None:
        """When the oldest record not yet removed was received (seconds since the epoch);
        None when there is none, or it cannot be read (the forwarder will say why)."""
        with self._lock:
            for name in sorted(self._segments):
                segment = self._segments[name]
                if segment.pending and segment.cursor < segment.written:
                    try:
                        return segment.read_meta(segment.cursor).received_at
                    except (DamagedRecord, OSError):
                        return None
        return None

    def can_accept(self, size: int = 1) -> bool:
        """Whether an append of a ``size``-byte body would be taken now."""
        with self._lock:
            return (
                self._open
                and not self._refusing()
                and self._used_bytes() + size + 1024 <= self.max_bytes
            )

    def _refusing(self) -> bool:
        """Within the pause after a disk error."""
        return self._broken is not None and time.monotonic() < self._retry_at

    # Writing

    def append(self, body: bytes, meta: RawMeta) -> None:
        """Write one record and return once it is on disk.

        Raises :class:`BrokerUnavailable` when the spool is full, closed, or cannot write:
        the ingress then answers 503 as it would without a spool. A disk error (ENOSPC, EIO
        on a write, an fsync or a new segment) refuses that append; the segment it hit is
        sealed, what was synced in it before is still forwarded, and after ``disk_retry``
        seconds of refusing at once the next append tries the disk again on a new segment.
        """
        record = encode_record(body, meta)
        with self._lock:
            if not self._open:
                raise BrokerUnavailable("spool closed")
            if self._refusing():
                raise BrokerUnavailable(f"spool out of service: {self._broken}")
            used = self._used_bytes()
            if used + len(record) > self.max_bytes:
                raise BrokerUnavailable(f"spool full ({used} of {self.max_bytes} bytes used)")
            try:
                segment = self._writable_segment(len(record))
            except OSError as exc:
                raise self._disk_failed("cannot create a segment", exc) from exc
            try:
                end = segment.write(record)
            except OSError as exc:
                segment.sealed = True  # a partial record may be left: never write after it
                self._active = None
                self._forget_if_done(segment)
                raise self._disk_failed("write failed", exc) from exc
        try:
            segment.sync(end)
        except OSError as exc:
            with self._lock:
                # What was written since the last good sync may or may not be on disk: those
                # appends are all refused, and nothing is ever written after them.
                segment.abandon_unsynced()
                if self._active is segment:
                    self._active = None
                self._forget_if_done(segment)
                raise self._disk_failed("sync failed", exc) from exc
        if self._broken is not None:
            with self._lock:
                if self._broken is not None:
                    log.warning("spool writable again", after=self._broken)
                    self._broken = None

    def _disk_failed(self, what: str, exc: OSError) -> BrokerUnavailable:
        """Note a disk error (the lock held): appends are refused for ``disk_retry`` s."""
        if self._broken is None:
            log.error("spool disk error: refusing bodies", step=what, error=str(exc))
        self._broken = f"{what}: {exc}"
        self._retry_at = time.monotonic() + self.disk_retry
        return BrokerUnavailable(f"spool {what}: {exc}")

    def _writable_segment(self, size: int) -> Segment:
        active = self._active
        if (
            active is not None
            and active.written > len(FILE_HEADER)
            and active.written + size > self.segment_bytes
        ):
            active.sealed = True  # rotate: full segments are deleted once forwarded
            active = None
        if active is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            active = create_segment(self.directory)  # OSError: the caller refuses the append
            self._segments[active.name] = active
            self._active = active
        return active

    # Reading and removing

    def records(self) -> Iterator[Record]:
        """The records not yet removed, in order; also those appended while iterating."""
        after: tuple[str, int] | None = None
        while (record := self._next_record(after)) is not None:
            yield record
            after = (record.segment, record.next_offset)

    def _next_record(self, after: tuple[str, int] | None) -> Record | None:
        with self._lock:
            for name in sorted(self._segments):
                if after is not None and name < after[0]:
                    continue
                segment = self._segments[name]
                offset = segment.cursor
                if after is not None and name == after[0]:
                    offset = max(offset, after[1])
                if offset >= segment.synced:
                    continue
                try:
                    return segment.read(offset)
                except (DamagedRecord, OSError) as exc:
                    self._set_aside(segment, exc)
        return None

    def _set_aside(self, segment: Segment, exc: Exception) -> None:
        """Rename a segment that no longer reads back aside for an operator to look at."""
        aside = segment.path.with_suffix(DAMAGED_SUFFIX)
        try:
            segment.path.rename(aside)
        except OSError as rename_exc:
            log.error("damaged spool segment", segment=segment.name, error=str(rename_exc))
        log.error(
            "spool segment damaged: set aside",
            segment=segment.name,
            path=aside.name,
            lost_records=segment.pending,
            error=str(exc),
        )
        segment.close()
        del self._segments[segment.name]
        if self._active is segment:
            self._active = None

    def remove(self, record: Record) -> None:
        """Take ``record`` out: the broker has it. Records leave their segment in order."""
        with self._lock:
            segment = self._segments.get(record.segment)
            if segment is None or record.offset != segment.cursor:
                raise ValueError("spool records are removed once each, in order")
            try:
                segment.mark_forwarded(record)
            except OSError as exc:  # forwarded once more after a restart; never lost
                log.warning("spool cannot flag a record forwarded", error=str(exc))
            self._forget_if_done(segment)

    def _forget_if_done(self, segment: Segment) -> None:
        if self._segments.get(segment.name) is not segment:
            return  # forgotten already (two appends that failed on it)
        if segment.pending == 0 and segment.written == segment.synced:
            try:
                segment.delete()
            except OSError as exc:  # a failing disk: the file stays, nothing in it is pending
                log.warning("spool cannot remove a segment", segment=segment.name, error=str(exc))
                segment.close()
            del self._segments[segment.name]
            if self._active is segment:
                self._active = None

    # Other processes' leftovers

    def claim_orphans(self) -> int:
        """Take over the segments of processes that are gone; the records gained.

        Also measures the segments live processes hold, for the size bound.
        """
        with self._claim_lock:
            others = 0
            gained = 0
            for path in sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}")):
                with self._lock:
                    if not self._open:
                        return gained
                    if path.name in self._segments:
                        continue
                claimed = open_orphan(path)
                if claimed is None:
                    with contextlib.suppress(FileNotFoundError):
                        others += path.stat().st_size
                    continue
                segment = claimed.segment
                if claimed.torn_at is not None:
                    log.warning(
                        "spool: torn record skipped",
                        segment=segment.name,
                        offset=claimed.torn_at,
                        bytes=claimed.size - claimed.torn_at,
                    )
                segment.tail = max(0, claimed.size - segment.written)
                with self._lock:
                    if not self._open:
                        segment.close()
                        return gained
                    self._segments[segment.name] = segment
                    self._forget_if_done(segment)
                if segment.pending:
                    gained += segment.pending
                    log.info(
                        "spool: claimed segment", segment=segment.name, records=segment.pending
                    )
            self._clean_stale_temporaries()
            with self._lock:
                self._other_bytes = others
            return gained

    def _clean_stale_temporaries(self) -> None:
        """Remove segments whose creation was cut short (they never held a record)."""
        now = time.time()
        for path in self.directory.glob(f"{TEMP_PREFIX}*"):
            try:
                if now - path.stat().st_mtime < _STALE_TEMP_SECONDS:
                    continue
            except FileNotFoundError:
                continue
            claimed = open_orphan(path)
            if claimed is not None:
                claimed.segment.delete()
