"""The console while its broker is away: a page says so, at once and in words, and the
console serves again when the broker is back."""

from __future__ import annotations

import aiohttp
import pytest

from callback_fanout.console import web as console_web
from callback_fanout.console.service import ConsoleService
from shared.settings import Settings
from tests.support.proxy import CuttableProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


async def test_a_page_says_the_broker_is_away_and_serves_again_when_it_is_back(
    broker_proxy_settings: tuple[Settings, CuttableProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, proxy = broker_proxy_settings
    monkeypatch.setattr(console_web, "PAGE_SECONDS", 3.0)
    service = ConsoleService(settings.model_copy(update={"console_port": 0}), interval=1.0)
    await service.start()
    url = f"http://127.0.0.1:{service.bound_port}/parked"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                assert response.status == 200
            proxy.cut()
            async with http.get(url) as response:
                assert response.status == 503
                said = await response.text()
            assert "the broker did not answer" in said
            assert "Traceback" not in said
            proxy.restore()

            async def served() -> bool:
                async with http.get(url) as response:
                    return response.status == 200

            await eventually(served, timeout=30, interval=0.5)
    finally:
        proxy.restore()
        await service.stop()
