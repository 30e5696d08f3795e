"""One router alone on a backlog of raw bodies: events/s and CPU per event."""

from __future__ import annotations

import time
import urllib.request
from typing import TYPE_CHECKING

from bench.pipeline.brokerops import broker, consumers_on, fill_raw
from bench.pipeline.common import SEED, wait_until
from bench.pipeline.cpu import CpuMeter
from bench.pipeline.procs import free_port

if TYPE_CHECKING:
    from bench.pipeline.runner import Bench


def run_router(bench: Bench) -> None:
    """One router alone on a backlog of raw bodies: events/s and CPU per event."""
    from shared.callbacks.parser import parse_callback
    from shared.topology import Topology

    n = bench.plan.router_bodies
    prefix = f"{bench.prefix}-router"
    bench.prefixes.append(prefix)
    topology = Topology(prefix)
    expected = n * len(parse_callback(SEED.read_bytes()))
    print(f"router alone: a backlog of {n:,} raw bodies", flush=True)
    messages = broker(fill_raw, bench.url, prefix, n)
    admin = free_port()
    router = bench.start_role("router", "router-alone", prefix, "--health-port", str(admin))
    # The clock starts once it consumes: its start-up (imports, connecting) is not routing.
    wait_until(lambda: broker(consumers_on, bench.url, topology.raw) >= 1, 60, 0.02)

    def routed() -> bool:
        # Its own count of the bodies whose events are confirmed: the events travel several
        # to a message, so the unrouted queue's message count says nothing of them.
        return _routed_bodies(admin) >= n

    t0 = time.monotonic()
    with CpuMeter(router, bench.broker_pid) as meter:
        finished = wait_until(routed, bench.plan.drain_timeout, 0.1)
    elapsed = time.monotonic() - t0
    router.stop()
    cpu = meter.per_request(expected)
    bench.results["router"] = {
        "bodies": n,
        "messages": messages,
        "events": expected,
        "seconds": elapsed,
        "finished": finished,
        "events_per_second": expected / elapsed if finished and elapsed > 0 else 0.0,
        "router_cpu_us": cpu["server"],
        "broker_cpu_us": cpu["broker"],
    }
    print(
        f"  {expected:,} events in {elapsed:.1f}s"
        f"{'' if finished else ' (did not finish)'}; router CPU "
        f"{bench.results['router']['router_cpu_us'] or 0:.0f} us/event",
        flush=True,
    )


def _routed_bodies(port: int) -> int:
    """``callback_fanout_router_bodies_total{outcome="routed"}`` from the router's admin port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith('callback_fanout_router_bodies_total{outcome="routed"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0
