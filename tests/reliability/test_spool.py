"""The ingress spool on disk: order, durability, torn writes, the size bound, and several
processes sharing one directory."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
import structlog

from ingress.groupcommit import AmqpPublisher, RawMeta
from ingress.spool import Spool
from ingress.spoolfile import FILE_HEADER, RECORD_HEADER, SEGMENT_SUFFIX
from ingress.spooling import SpoolingPublisher, build_publisher
from shared.errors import BrokerUnavailable
from shared.settings import Settings

MiB = 1024 * 1024


def _body(writer: int, n: int) -> bytes:
    """A distinct body of varied size and arbitrary bytes (not only text)."""
    seed = hashlib.sha256(f"{writer}/{n}".encode()).digest()
    size = 16 + int.from_bytes(seed[:2], "big") % 3000
    return f"<job writer='{writer}' n='{n}'>".encode() + (seed * (size // 32 + 1))[:size]


def _meta(writer: int, n: int) -> RawMeta:
    return RawMeta(
        request_id=f"req-{writer}-{n}",
        received_at=1_700_000_000.25 + n,
        content_type="application/xml; charset=utf-8",
        source_address="10.0.0.7",
        headers={"Content-Type": "application/xml", "User-Agent": "ci-sender/1.0 (ü)"},
        token_name="tenant-a" if n % 2 else None,
    )


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def spool(spool_dir: Path) -> Iterator[Spool]:
    with Spool(spool_dir, 64 * MiB) as opened:
        yield opened


def test_appended_records_come_back_in_order_with_body_and_metadata_intact(spool: Spool) -> None:
    for n in range(50):
        spool.append(_body(0, n), _meta(0, n))
    assert spool.pending == 50
    records = list(spool.records())
    assert [r.body for r in records] == [_body(0, n) for n in range(50)]
    assert [r.meta for r in records] == [_meta(0, n) for n in range(50)]
    assert list(spool.records()) == records  # iterating does not consume


def test_removed_records_are_not_seen_again_and_an_emptied_spool_leaves_no_file(
    spool: Spool, spool_dir: Path
) -> None:
    for n in range(10):
        spool.append(_body(0, n), _meta(0, n))
    assert len(_segments(spool_dir)) == 1
    for record in list(spool.records())[:4]:
        spool.remove(record)
    assert [r.body for r in spool.records()] == [_body(0, n) for n in range(4, 10)]
    assert spool.pending == 6
    for record in spool.records():
        spool.remove(record)
    assert spool.pending == 0
    assert list(spool_dir.iterdir()) == []
    assert spool.used_bytes == 0


def test_records_leave_in_order_once_each(spool: Spool) -> None:
    for n in range(3):
        spool.append(_body(0, n), _meta(0, n))
    first, second, _third = spool.records()
    with pytest.raises(ValueError, match="in order"):
        spool.remove(second)
    spool.remove(first)
    with pytest.raises(ValueError, match="in order"):
        spool.remove(first)


def test_records_appended_while_iterating_are_yielded_too(spool: Spool) -> None:
    spool.append(_body(0, 0), _meta(0, 0))
    seen = []
    for record in spool.records():
        seen.append(record.body)
        spool.remove(record)
        if len(seen) < 5:
            spool.append(_body(0, len(seen)), _meta(0, len(seen)))
    assert seen == [_body(0, n) for n in range(5)]


def test_a_spool_reopened_after_close_holds_what_was_not_removed(spool_dir: Path) -> None:
    with Spool(spool_dir, 64 * MiB) as first:
        for n in range(20):
            first.append(_body(0, n), _meta(0, n))
        for record in list(first.records())[:5]:
            first.remove(record)
    with Spool(spool_dir, 64 * MiB) as second:
        assert second.pending == 15
        records = list(second.records())
        assert [r.body for r in records] == [_body(0, n) for n in range(5, 20)]
        assert [r.meta for r in records] == [_meta(0, n) for n in range(5, 20)]


def test_small_segments_rotate_and_keep_the_order_across_files(spool_dir: Path) -> None:
    with Spool(spool_dir, 64 * MiB, segment_bytes=8 * 1024) as spool:
        for n in range(40):
            spool.append(_body(0, n), _meta(0, n))
    written = len(_segments(spool_dir))
    assert written > 3
    with Spool(spool_dir, 64 * MiB, segment_bytes=8 * 1024) as spool:
        forwarded = []
        for record in spool.records():
            forwarded.append(record.body)
            spool.remove(record)
            if len(forwarded) == 20:
                # Segments wholly forwarded are gone already; the rest wait.
                assert 0 < len(_segments(spool_dir)) < written
        assert forwarded == [_body(0, n) for n in range(40)]
    assert list(spool_dir.iterdir()) == []


def _write_three(spool_dir: Path) -> Path:
    with Spool(spool_dir, 64 * MiB) as spool:
        for n in range(3):
            spool.append(_body(0, n), _meta(0, n))
    [segment] = _segments(spool_dir)
    return segment


def _cut_short(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 7)


def _flip_a_body_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


def _append_half_a_header(path: Path) -> None:
    with path.open("ab") as file:
        file.write(b"P\0\0\0\x12\x34")


def _append_zeros(path: Path) -> None:
    with path.open("ab") as file:
        file.write(bytes(4096))


@pytest.mark.parametrize(
    ("damage", "kept"),
    [(_cut_short, 2), (_flip_a_body_byte, 2), (_append_half_a_header, 3), (_append_zeros, 3)],
    ids=["last-record-cut-short", "last-record-checksum-wrong", "half-a-header", "zeros"],
)
def test_a_torn_tail_is_detected_and_skipped_and_every_record_before_it_is_kept(
    spool_dir: Path, damage: Callable[[Path], None], kept: int
) -> None:
    segment = _write_three(spool_dir)
    damage(segment)
    with structlog.testing.capture_logs() as logs, Spool(spool_dir, 64 * MiB) as spool:
        assert spool.pending == kept
        records = list(spool.records())
        assert [r.body for r in records] == [_body(0, n) for n in range(kept)]
        for record in records:
            spool.remove(record)
    assert [e for e in logs if e["event"] == "spool: torn record skipped"]
    assert list(spool_dir.iterdir()) == []  # the torn tail went with its segment


def test_a_forwarded_flag_lost_in_a_crash_does_not_resend_records_before_a_forwarded_one(
    spool_dir: Path,
) -> None:
    with Spool(spool_dir, 64 * MiB) as spool:
        for n in range(4):
            spool.append(_body(0, n), _meta(0, n))
        records = list(spool.records())
        for record in records[:3]:
            spool.remove(record)
    [segment] = _segments(spool_dir)
    with segment.open("r+b") as file:  # the flag of record 1 never reached the disk
        file.seek(records[1].offset)
        assert file.read(1) == b"F"
        file.seek(records[1].offset)
        file.write(b"P")
    with Spool(spool_dir, 64 * MiB) as spool:
        assert [r.body for r in spool.records()] == [_body(0, 3)]


def test_a_full_spool_raises_broker_unavailable_until_its_records_are_forwarded(
    spool_dir: Path,
) -> None:
    body = b"x" * 1000
    with Spool(spool_dir, 4096) as spool:
        outcomes = []
        for n in range(10):
            try:
                spool.append(body, _meta(0, n))
            except BrokerUnavailable as exc:
                outcomes.append(str(exc))
            else:
                outcomes.append("appended")
        accepted = outcomes.count("appended")
        assert 2 <= accepted < 4
        assert outcomes[:accepted] == ["appended"] * accepted
        assert all(o.startswith("spool full") for o in outcomes[accepted:])
        assert spool.pending == accepted
        assert not spool.can_accept(len(body))
        assert sum(p.stat().st_size for p in spool_dir.iterdir()) <= 4096
        for record in spool.records():
            spool.remove(record)
        assert spool.can_accept(len(body))
        spool.append(body, _meta(0, 99))
        assert [r.meta.request_id for r in spool.records()] == ["req-0-99"]


def test_a_closed_spool_refuses_appends(spool_dir: Path) -> None:
    spool = Spool(spool_dir, MiB)
    with pytest.raises(BrokerUnavailable, match="closed"):
        spool.append(b"body", _meta(0, 0))
    spool.open()
    spool.close()
    with pytest.raises(BrokerUnavailable, match="closed"):
        spool.append(b"body", _meta(0, 0))


def test_a_segment_held_by_a_live_spool_is_not_claimed_until_it_is_released(
    spool_dir: Path,
) -> None:
    with Spool(spool_dir, 64 * MiB) as first, Spool(spool_dir, 64 * MiB) as second:
        first.append(_body(1, 0), _meta(1, 0))
        assert second.claim_orphans() == 0
        assert second.pending == 0
        assert second.used_bytes > 0  # the other process's segment counts toward the bound
        second.append(_body(2, 0), _meta(2, 0))
        first.close()
        assert second.claim_orphans() == 1
        assert [r.body for r in second.records()] == [_body(1, 0), _body(2, 0)]


def test_threads_appending_at_once_each_get_their_record_kept_exactly_once(
    spool: Spool,
) -> None:
    def append_many(writer: int) -> None:
        for n in range(100):
            spool.append(_body(writer, n), _meta(writer, n))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(append_many, range(8)))
    records = list(spool.records())
    assert len(records) == 800
    for writer in range(8):
        mine = [r.body for r in records if r.meta.request_id.startswith(f"req-{writer}-")]
        assert mine == [_body(writer, n) for n in range(100)]


def _append_then_die(directory: str, writer: int, count: int, start: Barrier) -> None:
    spool = Spool(directory, 1 << 30, segment_bytes=64 * 1024)
    spool.open()
    start.wait()
    for n in range(count):
        spool.append(_body(writer, n), _meta(writer, n))
    os._exit(0)  # no close(): as if killed; the kernel releases the locks


def test_two_processes_appending_to_one_directory_at_once_are_both_recovered_intact(
    spool_dir: Path,
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    count = 300
    writers = [
        context.Process(target=_append_then_die, args=(str(spool_dir), w, count, start))
        for w in (1, 2)
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    names = {p.name.split("-")[1] for p in _segments(spool_dir)}
    assert names == {str(p.pid) for p in writers}  # one writer per segment file

    with Spool(spool_dir, 1 << 30) as recovery:
        assert recovery.pending == 2 * count
        by_writer: dict[str, list[bytes]] = {"1": [], "2": []}
        for record in recovery.records():
            by_writer[record.meta.request_id.split("-")[1]].append(record.body)
            recovery.remove(record)
    for writer in (1, 2):
        assert by_writer[str(writer)] == [_body(writer, n) for n in range(count)]
    assert list(spool_dir.iterdir()) == []


def _append_until_killed(directory: str, durable: Synchronized[int]) -> None:
    spool = Spool(directory, 1 << 30, segment_bytes=256 * 1024)
    spool.open()
    n = 0
    while True:
        spool.append(_body(3, n), _meta(3, n))
        n += 1
        durable.value = n


def test_every_record_appended_before_a_sigkill_is_recovered_in_order(spool_dir: Path) -> None:
    context = multiprocessing.get_context("spawn")
    durable = context.Value("i", 0)
    writer = context.Process(target=_append_until_killed, args=(str(spool_dir), durable))
    writer.start()
    deadline = time.monotonic() + 60
    while durable.value < 300 and time.monotonic() < deadline and writer.is_alive():
        time.sleep(0.01)
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(10)
    acknowledged = durable.value
    assert acknowledged >= 300

    with Spool(spool_dir, 1 << 30) as recovery:
        bodies = [r.body for r in recovery.records()]
    # Every acknowledged append is there, in order; at most the one in flight is extra.
    assert acknowledged <= len(bodies) <= acknowledged + 1
    assert bodies == [_body(3, n) for n in range(len(bodies))]


def test_the_file_format_is_a_header_then_length_prefixed_checksummed_records(
    spool: Spool, spool_dir: Path
) -> None:
    spool.append(b"<a/>", _meta(0, 0))
    [segment] = _segments(spool_dir)
    data = segment.read_bytes()
    assert data.startswith(FILE_HEADER)
    state, _crc, meta_len, body_len = RECORD_HEADER.unpack_from(data, len(FILE_HEADER))
    assert (state, body_len) == (b"P", 4)
    assert len(data) == len(FILE_HEADER) + RECORD_HEADER.size + meta_len + body_len
    assert data.endswith(b"<a/>")


def test_build_publisher_spools_only_when_a_spool_directory_is_set(tmp_path: Path) -> None:
    spooling = build_publisher(Settings.load(spool_dir=str(tmp_path), spool_max_bytes=12345))
    assert isinstance(spooling, SpoolingPublisher)
    assert isinstance(spooling.inner, AmqpPublisher)
    assert (spooling.spool.directory, spooling.spool.max_bytes) == (tmp_path, 12345)
    assert isinstance(build_publisher(Settings.load()), AmqpPublisher)
    assert isinstance(build_publisher(Settings.load(spool_dir="")), AmqpPublisher)


def test_a_spool_directory_removed_under_a_running_spool_is_made_again(
    spool: Spool, spool_dir: Path
) -> None:
    spool.append(_body(0, 0), _meta(0, 0))
    [record] = spool.records()
    spool.remove(record)
    spool_dir.rmdir()
    spool.append(_body(0, 1), _meta(0, 1))
    assert [r.body for r in spool.records()] == [_body(0, 1)]
