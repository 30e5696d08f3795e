"""The same callback delivered twice reaches a deduplicating consumer once, a plain one twice."""

from __future__ import annotations

import pytest
import structlog
from pydantic import SecretStr

from shared.settings import Settings
from tests.conftest import SEEDS, StartSystem
from tests.support.system import Recorder
from tests.support.waiting import eventually
from workers.runtime.dedupe import Claim, MemoryDedupeStore

pytestmark = pytest.mark.broker

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_callback_posted_twice_reaches_a_deduplicating_consumer_once(
    start_system: StartSystem, settings: Settings, store: str
) -> None:
    chosen = settings.model_copy(
        update={
            "dedupe_window": 60.0,
            "redis_url": SecretStr(REDIS_URL) if store == "redis" else None,
        }
    )
    deduped = Recorder("deduped", ["TaskFinish.#"], dedupe=True)
    plain = Recorder("plain", ["TaskFinish.#"])
    system = await start_system([deduped, plain], settings_=chosen)
    body = (SEEDS / "ocr.1.xml").read_bytes()
    with structlog.testing.capture_logs() as logs:
        first = await system.post(body)
        second = await system.post(body)
        assert first.status == second.status == 200
        assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
        await eventually(lambda: len(plain.events) == 2)
        await eventually(lambda: any(e["event"] == "duplicate dropped" for e in logs))
    assert plain.events[0].idempotency_key == plain.events[1].idempotency_key
    assert len(deduped.events) == 1
    assert len(deduped.calls) == 1


async def test_a_failed_handler_releases_its_claim_so_the_retry_runs() -> None:
    store = MemoryDedupeStore()
    assert await store.claim("k", 5.0) is Claim.FIRST
    assert await store.claim("k", 5.0) is Claim.BUSY
    await store.release("k")
    assert await store.claim("k", 5.0) is Claim.FIRST
    await store.done("k", 5.0)
    assert await store.claim("k", 5.0) is Claim.DONE


async def test_a_handled_key_is_forgotten_after_the_window() -> None:
    store = MemoryDedupeStore()
    await store.claim("k", 5.0)
    await store.done("k", 0.01)
    import asyncio

    await asyncio.sleep(0.05)
    assert await store.claim("k", 5.0) is Claim.FIRST
