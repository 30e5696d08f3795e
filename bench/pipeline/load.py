"""Load generation: wrk at saturation, the open-loop generator at fixed rates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.pipeline.common import CONNECTIONS, LUA, OPEN_LOOP_CONNECTIONS, ROOT, SEED
from bench.pipeline.procs import _env


@dataclass
class Load:
    """One load run's outcome (saturation or fixed rate), latencies in milliseconds."""

    tool: str
    offered: float | None
    throughput: float
    ok: int
    non_2xx: int
    errors: int
    p50: float
    p99: float
    p999: float
    dropped: int = 0
    unanswered: int = 0
    request_ids: list[str] = field(default_factory=list)
    rss_peak: float | None = None
    cpu: dict[str, float | None] = field(default_factory=dict)  # CpuMeter.per_request


def run_wrk(wrk: str, url: str, seconds: float, cpu: int | None = None) -> Load:
    """wrk at saturation: 1 thread, 32 connections, the seed POSTed by ``bench/post.lua``.

    ``cpu`` pins wrk to that core (``taskset``).
    """
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    argv = [*pin, wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "10s"]
    argv += ["-s", str(LUA), url, "--", str(SEED), "application/xml"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON "))
    s = json.loads(line.removeprefix("WRKJSON "))
    requests, non_2xx = s["requests"], s["status_errors"]
    errors = s["connect_errors"] + s["read_errors"] + s["write_errors"] + s["timeouts"]
    return Load(
        "wrk",
        None,
        requests / (s["duration_us"] / 1e6),
        requests - non_2xx,
        non_2xx,
        errors,
        s["p50_us"] / 1000,
        s["p99_us"] / 1000,
        s["p999_us"] / 1000,
    )


def run_loadgen(url: str, *, rate: float | None, seconds: float, ids: Path | None = None) -> Load:
    """The Python generator: open loop at ``rate``, or closed loop when ``rate`` is None."""
    argv = [sys.executable, "-m", "bench.loadgen", "--url", url, "--body", str(SEED)]
    argv += ["--duration", f"{seconds:g}"]
    if rate is None:
        argv += ["--closed", "--connections", str(CONNECTIONS)]
    else:
        argv += ["--rate", f"{rate:.0f}", "--connections", str(OPEN_LOOP_CONNECTIONS)]
    if ids is not None:
        argv += ["--ids", str(ids)]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, check=True, cwd=ROOT, env=_env()
    )
    s = json.loads(out.stdout)
    lat = s["latency_ms"]
    return Load(
        "loadgen" if rate is not None else "loadgen (closed)",
        rate,
        s["rate"],
        s["ok"],
        s["non_2xx"],
        s["errors"],
        lat["p50"],
        lat["p99"],
        lat["p999"],
        dropped=s["dropped"],
        unanswered=s["unanswered"],
        request_ids=ids.read_text().split() if ids is not None else [],
    )


def ensure_wrk(install: bool) -> str | None:
    """The wrk binary: installed with apt-get when missing and allowed; None when absent."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None
    print("wrk is missing: apt-get update && apt-get install -y wrk", flush=True)
    for argv in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "wrk"]):
        if subprocess.run(argv, capture_output=True, check=False).returncode != 0:
            return None
    return shutil.which("wrk")
