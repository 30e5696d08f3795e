"""CPU accounting from /proc: each process, the broker, the machine idle share."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path

from bench.pipeline.procs import Proc

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and all its threads so far (None if unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _idle_seconds() -> float | None:
    """Idle time of all cores together so far, from ``/proc/stat``."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    return (int(first[4]) + int(first[5])) / _TICK  # idle, iowait


def broker_pid() -> int | None:
    """The local RabbitMQ node's process (``beam.smp``), when it runs on this machine."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "beam.smp":
                cmdline = (comm.parent / "cmdline").read_bytes()
                if b"rabbit" in cmdline:
                    return int(comm.parent.name)
    return None


class CpuMeter:
    """Where the machine's CPU went during one load run: server, broker, load generator.

    The load generator is the benchmark's child that finished inside the block (its CPU is
    in this process's ``RUSAGE_CHILDREN``); the broker is counted only when it runs here.
    """

    def __init__(self, server: Proc, broker: int | None) -> None:
        self.pids = {"server": server.pid, "broker": broker}
        self.used: dict[str, float | None] = {}

    def _read(self) -> dict[str, float | None]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        now: dict[str, float | None] = {
            name: _cpu_seconds(pid) if pid is not None else None for name, pid in self.pids.items()
        }
        now["load"] = children.ru_utime + children.ru_stime
        now["idle"] = _idle_seconds()
        now["wall"] = time.monotonic()
        return now

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *_exc: object) -> None:
        end = self._read()
        for name, value in end.items():
            before = self._start.get(name)
            self.used[name] = None if value is None or before is None else value - before

    def per_request(self, requests: int) -> dict[str, float | None]:
        """CPU microseconds per request of each process, and the machine's idle share."""
        out: dict[str, float | None] = {
            name: (1e6 * used / requests) if used is not None and requests else None
            for name, used in self.used.items()
            if name not in ("idle", "wall")
        }
        idle, wall = self.used.get("idle"), self.used.get("wall")
        out["idle_pct"] = (
            100 * idle / (wall * (os.cpu_count() or 1)) if idle is not None and wall else None
        )
        return out
