"""The spool's on-disk format: append-only segment files of checksummed records.

A segment file is one ingress process's write-ahead log::

    file header   8 bytes  b"CFSPOOL1"
    record        16-byte header, then the metadata (JSON), then the body
    record        ...

Record header (little-endian)::

    state     1 byte   b"P" pending, b"F" forwarded (the only byte ever rewritten in place)
    reserved  3 bytes  zero
    crc32     4 bytes  of meta_len, body_len, meta and body
    meta_len  4 bytes
    body_len  4 bytes

A record is valid when its state byte is known, its lengths fit in the file and its checksum
matches. A crash in the middle of an append leaves a torn record at the end of the file: the
scan stops there, and every record before it is kept.

The file is held with an exclusive ``flock`` by the one process that reads and writes it. A
new segment is created under a temporary name, locked, given its header, synced and only
then renamed to its final ``*.seg`` name, so no other process ever sees an unlocked segment
of a live one. Names start with the creation time in nanoseconds: sorting them sorts
segments oldest first.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import json
import os
import secrets
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingress.groupcommit import RawMeta

__all__ = [
    "FILE_HEADER",
    "RECORD_HEADER",
    "SEGMENT_SUFFIX",
    "TEMP_PREFIX",
    "Claimed",
    "DamagedRecord",
    "Record",
    "Segment",
    "create_segment",
    "decode_meta",
    "encode_record",
    "open_orphan",
]

FILE_HEADER = b"CFSPOOL1"
RECORD_HEADER = struct.Struct("<1s3xIII")
PENDING = b"P"
FORWARDED = b"F"
SEGMENT_SUFFIX = ".seg"
TEMP_PREFIX = ".new-"
#: Largest metadata a record may claim: a bigger length is a torn or damaged header.
MAX_META_BYTES = 1024 * 1024


class DamagedRecord(Exception):
    """A record that was valid when written no longer reads back as valid."""


@dataclass(frozen=True, slots=True)
class Record:
    """One spooled body, where it lives, and where the next record starts."""

    segment: str
    offset: int
    next_offset: int
    body: bytes
    meta: RawMeta


def decode_meta(data: bytes) -> RawMeta:
    """The metadata written by ``RawMeta.to_json`` (unknown keys are ignored, so records of a
    newer version still read)."""
    fields: dict[str, Any] = json.loads(data)
    return RawMeta(**{k: v for k, v in fields.items() if k in RawMeta._fields})


def _checksum(lengths: bytes, meta: bytes, body: bytes) -> int:
    return zlib.crc32(body, zlib.crc32(meta, zlib.crc32(lengths)))


def encode_record(body: bytes, meta: RawMeta) -> bytes:
    """One pending record: header, metadata, body."""
    meta_bytes = meta.to_json()
    lengths = struct.pack("<II", len(meta_bytes), len(body))
    crc = _checksum(lengths, meta_bytes, body)
    return RECORD_HEADER.pack(PENDING, crc, len(meta_bytes), len(body)) + meta_bytes + body


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (it may have been deleted)."""
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


