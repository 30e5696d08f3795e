"""The console's fixtures: a running system on the real broker (with its history in a
PostgreSQL database of this run and each role's admin port), the console in front of it, and
a real Chromium (Debian's package, driven by Playwright) whose console must stay free of
errors on every page."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
from pydantic import SecretStr

from callback_fanout.console.service import ConsoleService
from shared.settings import Settings
from tests.conftest import RUN_PREFIX, SEEDS
from tests.support import console_consumers
from tests.support.broker import BrokerClient
from tests.support.postgres import database
from tests.support.system import RunningSystem
from workers.loader import consumers_of

__all__ = ["TOKEN", "Console", "body_of_job"]

#: Where the browser is: Debian's package (`.ci/setup` installs it).
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN = "s3cret-0123456789abcdef"  # the token named oncall
#: Where the screenshots of the README go when asked (`make screenshots`).
SHOTS = os.environ.get("CALLBACK_FANOUT_SCREENSHOTS")
_SEED = (SEEDS / "pic-process.1.json").read_bytes()
_SEED_JOB = b"c93984788066911ed89ed352d4d9d2084"


def body_of_job(job_id: str) -> bytes:
    """A real callback (the pic-process seed) of job ``job_id``."""
    return _SEED.replace(_SEED_JOB, job_id.encode())


@dataclass
class Console:
    system: RunningSystem
    service: ConsoleService
    broker: BrokerClient
    errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.bound_port}"

    @property
    def settings(self) -> Settings:
        return self.system.settings

    def queue(self, consumer: str) -> str:
        return self.broker.topology.consumer(consumer, ()).main

    def dead(self, consumer: str) -> str:
        return self.broker.topology.consumer(consumer, ()).dead

    async def post_job(self, job_id: str) -> None:
        response = await self.system.post(body_of_job(job_id), "application/json")
        assert response.status == 200

    async def login(self, page: Page) -> None:
        await page.goto(self.url + "/")
        await page.get_by_label("Token").fill(TOKEN)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(self.url + "/")

    async def shot(self, page: Page, name: str) -> None:
        """A screenshot of the page for the docs, when asked."""
        if SHOTS:  # playwright makes the directory
            await page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


@pytest.fixture(scope="session")
def console_history_dsn() -> Iterator[str]:
    yield from database(f"cf_console_{RUN_PREFIX}".lower())


@pytest.fixture
def console_config() -> Path | None:
    """The configuration file of the system and its console (a test module may give one)."""
    return None


@pytest.fixture
async def console(
    settings: Settings,
    broker: BrokerClient,
    console_history_dsn: str,
    console_config: Path | None,
) -> AsyncIterator[Console]:
    console_consumers.HANDLED.clear()
    console_consumers.FAILING["flaky"] = True
    chosen = settings.model_copy(
        update={
            "consumers": console_consumers.TARGETS,
            "history_dsn": SecretStr(console_history_dsn),
            "config": console_config,
        }
    )
    broker.track(["thumbs"], chosen.retry_delays)
    broker.track(["flaky"], [0.2])
    loaded = consumers_of(chosen, os.environ)
    system = await RunningSystem.start(chosen, loaded, admin=True)
    urls = [system.admin_url(role, "") for role in ("ingress", "worker")]
    console_settings = chosen.model_copy(
        update={
            "console_port": 0,
            "console_token": [SecretStr(f"oncall={TOKEN}")],
            "console_role_urls": urls,
        }
    )
    service = ConsoleService(console_settings, interval=1.0)
    try:
        await service.start()
        yield Console(system, service, broker)
    finally:
        await service.stop()
        await system.stop()


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test-setup` installs Debian's chromium")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, console: Console) -> AsyncIterator[Page]:
    """A page whose console errors and uncaught exceptions fail the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()

    def said(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            console.errors.append(f"{message.type}: {message.text} ({opened.url})")

    opened.on("console", said)
    opened.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc} ({opened.url})"))
    yield opened
    await context.close()
    assert console.errors == [], "the browser's console said:\n" + "\n".join(console.errors)
