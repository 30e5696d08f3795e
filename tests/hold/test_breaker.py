"""The circuit breaker of the built-in ``forward`` (on by default, here tuned in the
configuration file) against an endpoint that answers 500 and then heals: after N failures
nothing is taken for the cool-down, one event tries (half-open), and all are delivered once
the endpoint answers again."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from shared.configfile import ConfigFile
from shared.settings import Settings
from tests.hold.conftest import StartWorker, consumers_on, publish, queue_of, scraped
from tests.support.broker import BrokerClient
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import eventually
from workers.builtin.registry import BUILTINS
from workers.configured import build_configured
from workers.consumer import Breaker, ConsumerSpec
from workers.runtime.breaker import BreakerState, CircuitBreaker

pytestmark = pytest.mark.broker

FAILURES = 3
COOL_DOWN = 2.0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    # N failures open the breaker; the half-open try fails too; then the endpoint heals.
    hook = Receiver(answers=[Answer(500)] * (FAILURES + 1))
    await hook.start()
    yield hook
    await hook.stop()


async def test_forward_stops_taking_events_while_its_breaker_is_open_then_delivers_all(
    start_worker: StartWorker,
    settings: Settings,
    broker: BrokerClient,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    config = tmp_path / "fanout.toml"
    config.write_text(
        f"""
[consumers.billing]
use = "forward"
url = "{receiver.url}"
routes = ["#"]
concurrency = 1
max_attempts = 10
retry_delays = [0.2]
breaker = {{ failures = {FAILURES}, cool_down = {COOL_DOWN} }}
"""
    )
    [billing] = build_configured(ConfigFile.read(config), {})
    chosen = settings.model_copy(update={"retry_delays": [0.2]})
    with structlog.testing.capture_logs() as logs:
        worker = await start_worker([billing.consumer], settings_=chosen)
        queue = queue_of(settings, "billing")
        keys = await publish(broker, queue, 5)

        await eventually(lambda: len(receiver.received) == FAILURES)
        hold = worker.runners[0].hold
        await eventually(lambda: hold.state == "breaker open", timeout=1.0)
        await eventually(lambda: _unconsumed(broker, queue), timeout=1.0)  # consume cancelled
        await asyncio.sleep(COOL_DOWN / 2)
        assert len(receiver.received) == FAILURES  # nothing taken during the cool-down

        await eventually(lambda: len(receiver.received) == len(keys) + FAILURES + 1, timeout=20)
    at = [r.at for r in receiver.received]
    assert at[FAILURES] - at[FAILURES - 1] >= COOL_DOWN - 0.05  # the first cool-down
    assert at[FAILURES + 1] - at[FAILURES] >= COOL_DOWN - 0.05  # the try failed: again
    tries = Counter(r.headers["webhook-id"] for r in receiver.received)
    assert set(tries) == set(keys)
    assert sum(tries.values()) == len(keys) + FAILURES + 1  # at most N + 1 tries spent
    assert hold.state == "running"
    moves = [e["event"] for e in logs if str(e["event"]).startswith("breaker ")]
    assert moves == [
        "breaker open",
        "breaker half-open",
        "breaker open",
        "breaker half-open",
        "breaker closed",
    ]
    scrape = scraped(worker.metrics)
    transitions = "callback_fanout_consumer_breaker_transitions_total"
    assert scrape.value(transitions, consumer="billing", to="open") == 2
    assert scrape.value(transitions, consumer="billing", to="half-open") == 2
    assert scrape.value(transitions, consumer="billing", to="closed") == 1
    assert scrape.value("callback_fanout_consumer_breaker_state", consumer="billing") == 0
    assert await consumers_on(broker, queue) == (0, 1)


def test_forward_has_a_breaker_unless_its_table_turns_it_off(tmp_path: Path) -> None:
    config = tmp_path / "fanout.toml"
    config.write_text(
        """
[consumers.on]
use = "forward"
url = "http://127.0.0.1:9/hook"
routes = ["#"]

[consumers.off]
use = "forward"
url = "http://127.0.0.1:9/hook"
routes = ["#"]
breaker = false

[consumers.logged]
use = "log"
routes = ["#"]
"""
    )
    built = {
        c.consumer.spec.name: c.consumer.spec for c in build_configured(ConfigFile.read(config), {})
    }
    assert built["on"].breaker == Breaker(failures=20, cool_down=30.0)
    assert built["off"].breaker is None
    assert built["logged"].breaker is None
    assert BUILTINS["forward"].breaker == Breaker(20, 30.0)


async def test_give_up_does_not_count_and_a_success_resets_the_count() -> None:
    moves: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(Breaker(failures=2, cool_down=0.05), lambda a, b: moves.append((a, b)))
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state.label == "closed"  # never two in a row
    breaker.failed()
    assert breaker.state.label == "open"
    await eventually(lambda: breaker.state is BreakerState.HALF_OPEN, timeout=1.0)
    breaker.succeeded()
    assert [b for _, b in moves] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    spec = ConsumerSpec(name="x", routes=("#",), breaker=Breaker(1, 1.0))
    assert spec.breaker is not None


async def _unconsumed(broker: BrokerClient, queue: str) -> bool:
    return (await consumers_on(broker, queue))[1] == 0
