"""`status` against a broker with the management plugin (opt-in: the shared test broker has
none). Set ``STATUS_MANAGEMENT_AMQP_URL`` (its AMQP URL) and ``STATUS_MANAGEMENT_URL`` (its
management API, e.g. http://guest:guest@127.0.0.1:15672/)."""

from __future__ import annotations

import functools
import os

import pytest

from tests.conftest import SEEDS, StartSystem
from tests.support.system import Recorder
from tests.support.waiting import eventually
from tests.test_status_management import status_document

pytestmark = pytest.mark.broker

MANAGED_AMQP = os.environ.get("STATUS_MANAGEMENT_AMQP_URL", "")
MANAGED_API = os.environ.get("STATUS_MANAGEMENT_URL", "")


@pytest.fixture(scope="module")
def amqp_url() -> str:
    """This module's broker: the one with the management plugin (queues cleaned up on it)."""
    if not (MANAGED_AMQP and MANAGED_API):
        pytest.skip("set STATUS_MANAGEMENT_AMQP_URL and STATUS_MANAGEMENT_URL")
    return MANAGED_AMQP


async def test_with_the_api_status_finds_unconfigured_consumers_unacked_counts_and_rates(
    start_system: StartSystem,
) -> None:
    hidden = Recorder("hidden", ["TaskFinish.#"])
    system = await start_system([Recorder("log", ["#"]), hidden])
    for _ in range(3):
        assert (await system.post((SEEDS / "ocr.1.xml").read_bytes())).status == 200
    await eventually(lambda: len(hidden.events) == 3)
    run = functools.partial(status_document, system.settings, "--management-url", MANAGED_API)
    p = system.settings.prefix

    async def hidden_is_listed_with_its_rates() -> bool:
        code, document = await run()
        rows = {q["queue"]: q for q in document["queues"]}
        row = rows.get(f"{p}.consumer.hidden")
        return (
            code == 0
            and list(rows)[1:3] == [f"{p}.consumer.hidden", f"{p}.consumer.log"]
            and row is not None
            and (row["ready"], row["unacked"], row["consumers"]) == (0, 0, 1)
            and row["in_per_s"] is not None
            and row["out_per_s"] is not None
        )

    await eventually(hidden_is_listed_with_its_rates, timeout=30, interval=1.0)
    _, document = await run()
    assert document["management_api"] is not None
    assert document["notes"] == []
