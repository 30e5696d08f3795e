"""The processes the benchmark starts, and their memory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.pipeline.common import ROOT


@dataclass
class Proc:
    """A process the benchmark started; stopped (SIGTERM, then SIGKILL) at the end."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_mb(self) -> float | None:
        """Resident memory now, in MB (None once the process is gone)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


class Sampler:
    """Samples a process's RSS in the background."""

    def __init__(self, proc: Proc, interval: float = 0.5) -> None:
        self.proc = proc
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (monotonic time, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.proc.rss_mb()
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float | None:
        return max((mb for _, mb in self.samples), default=None)


def free_port() -> int:
    """A port nobody listens on (bound without SO_REUSEPORT, so a stale server shows)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float, proc: Proc) -> None:
    """Wait until ``url`` answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early; see {proc.log}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready at {url} within {timeout:.0f}s; see {proc.log}")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env
