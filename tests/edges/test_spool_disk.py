"""The spool on a failing disk: ENOSPC or EIO on a write or an fsync refuses that request (503,
never 200), what was spooled before stays readable and is forwarded in order, and bodies are
spooled again once the disk recovers. The errors are injected at the file calls."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingress.groupcommit import RawMeta
from ingress.spool import Spool
from shared.errors import BrokerUnavailable
from shared.settings import Settings
from tests.reliability.test_spool_ingress import (
    _GC_OF_FAILED_CONNECTS_IN_A_THREAD,
    InProcessIngress,
    _body,
    _post,
    _raw_bodies,
    _spooled_files,
)
from tests.support.broker import BrokerClient
from tests.support.proxy import CuttableProxy
from tests.support.waiting import eventually

#: The file calls the spool makes to write and sync, as the module sees them.
CALLS = ("pwrite", "fdatasync", "fsync")


class FailingDisk:
    """Makes the spool's file calls raise ``OSError(code)`` while ``failing`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failing: dict[str, int] = {}  # call name -> errno
        self.raised = 0
        for name in CALLS:
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            code = self.failing.get(name)
            if code is not None:
                self.raised += 1
                raise OSError(code, os.strerror(code))
            return real(*args)

        return call

    def fail(self, code: int, *calls: str) -> None:
        self.failing = dict.fromkeys(calls or CALLS, code)

    def recover(self) -> None:
        self.failing = {}


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[FailingDisk]:
    failing = FailingDisk(monkeypatch)
    yield failing
    failing.recover()


def _meta(n: int) -> RawMeta:
    return RawMeta(
        request_id=f"req-{n}",
        received_at=1_700_000_000.0 + n,
        content_type="application/xml",
        source_address="10.0.0.7",
        headers={},
        token_name=None,
    )


def _bodies(spool: Spool) -> list[bytes]:
    return [record.body for record in spool.records()]


@pytest.mark.parametrize(
    ("code", "calls"),
    [
        (errno.ENOSPC, ("pwrite",)),
        (errno.EIO, ("pwrite",)),
        (errno.EIO, ("fdatasync",)),
        (errno.ENOSPC, ("fdatasync",)),
    ],
    ids=["enospc-write", "eio-write", "eio-fsync", "enospc-fsync"],
)
def test_a_disk_error_refuses_that_append_keeps_the_earlier_ones_and_passes(
    tmp_path: Path, disk: FailingDisk, code: int, calls: tuple[str, ...]
) -> None:
    spool = Spool(tmp_path / "spool", 1 << 20, disk_retry=0.2)
    with spool:
        for n in range(3):
            spool.append(b"before-%d" % n, _meta(n))
        disk.fail(code, *calls)
        with pytest.raises(BrokerUnavailable, match=os.strerror(code)):
            spool.append(b"refused", _meta(3))
        assert disk.raised >= 1
        # Within the pause: refused at once, without touching the disk.
        raised = disk.raised
        with pytest.raises(BrokerUnavailable, match="out of service"):
            spool.append(b"refused too", _meta(4))
        assert disk.raised == raised
        assert not spool.can_accept()
        assert spool.pending == 3
        assert _bodies(spool) == [b"before-0", b"before-1", b"before-2"]  # still readable

        disk.recover()
        time.sleep(0.25)
        assert spool.can_accept()
        for n in range(5, 8):
            spool.append(b"after-%d" % n, _meta(n))
        expected = [b"before-0", b"before-1", b"before-2", b"after-5", b"after-6", b"after-7"]
        assert spool.pending == 6
        assert _bodies(spool) == expected
        for record in list(spool.records()):
            spool.remove(record)
        assert spool.pending == 0
    assert _spooled_files(tmp_path / "spool") == []  # every segment removed once forwarded
    with Spool(tmp_path / "spool", 1 << 20) as reopened:  # nothing left behind to resend
        assert _bodies(reopened) == []


def test_a_disk_that_keeps_failing_is_tried_again_after_each_pause(
    tmp_path: Path, disk: FailingDisk
) -> None:
    spool = Spool(tmp_path / "spool", 1 << 20, disk_retry=0.1)
    with spool:
        spool.append(b"kept", _meta(0))
        disk.fail(errno.EIO, "fdatasync", "fsync")
        for _ in range(3):
            before = disk.raised
            with pytest.raises(BrokerUnavailable, match="Input/output error"):
                spool.append(b"refused", _meta(1))
            assert disk.raised > before  # the disk was tried, on a new segment
            time.sleep(0.12)
        disk.recover()
        spool.append(b"after", _meta(2))
        assert _bodies(spool) == [b"kept", b"after"]


@pytest.mark.broker
@_GC_OF_FAILED_CONNECTS_IN_A_THREAD
@pytest.mark.parametrize(
    "fault", [(errno.ENOSPC, "pwrite"), (errno.EIO, "fdatasync")], ids=["enospc-write", "eio-fsync"]
)
async def test_with_the_broker_away_a_failing_disk_answers_503_and_delivers_what_it_answered_200(
    broker_proxy_settings: tuple[Settings, CuttableProxy],
    broker: BrokerClient,
    tmp_path: Path,
    disk: FailingDisk,
    fault: tuple[int, str],
) -> None:
    settings, proxy = broker_proxy_settings
    spool_dir = tmp_path / "spool"
    ingress = InProcessIngress(settings, spool_dir)
    ingress.publisher.spool.disk_retry = 0.3
    await ingress.start()
    await eventually(lambda: ingress.publisher.inner.ready)
    proxy.cut()  # the broker is away: every body goes to the spool
    accepted: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:
            for n in range(5):
                assert (await _post(http, ingress.url, _body(n)))[0] == 200
                accepted.append(n)
            disk.fail(*fault)
            for n in range(5, 10):
                status, _ = await _post(http, ingress.url, _body(n))
                assert status == 503, n  # never 200 for a body not on disk
            assert [r.body for r in ingress.publisher.spool.records()] == [
                _body(n) for n in accepted
            ]
            disk.recover()
            await eventually(ingress.publisher.spool.can_accept, timeout=5)
            for n in range(10, 15):
                assert (await _post(http, ingress.url, _body(n)))[0] == 200
                accepted.append(n)
        proxy.restore()
        await eventually(lambda: ingress.publisher.spool.pending == 0, timeout=30)
        await eventually(lambda: _spooled_files(spool_dir) == [], timeout=10)
    finally:
        proxy.restore()
        await ingress.stop()
    delivered = [body for _, body, _ in await _raw_bodies(broker)]
    assert delivered == [_body(n) for n in accepted]  # in order, none of the refused
