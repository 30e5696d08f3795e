"""A local webhook receiver for the ``forward`` tests: scripted answers, every request kept,
every signature checked with the ``standardwebhooks`` package (an independent
implementation of the spec)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict
from standardwebhooks import Webhook
from standardwebhooks.exceptions import WebhookVerificationError

__all__ = ["Answer", "Received", "Receiver"]


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    at: float
    headers: CIMultiDict[str]  # names case-insensitive, as in HTTP
    body: bytes
    content_type: str
    verified_by: tuple[int, ...]  # indexes of the secrets whose check passed


class Receiver:
    """Answers each request with the next scripted :class:`Answer` (then 200)."""

    def __init__(self, secrets: Sequence[str] = (), answers: Sequence[Answer] = ()) -> None:
        self.webhooks = [Webhook(s) for s in secrets]
        self.answers = list(answers)
        self.received: list[Received] = []
        self.port = 0
        self.tls = False
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    async def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=tls)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        self.tls = tls is not None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified = []
        for index, webhook in enumerate(self.webhooks):
            try:
                webhook.verify(body, headers, json_parse=False)
            except WebhookVerificationError:
                continue
            verified.append(index)
        self.received.append(
            Received(
                asyncio.get_running_loop().time(),
                CIMultiDict(request.headers),
                body,
                request.headers.get("Content-Type", ""),
                tuple(verified),
            )
        )
        answer = self.answers.pop(0) if self.answers else Answer()
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
