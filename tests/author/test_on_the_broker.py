"""The author's surface on the real broker: the delivery's facts over retries, middleware from
an installed package around every consumer, and an event of another kind parked."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.conftest import SEEDS
from tests.support.broker import BrokerClient
from tests.support.system import RunningSystem
from tests.support.waiting import eventually
from workers import CallbackEvent, Delivery, SnapshotOperation, consumer
from workers.consumer import LoadedConsumer

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()


async def _started(settings: Settings, broker: BrokerClient, *targets: object) -> RunningSystem:
    loaded = [LoadedConsumer.from_target(target, "test") for target in targets]
    broker.track([c.spec.name for c in loaded], settings.retry_delays)
    return await RunningSystem.start(settings, loaded)


async def test_a_handler_learns_its_attempt_and_the_ingress_request_id_over_retries(
    settings: Settings, broker: BrokerClient
) -> None:
    seen: list[Delivery] = []

    @consumer(name="counts-tries", routes=["TaskFinish.#"], max_attempts=3)
    async def counts_tries(event: CallbackEvent, delivery: Delivery) -> None:
        seen.append(delivery)
        raise RuntimeError(f"try {delivery.attempt} fails")

    system = await _started(settings, broker, counts_tries)
    try:
        response = await system.post(OCR)
        assert response.status == 200
        dead = broker.topology.consumer("counts-tries", settings.retry_delays).dead
        await eventually(lambda: broker.count_is(dead, 1), timeout=20)
    finally:
        await system.stop()
    request_id = response.headers["X-Request-Id"]
    assert [(d.attempt, d.max_attempts, d.last_attempt) for d in seen] == [
        (1, 3, False),
        (2, 3, False),
        (3, 3, True),
    ]
    assert {(d.request_id, d.routing_key, d.consumer) for d in seen} == {
        (request_id, "TaskFinish.ImageOCR.Success", "counts-tries")
    }
    assert len({d.received_at for d in seen}) == 1
    [parked] = await broker.take_all(dead)
    assert (parked.headers or {})["x-last-error"] == "RuntimeError: try 3 fails"


async def test_an_event_of_another_kind_is_parked_at_once_naming_both_kinds(
    settings: Settings, broker: BrokerClient
) -> None:
    calls: list[str] = []

    @consumer(name="snapshots-only", routes=["TaskFinish.#"], max_attempts=5)
    async def snapshots_only(event: CallbackEvent[SnapshotOperation]) -> None:
        calls.append(event.routing_key)

    system = await _started(settings, broker, snapshots_only)
    try:
        assert (await system.post(OCR)).status == 200
        dead = broker.topology.consumer("snapshots-only", settings.retry_delays).dead
        await eventually(lambda: broker.count_is(dead, 1), timeout=20)
    finally:
        await system.stop()
    [parked] = await broker.take_all(dead)
    headers = parked.headers or {}
    assert headers["x-attempts"] == 1  # not retried
    assert headers["x-last-error"] == (
        "kind mismatch: 'snapshots-only' takes a Snapshot operation "
        "(CallbackEvent[SnapshotOperation]), event TaskFinish.ImageOCR.Success carries "
        "a ImageOCR operation (ImageOCROperation)"
    )
    assert headers["x-routing-key"] == "TaskFinish.ImageOCR.Success"
    assert calls == []


TRACING = """
from workers import CallbackEvent, CallNext, Delivery

JOURNAL: list[str] = []


class Outer:
    async def __call__(self, event: CallbackEvent, delivery: Delivery, call_next: CallNext) -> None:
        JOURNAL.append(f"outer before {delivery.consumer} try {delivery.attempt}")
        try:
            await call_next()
        except Exception as exc:
            JOURNAL.append(f"outer saw {type(exc).__name__} from {delivery.consumer}")
            raise
        JOURNAL.append(f"outer after {delivery.consumer}")


async def inner(event: CallbackEvent, delivery: Delivery, call_next: CallNext) -> None:
    JOURNAL.append(f"inner before {delivery.consumer}")
    await call_next()
"""


@pytest.fixture
def tracing_package(tmp_path: Path) -> Iterator[list[str]]:
    """An installed-looking package whose entry points add two middleware; its journal."""
    (tmp_path / "acme_tracing.py").write_text(textwrap.dedent(TRACING))
    dist = tmp_path / "acme_tracing-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-tracing\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[callback_fanout.middleware]\nb-inner = acme_tracing:inner\na-outer = acme_tracing:Outer\n"
    )
    sys.path.insert(0, str(tmp_path))
    import acme_tracing  # type: ignore[import-not-found]

    yield acme_tracing.JOURNAL
    sys.path.remove(str(tmp_path))
    sys.modules.pop("acme_tracing", None)


async def test_middleware_of_an_installed_package_runs_around_every_consumer(
    settings: Settings, broker: BrokerClient, tracing_package: list[str]
) -> None:
    handled: list[str] = []

    @consumer(name="steady", routes=["TaskFinish.#"])
    async def steady(event: CallbackEvent) -> None:
        handled.append("steady")

    @consumer(name="flaky", routes=["TaskFinish.#"], max_attempts=2)
    async def flaky(event: CallbackEvent, delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise RuntimeError("first try fails")
        handled.append("flaky")

    system = await _started(
        settings.model_copy(update={"entry_points": True}), broker, steady, flaky
    )
    try:
        assert (await system.post(OCR)).status == 200
        await eventually(lambda: sorted(handled) == ["flaky", "steady"], timeout=20)
    finally:
        await system.stop()
    by_consumer = {
        name: [line for line in tracing_package if line.endswith(name) or f" {name} " in line]
        for name in ("steady", "flaky")
    }
    assert by_consumer["steady"] == [
        "outer before steady try 1",
        "inner before steady",
        "outer after steady",
    ]
    assert by_consumer["flaky"] == [
        "outer before flaky try 1",
        "inner before flaky",
        "outer saw RuntimeError from flaky",  # re-raised: retried as without middleware
        "outer before flaky try 2",
        "inner before flaky",
        "outer after flaky",
    ]
