"""Fixtures for the security tests: an ingress with security settings, clients that post
from chosen loopback addresses (127.0.0.0/8 is all loopback on Linux), fresh secrets."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from shared.settings import Settings
from tests.conftest import StartSystem
from tests.support.system import Recorder, RunningSystem

#: A small TaskFinish callback the parser turns into one ``TaskFinish.ImageOCR.Success``.
OCR_JSON = (
    b'{"EventName":"TaskFinish","JobsDetail":{"Code":"Success","Message":"Success",'
    b'"JobId":"j-security-1","State":"Success","Tag":"ImageOCR","Input":{"BucketId":'
    b'"examplebucket-1250000000","Object":"a.jpg","Region":"ap-guangzhou"}}}'
)


def new_secret() -> str:
    """A fresh token secret, as an operator would make one."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass
class Ingress:
    """A running ingress (with router and worker when asked) and clients to reach it."""

    system: RunningSystem
    _sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.system.settings

    @property
    def port(self) -> int:
        assert self.system.ingress is not None
        return self.system.ingress.port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def session(self, source: str = "127.0.0.1") -> aiohttp.ClientSession:
        """A client session whose connections come from ``source``."""
        if source not in self._sessions:
            connector = aiohttp.TCPConnector(local_addr=(source, 0))
            self._sessions[source] = aiohttp.ClientSession(connector=connector)
        return self._sessions[source]

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        source: str = "127.0.0.1",
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        sent = {"Content-Type": content_type, **(headers or {})}
        async with self.session(source).request(
            method, self.url(path), data=body, headers=sent
        ) as response:
            return Reply(response.status, response.headers, await response.read())

    async def post(self, path: str, body: Any = OCR_JSON, **kwargs: Any) -> Reply:
        return await self.request("POST", path, body, **kwargs)

    def admin_url(self, path: str) -> str:
        """``path`` on the ingress's admin port."""
        return self.system.admin_url("ingress", path)

    async def readiness(self) -> dict[str, Any]:
        """The ingress's facts on its admin port's /readyz (the callback port's says only
        whether it is ready)."""
        async with self.session().get(self.admin_url("/readyz")) as response:
            facts: dict[str, Any] = (await response.json())["roles"]["ingress"]
            return facts

    async def get_json(self, path: str) -> dict[str, Any]:
        async with self.session().get(self.url(path)) as response:
            data: dict[str, Any] = await response.json()
            return data

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()


StartIngress = Callable[..., Awaitable[Ingress]]


def with_overrides(settings: Settings, **overrides: object) -> Settings:
    """``settings`` with ``overrides``, validated as the command line would be."""
    return Settings.load(**{**settings.model_dump(), **overrides})


@pytest.fixture
async def start_ingress(
    start_system: StartSystem, settings: Settings
) -> AsyncIterator[StartIngress]:
    """``await start_ingress(recorders=(), full=False, **setting_overrides)``: the ingress
    alone (``full``: with router and worker), stopped at teardown."""
    started: list[Ingress] = []

    async def start(
        recorders: Sequence[Recorder] = (), *, full: bool = False, **overrides: object
    ) -> Ingress:
        chosen = with_overrides(settings, **overrides)
        system = await start_system(
            recorders, settings_=chosen, router=full, worker=full, admin=True
        )
        assert system.ingress is not None
        assert system.ingress.publisher.ready
        ingress = Ingress(system)
        started.append(ingress)
        return ingress

    yield start
    for ingress in started:
        await ingress.close()
