"""The real ``forward`` and ``archive``, declared in a TOML file, run by the ``run`` command
through the broker; the command's own admin port counts exactly what happened."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from shared.settings import Settings
from tests.conftest import SEEDS
from tests.support.broker import BrokerClient
from tests.support.metrics import scrape
from tests.support.processes import RoleProcess, free_port
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

SECRET = "whsec_" + base64.b64encode(b"f" * 32).decode()
OCR = (SEEDS / "ocr.1.xml").read_bytes()
TRANSLATION = (SEEDS / "translation.1.xml").read_bytes()
GARBAGE = b"\x00not a callback at all"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver([SECRET], [Answer(503)])  # the first POST fails: one retry
    await server.start()
    yield server
    await server.stop()


async def test_run_with_a_file_forwards_archives_and_counts_each_outcome_exactly(  # noqa: PLR0917
    settings: Settings,
    broker: BrokerClient,
    receiver: Receiver,
    pg_dsn: str,
    pg: asyncpg.Connection,
    table: str,
    tmp_path: Path,
) -> None:
    config = tmp_path / "fanout.toml"
    config.write_text(
        '[consumers.billing]\nuse = "forward"\nroutes = ["TaskFinish.#"]\n'
        f'url = "{receiver.url}"\nsecret = {{ env = "BILLING_SECRET" }}\n\n'
        '[consumers.store]\nuse = "archive"\nroutes = ["TaskFinish.#"]\n'
        f'dsn = {{ env = "ARCHIVE_DSN" }}\ntable = "{table}"\n'
    )
    broker.track(["billing", "store"], settings.retry_delays)
    public, admin = free_port(), free_port()
    process = await RoleProcess.start(
        "run", settings, "--config", str(config), "--spool-dir", str(tmp_path / "spool"),
        *("--host", "127.0.0.1", "--port", str(public), "--health-port", str(admin)),
        env={"BILLING_SECRET": SECRET, "ARCHIVE_DSN": pg_dsn},
    )  # fmt: skip
    metrics = f"http://127.0.0.1:{admin}/metrics"
    events = "callback_fanout_consumer_events_total"
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{admin}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, timeout=30, interval=0.1)
            for body in (OCR, TRANSLATION, GARBAGE):
                async with http.post(f"http://127.0.0.1:{public}/callbacks", data=body) as sent:
                    assert sent.status == 200

            async def settled() -> bool:
                counts = await scrape(http, metrics)
                return (
                    counts.value(events, consumer="billing", outcome="handled") == 2
                    and counts.value(events, consumer="store", outcome="handled") == 2
                )

            await eventually(settled, timeout=30, interval=0.2)
            counts = await scrape(http, metrics)
    finally:
        await process.close()

    assert counts.value("callback_fanout_ingress_requests_total", outcome="accepted") == 3
    assert counts.value("callback_fanout_router_bodies_total", outcome="routed") == 2
    assert counts.value("callback_fanout_router_bodies_total", outcome="parked") == 1
    for consumer, retried in (("billing", 1), ("store", 0)):
        assert counts.value(events, consumer=consumer, outcome="retried") == retried
        assert counts.value(events, consumer=consumer, outcome="parked") == 0

    # forward: both events, signed with the file's secret, the 503 retried
    assert len(receiver.received) == 3
    assert {r.verified_by for r in receiver.received} == {(0,)}
    # archive: both events, one row each, in the file's table
    stored = await pg.fetch(f'SELECT job_id FROM "{table}" ORDER BY job_id')
    assert sorted(r["job_id"] for r in stored) == sorted(
        ["a3c193f288b2c11eeb60f39de2f86f409", "ac34be3aa0bf411ed9ce39d7cc972e427"]
    )
