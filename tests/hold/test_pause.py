"""Pausing a consumer holds its events in its queue on every worker replica, untouched,
until it is resumed (or its pause ends by itself), across worker restarts."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
import structlog

from callback_fanout.consumers import pause, resume
from shared.settings import Settings
from shared.wire.events import encode, events_message
from tests.hold.conftest import StartWorker, Tally, consumers_on, publish, queue_of, tallying
from tests.support.broker import BrokerClient
from tests.support.waiting import eventually
from workers.testing import make_event

pytestmark = pytest.mark.broker


async def test_a_paused_consumer_takes_nothing_on_two_replicas_and_all_after_resume(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    tally = Tally()
    replicas = [await start_worker([tallying("held", tally)]) for _ in range(2)]
    queue = queue_of(settings, "held")
    assert (await consumers_on(broker, queue))[1] == 2

    with structlog.testing.capture_logs() as logs:
        started = time.monotonic()
        await pause(broker.connection, broker.topology, "held")
        await eventually(lambda: all(w.runners[0].hold.paused for w in replicas), timeout=2.0)
        await eventually(lambda: _consumers_are(broker, queue, 0), timeout=2.0)
        assert time.monotonic() - started < 2.0
    said = [e for e in logs if e["event"] == "consumer paused"]
    assert len(said) == 3  # the change, where it was made, and one line per replica
    assert all(e["by"] == "cli" and e["consumer"] == "held" for e in said)

    keys = await publish(broker, queue, 12)
    await asyncio.sleep(1.5)
    assert tally.handled == []
    assert await consumers_on(broker, queue) == (12, 0)  # waiting in its queue, none taken

    await resume(broker.connection, broker.topology, "held")
    await eventually(lambda: len(tally.handled) == 12)
    assert sorted(tally.keys) == sorted(keys)
    assert tally.attempts == [1] * 12  # neither retried nor counted while paused
    assert await consumers_on(broker, queue) == (0, 2)


async def test_handlers_running_when_paused_finish_and_nothing_else_starts(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    release = asyncio.Event()
    tally = Tally(release=release)
    worker = await start_worker([tallying("held", tally, concurrency=1)])
    queue = queue_of(settings, "held")
    [first] = await publish(broker, queue, 1)
    await eventually(lambda: _ready_is(broker, queue, 0))  # taken: its handler waits
    await pause(broker.connection, broker.topology, "held")
    await eventually(lambda: worker.runners[0].hold.paused is not None)
    later = await publish(broker, queue, 3)
    release.set()
    await eventually(lambda: tally.keys == [first])
    await asyncio.sleep(1.0)
    assert tally.keys == [first]
    assert await consumers_on(broker, queue) == (3, 0)
    await resume(broker.connection, broker.topology, "held")
    await eventually(lambda: sorted(tally.keys[1:]) == sorted(later))
    assert tally.attempts == [1, 1, 1, 1]


async def test_a_pause_survives_a_worker_restart_and_holds_a_new_replica(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    tally = Tally()
    first = await start_worker([tallying("held", tally)])
    queue = queue_of(settings, "held")
    await pause(broker.connection, broker.topology, "held")
    await eventually(lambda: first.runners[0].hold.paused is not None)
    await first.stop()

    keys = await publish(broker, queue, 5)
    restarted = await start_worker([tallying("held", tally)])
    assert restarted.ready  # ready and holding, not failing
    assert restarted.runners[0].hold.state == "paused"
    await asyncio.sleep(1.0)
    assert tally.handled == []
    assert await consumers_on(broker, queue) == (5, 0)

    await resume(broker.connection, broker.topology, "held")
    await eventually(lambda: sorted(tally.keys) == sorted(keys))
    assert tally.attempts == [1] * 5


async def test_pause_for_a_while_ends_by_itself_on_time(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    tally = Tally()
    worker = await start_worker([tallying("held", tally)])
    queue = queue_of(settings, "held")
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callback_fanout",
        "consumers",
        "pause",
        "held",
        "--for",
        "3s",
        *("--amqp-url", settings.broker_url, "--prefix", settings.prefix),
        "--no-entry-points",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await command.communicate()
    assert command.returncode == 0
    assert out.decode().startswith("paused held until 20")  # the deadline, in UTC
    await eventually(lambda: worker.runners[0].hold.paused is not None)
    paused = worker.runners[0].hold.paused
    assert paused is not None
    assert paused.until is not None
    keys = await publish(broker, queue, 4)
    await asyncio.sleep(max(0.0, paused.until - time.time() - 0.5))
    assert tally.handled == []  # the command is gone; the deadline is in the state
    await eventually(lambda: len(tally.handled) == 4, timeout=5.0)
    assert time.time() >= paused.until
    assert sorted(tally.keys) == sorted(keys)
    assert worker.runners[0].hold.state == "running"


async def _consumers_are(broker: BrokerClient, queue: str, n: int) -> bool:
    return (await consumers_on(broker, queue))[1] == n


async def _ready_is(broker: BrokerClient, queue: str, n: int) -> bool:
    return (await consumers_on(broker, queue))[0] == n


async def test_a_message_taken_but_not_started_is_handed_back_untouched_when_paused(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    release = asyncio.Event()
    tally = Tally(release=release)
    worker = await start_worker([tallying("held", tally, concurrency=2)])
    queue = queue_of(settings, "held")
    pair = [make_event(), make_event()]  # one message of two events: both slots taken
    channel = await broker.connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(
        events_message(pair[0].routing_key, [encode(e) for e in pair], pair[0]), queue
    )
    await channel.close()
    [waiting] = await publish(broker, queue, 1)  # delivered (prefetch 2), waits for a slot
    await eventually(lambda: _ready_is(broker, queue, 0))

    await pause(broker.connection, broker.topology, "held")
    await eventually(lambda: _ready_is(broker, queue, 1))  # handed back to its queue
    release.set()
    await eventually(lambda: len(tally.handled) == 2)
    assert sorted(tally.keys) == sorted(e.idempotency_key for e in pair)
    await asyncio.sleep(0.5)
    assert len(tally.handled) == 2

    await resume(broker.connection, broker.topology, "held")
    await eventually(lambda: len(tally.handled) == 3)
    assert tally.keys[2] == waiting
    assert tally.attempts == [1, 1, 1]
    assert worker.runners[0].hold.state == "running"


async def test_a_worker_that_starts_applies_each_consumer_s_latest_state_only(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    await start_worker([tallying("held", Tally())])
    for _ in range(3):
        await pause(broker.connection, broker.topology, "held")
        await resume(broker.connection, broker.topology, "held")
    await pause(broker.connection, broker.topology, "held", seconds=600)
    with structlog.testing.capture_logs() as logs:
        late = await start_worker([tallying("held", Tally())])
    assert late.runners[0].hold.state == "paused"
    said = [(e["event"], e.get("until")) for e in logs if "consumer" in str(e["event"])]
    paused = late.runners[0].hold.paused
    assert paused is not None
    assert ("consumer paused", paused.until) in said
    assert ("consumer resumed", None) not in said  # its history is not replayed in the log
