"""A consumer's rate limit: one budget for every replica when a Redis URL is set, each
process its own otherwise; waiting for it is never a failure and never an attempt."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from shared.settings import Settings
from tests.hold.conftest import StartWorker, Tally, publish, queue_of, tallying
from tests.support.broker import BrokerClient
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

REDIS_URL = "redis://127.0.0.1:6379/0"


def _rate(times: list[float]) -> float:
    """Events per second between the first and the last."""
    ordered = sorted(times)
    return (len(ordered) - 1) / (ordered[-1] - ordered[0])


async def test_a_global_limit_holds_two_replicas_to_one_budget(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    shared = settings.model_copy(update={"redis_url": SecretStr(REDIS_URL)})
    tallies = [Tally(), Tally()]
    replicas = [
        await start_worker([tallying("limited", tally, rate_limit=20)], settings_=shared)
        for tally in tallies
    ]
    assert {w.runners[0].hold.describe()["rate_scope"] for w in replicas} == {"global"}
    keys = await publish(broker, queue_of(settings, "limited"), 90)

    await eventually(lambda: sum(len(t.handled) for t in tallies) == 90, timeout=15)
    times = [at for t in tallies for _, _, at in t.handled]
    assert 17.0 <= _rate(times) <= 23.0  # 20/s within 15 %, the two replicas together
    assert all(len(t.handled) >= 10 for t in tallies)  # both took their share
    assert sorted(k for t in tallies for k in t.keys) == sorted(keys)
    assert {a for t in tallies for a in t.attempts} == {1}  # waiting is not an attempt


async def test_without_redis_each_process_has_its_own_budget(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    tally = Tally()
    worker = await start_worker([tallying("limited", tally, rate_limit=25)])
    assert worker.runners[0].hold.describe()["rate_scope"] == "process"
    await publish(broker, queue_of(settings, "limited"), 40)
    await eventually(lambda: len(tally.handled) == 40, timeout=10)
    assert 21.25 <= _rate([at for _, _, at in tally.handled]) <= 28.75
