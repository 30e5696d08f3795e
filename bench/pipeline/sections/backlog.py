"""A worker draining a backlog: events/s and memory."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench.pipeline.brokerops import _progress, broker, fill_backlog

if TYPE_CHECKING:
    from bench.pipeline.runner import Bench


def run_backlog(bench: Bench) -> None:
    plan = bench.plan
    prefix = f"{bench.prefix}-backlog"
    bench.prefixes.append(prefix)
    n = plan.backlog_events
    print(f"worker memory: a backlog of {n:,} events drains", flush=True)
    size = broker(fill_backlog, bench.url, prefix, n)
    progress = bench.logs / "progress-backlog"
    worker = bench.start_worker("worker-backlog", prefix, progress)
    points: list[tuple[int, float]] = []  # (events handled, RSS MB)

    t0 = time.monotonic()
    deadline = t0 + plan.drain_timeout
    while time.monotonic() < deadline:
        rss = worker.rss_mb()
        count = _progress(progress)[0]
        if rss is not None:
            points.append((count, rss))
        if count >= n:
            break
        time.sleep(0.25)
    elapsed = time.monotonic() - t0
    worker.stop()
    done = _progress(progress)[0]

    def rss_at(share: float) -> float | None:
        return next((mb for c, mb in points if c >= share * n), None)

    bench.results["backlog"] = {
        "events": n,
        "bytes": size,
        "handled": done,
        "seconds": elapsed,
        "events_per_second": done / elapsed if elapsed else 0.0,
        "rss_at_10": rss_at(0.1),
        "rss_at_50": rss_at(0.5),
        "rss_at_90": rss_at(0.9),
        "rss_peak": max((mb for _, mb in points), default=None),
        "rss_first": points[0][1] if points else None,
        "points": points[:: max(1, len(points) // 200)],
    }
    b = bench.results["backlog"]
    print(
        f"  drained {done:,}/{n:,} in {elapsed:.1f}s; RSS at 10/50/90%: "
        f"{b['rss_at_10']}/{b['rss_at_50']}/{b['rss_at_90']} MB, peak {b['rss_peak']} MB",
        flush=True,
    )