class Segment:
    """One segment file, open and exclusively locked by this process.

    ``written`` is the end of the last record written, ``synced`` the end of the last record
    known to be on disk (only those are forwarded), ``cursor`` the first record not yet
    forwarded; ``pending`` counts the records between ``cursor`` and ``written``.
    """

    def __init__(self, path: Path, fd: int, *, end: int, cursor: int, pending: int) -> None:
        self.path = path
        self.name = path.name
        self.fd = fd
        self.written = end
        self.synced = end
        self.cursor = cursor
        self.pending = pending
        self.tail = 0  # bytes after the last valid record (a torn write), still on disk
        self.sealed = False  # no more appends (rotated, or another process's leftovers)
        self.failed = False  # a sync failed: what was not synced may or may not be on disk
        self.sync_lock = threading.Lock()
        self._ends: list[int] = []  # the ends of records written, from around ``synced`` on

    @property
    def disk_bytes(self) -> int:
        """Bytes the file takes: its records and any torn tail."""
        return self.written + self.tail

    def write(self, record: bytes) -> int:
        """Write ``record`` at the end; return its end. On error nothing is left behind (or,
        if the file cannot even be cut back, the partial record is counted as a torn tail)."""
        offset = self.written
        try:
            view = memoryview(record)
            while view:
                done = os.pwrite(self.fd, view, offset)
                view = view[done:]
                offset += done
        except OSError:
            # Cut off the partial record so the file stays a clean sequence of records.
            try:
                os.ftruncate(self.fd, self.written)
            except OSError:
                self.tail = max(self.tail, offset - self.written)
            raise
        synced = self.synced
        if self._ends and self._ends[0] <= synced:  # only the unsynced ones matter
            del self._ends[: bisect.bisect_right(self._ends, synced)]
        self._ends.append(offset)
        self.written = offset
        self.pending += 1
        return offset

    def abandon_unsynced(self) -> int:
        """After a failed sync: forget the records written since the last good one, and seal.

        Their appends were refused (503), never answered 200: they are cut off the file when
        it still lets us, else left as a tail that nobody forwards (a restart may forward one
        that did reach the disk: at least once). The records synced before stay readable.
        Returns how many were forgotten.
        """
        self.sealed = True
        lost = len(self._ends) - bisect.bisect_right(self._ends, self.synced)
        self._ends.clear()
        if self.written == self.synced:
            return lost
        self.pending -= lost
        try:
            os.ftruncate(self.fd, self.synced)
        except OSError:
            self.tail = max(self.tail, self.written - self.synced)
        self.written = self.synced
        return lost

    def sync(self, end: int) -> None:
        """Return once every record up to ``end`` is on disk (one fsync serves many callers)."""
        with self.sync_lock:
            if self.synced >= end:
                return
            if self.failed:
                raise OSError(errno.EIO, f"an earlier sync of {self.name} failed")
            target = self.written
            try:
                os.fdatasync(self.fd)
            except OSError:
                self.failed = True
                raise
            self.synced = target

    def read(self, offset: int) -> Record:
        """The record at ``offset`` (a record boundary below ``synced``)."""
        header = _pread_exact(self.fd, RECORD_HEADER.size, offset)
        parsed = _parse_header(header, offset, self.synced)
        if parsed is None:
            raise DamagedRecord(f"{self.name}: bad record header at offset {offset}")
        _state, crc, meta_len, body_len = parsed
        start = offset + RECORD_HEADER.size
        payload = _pread_exact(self.fd, meta_len + body_len, start)
        meta, body = payload[:meta_len], payload[meta_len:]
        if _checksum(header[8:], meta, body) != crc:
            raise DamagedRecord(f"{self.name}: checksum mismatch at offset {offset}")
        try:
            decoded = decode_meta(meta)
        except (ValueError, TypeError) as exc:
            raise DamagedRecord(f"{self.name}: unreadable metadata at offset {offset}") from exc
        return Record(self.name, offset, start + meta_len + body_len, body, decoded)

    def read_meta(self, offset: int) -> RawMeta:
        """The metadata of the record at ``offset``, without its body (not checksummed)."""
        header = _pread_exact(self.fd, RECORD_HEADER.size, offset)
        parsed = _parse_header(header, offset, self.written)
        if parsed is None:
            raise DamagedRecord(f"{self.name}: bad record header at offset {offset}")
        meta = _pread_exact(self.fd, parsed[2], offset + RECORD_HEADER.size)
        try:
            return decode_meta(meta)
        except (ValueError, TypeError) as exc:
            raise DamagedRecord(f"{self.name}: unreadable metadata at offset {offset}") from exc

    def mark_forwarded(self, record: Record) -> None:
        """Flag ``record`` as forwarded on disk and move the cursor past it.

        The flag is not synced: if it is lost in a crash the record is forwarded once more
        (delivery is at least once), never lost. The cursor moves even if the flag cannot be
        written (an ``OSError`` then tells the caller so).
        """
        self.cursor = record.next_offset
        self.pending -= 1
        os.pwrite(self.fd, FORWARDED, record.offset)

    def delete(self) -> None:
        """Remove the file, then release the lock (no other process can claim it between)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        """Release the lock and the descriptor; the file stays as it is."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def _parse_header(header: bytes, offset: int, end: int) -> tuple[bytes, int, int, int] | None:
    if len(header) < RECORD_HEADER.size:
        return None
    state, crc, meta_len, body_len = RECORD_HEADER.unpack(header)
    if state not in (PENDING, FORWARDED) or header[1:4] != b"\0\0\0":
        return None
    if meta_len > MAX_META_BYTES or offset + RECORD_HEADER.size + meta_len + body_len > end:
        return None
    return state, crc, meta_len, body_len


