"""Paths, names and the run plan the sections share."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


SEED = ROOT / "workers" / "testing" / "seeds" / "ocr.1.xml"


RESULTS = ROOT / "bench" / "results"


DOCS_PLOT = ROOT / "docs" / "bench-latency.png"


LUA = ROOT / "bench" / "post.lua"


CONNECTIONS = 32  # wrk's connections at saturation (the load)


OPEN_LOOP_CONNECTIONS = 64  # the open-loop generator's pool (a real sender opens more)


NOOP_CONSUMER = "bench.noop_consumer"


NOOP_NAME = "bench-noop"


NOOP = "no-op aiohttp"


NAIVE = "naive: a publish per request"


GROUP = "naive handler + group commit"


FSYNC = "naive handler + local fsync, no broker"


APP = "our HTTP app, no broker"
OURS = "callback-fanout ingress"


#: The sections, in the order a full run takes them (``--section`` picks some).
SECTIONS = (
    "http",
    "pinned",
    "metrics",
    "e2e",
    "roles",
    "router",
    "backlog",
    "parser",
    "messages",
)


@dataclass(frozen=True)
class Plan:
    """How long each section runs: the full run or ``--quick``."""

    rounds: int
    saturation_seconds: float
    warmup_seconds: float
    fractions: tuple[float, ...]
    rate_seconds: float
    sustained_seconds: float
    e2e_seconds: float
    e2e_setups: tuple[tuple[int, int], ...]  # (routers, workers)
    backlog_events: int
    router_bodies: int
    drain_timeout: float
    role_bodies: int  # raw bodies per round of the roles section
    metrics_rounds: int = 6  # rounds of the metrics section (on and off saturated together)

    @classmethod
    def choose(cls, quick: bool) -> Plan:
        if quick:
            setups = ((1, 1), (2, 2))
            return cls(1, 5, 1, (0.1, 0.25, 0.5), 3, 8, 2, setups, 20_000, 5_000, 60, 3_000, 4)
        return cls(
            3,
            8,
            2,
            (0.05, 0.1, 0.15, 0.25, 0.5, 0.75),
            5,
            30,
            3,
            ((1, 1), (1, 2), (2, 2)),
            100_000,
            20_000,
            120,
            5_000,
        )


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024**2:.0f} GiB"
    return f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}"
