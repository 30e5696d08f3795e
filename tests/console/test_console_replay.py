"""``/replay`` in a real Chromium: archived history re-delivered to one consumer, its dry-run
count first, then its progress, the same function as `callback-fanout replay`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Page, expect

from tests.conftest import RUN_PREFIX
from tests.console.conftest import Console
from tests.support import console_consumers
from tests.support.postgres import database
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def archive_dsn() -> Iterator[str]:
    yield from database(f"cf_console_archive_{RUN_PREFIX}".lower())


@pytest.fixture
def console_config(tmp_path: Path, archive_dsn: str, prefix: str) -> Path:
    """An `archive` consumer beside the test consumers (its table this test's own)."""
    (tmp_path / "dsn.txt").write_text(archive_dsn)
    config = tmp_path / "callback-fanout.toml"
    table = "events_" + prefix.rsplit("-", maxsplit=1)[-1]
    config.write_text(
        f'[consumers.store]\nuse = "archive"\nroutes = ["#"]\n'
        f'dsn = {{ file = "dsn.txt" }}\ntable = "{table}"\n'
    )
    return config


@pytest.fixture(autouse=True)
def _checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


async def test_history_is_replayed_to_one_consumer_after_its_dry_run(
    console: Console, page: Page, archive_dsn: str, prefix: str
) -> None:
    console.broker.track(["store"], console.settings.retry_delays)
    table = "events_" + prefix.rsplit("-", maxsplit=1)[-1]
    for n in range(3):
        await console.post_job(f"archived-{n}")
    await eventually(lambda: len(console_consumers.HANDLED) == 3, timeout=20)

    async def archived() -> bool:
        connection = await asyncpg.connect(archive_dsn)
        try:
            count = await connection.fetchval(f"SELECT count(*) FROM {table}")
            return bool(count == 3)
        finally:
            await connection.close()

    await eventually(archived, timeout=20)
    await eventually(lambda: console.broker.count_is(console.dead("flaky"), 3), timeout=20)
    await console.login(page)
    await page.get_by_role("link", name="Replay").click()
    await page.get_by_label("Consumer").select_option("thumbs")
    await page.get_by_label("Since").fill("1h")
    await page.get_by_label("Rate").fill("50")
    await page.get_by_role("button", name="Dry run").click()
    await expect(page.locator("#plan-count")).to_contain_text("3 events to send")
    assert len(console_consumers.HANDLED) == 3  # a dry run sends nothing
    await console.shot(page, "replay")
    await page.get_by_role("button", name="Yes, replay 3").click()
    await expect(page.get_by_role("status")).to_contain_text("replay of 3 events to thumbs")
    await expect(page.locator("table.replays td", has_text="finished")).to_be_visible(
        timeout=15_000
    )
    await expect(page.locator("table.replays")).to_contain_text("3 / 3")
    await eventually(lambda: len(console_consumers.HANDLED) == 6, timeout=15)
    replayed = sorted(console_consumers.HANDLED[3:])
    assert replayed == [(f"archived-{n}", 1) for n in range(3)]
    await asyncio.sleep(1)  # flaky's retry delay is 0.2 s: a replay to it would show by now
    assert await console.broker.count(console.dead("flaky")) == 3  # flaky saw none of them