def create_segment(directory: Path) -> Segment:
    """A new, empty, locked segment file in ``directory`` whose name is durable."""
    stem = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
    temp = directory / f"{TEMP_PREFIX}{stem}"
    final = directory / f"{stem}{SEGMENT_SUFFIX}"
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if not _try_lock(fd) or not _same_file(fd, temp):
            raise OSError(errno.EAGAIN, f"{temp.name} was taken by another process")
        os.pwrite(fd, FILE_HEADER, 0)
        os.fsync(fd)
        os.rename(temp, final)
        _fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        os.close(fd)
        raise
    return Segment(final, fd, end=len(FILE_HEADER), cursor=len(FILE_HEADER), pending=0)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A segment taken over from a process that is gone, and what was wrong with it."""

    segment: Segment
    size: int  # bytes of the file, including a torn tail
    torn_at: int | None  # offset of the first invalid record, if any


def open_orphan(path: Path) -> Claimed | None:
    """Lock and scan a segment left by a process that is gone; None if it is still held.

    The scan checks every pending record's checksum and stops at the first invalid one: a
    torn write at a crash. Forwarded records are skipped by their lengths; the records to
    forward are those after the last forwarded one.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if not _try_lock(fd) or not _same_file(fd, path):
            os.close(fd)
            return None
        size = os.fstat(fd).st_size
        segment = Segment(path, fd, end=len(FILE_HEADER), cursor=len(FILE_HEADER), pending=0)
        segment.sealed = True
        if _pread_exact(fd, len(FILE_HEADER), 0) != FILE_HEADER:
            # Not even a header: created and never written, or not ours. Nothing to forward.
            return Claimed(segment, size, 0 if size else None)
        torn_at = _scan(segment, size)
    except BaseException:
        os.close(fd)
        raise
    return Claimed(segment, size, torn_at)


def _scan(segment: Segment, size: int) -> int | None:
    """Set ``segment``'s cursor, end and pending count from its file; the torn offset."""
    offset = len(FILE_HEADER)
    first_pending: int | None = None
    pending = 0
    while offset < size:
        header = _pread_exact(segment.fd, RECORD_HEADER.size, offset)
        parsed = _parse_header(header, offset, size)
        if parsed is None:
            break
        state, crc, meta_len, body_len = parsed
        end = offset + RECORD_HEADER.size + meta_len + body_len
        if state == FORWARDED:
            # Records are forwarded in order: every record before this one was forwarded too,
            # even if its own flag did not reach the disk before a crash.
            first_pending, pending = None, 0
        else:
            payload = _pread_exact(segment.fd, meta_len + body_len, offset + RECORD_HEADER.size)
            if _checksum(header[8:], payload[:meta_len], payload[meta_len:]) != crc:
                break
            if first_pending is None:
                first_pending = offset
            pending += 1
        offset = end
    segment.written = segment.synced = offset
    segment.cursor = offset if first_pending is None else first_pending
    segment.pending = pending
    return offset if offset < size else None
