"""Running a role of the system as a child process, as production does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings

__all__ = ["RoleProcess", "free_port"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RoleProcess:
    """``callback-fanout <role>`` in a child process; stopped (SIGKILL) at the latest on close."""

    process: asyncio.subprocess.Process

    @classmethod
    async def start(
        cls,
        role: str,
        settings: Settings,
        *extra: str,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> RoleProcess:
        """Start it; its log lines (stderr) go to ``log`` when given, else nowhere."""
        args: Sequence[str] = [
            sys.executable,
            "-m",
            "callback_fanout",
            role,
            *("--amqp-url", ",".join(settings.broker_urls), "--prefix", settings.prefix),
            *("--retry-delays", ",".join(str(d) for d in settings.retry_delays)),
            *("--shutdown-grace", str(settings.shutdown_grace)),
            "--no-entry-points",
            *extra,
        ]
        with log.open("ab") if log is not None else contextlib.nullcontext() as stderr:
            process = await asyncio.create_subprocess_exec(
                *args,
                env={**os.environ, **(env or {})},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr if stderr is not None else asyncio.subprocess.DEVNULL,
            )
        return cls(process)

    def signal(self, sig: signal.Signals) -> None:
        if self.process.returncode is None:
            self.process.send_signal(sig)

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109 - a deadline for a child
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
