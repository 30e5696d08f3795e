"""End to end: HTTP in -> routers -> no-op consumers, events/s."""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import TYPE_CHECKING, Any

from bench.pipeline.brokerops import _progress, broker, consumers_on, ready_messages
from bench.pipeline.common import NOOP_NAME, SEED, wait_until
from bench.pipeline.procs import Sampler
from bench.pipeline.sections.roles import parser_cpu_us

if TYPE_CHECKING:
    from bench.pipeline.runner import Bench


def run_e2e(bench: Bench) -> None:
    from shared.callbacks.parser import parse_callback

    per_body = len(parse_callback(SEED.read_bytes()))
    print("end to end: HTTP in -> router -> no-op consumer", flush=True)
    out = []
    parser = [parser_cpu_us()]  # the parser's own single-thread rate, before and after
    for routers, workers in bench.plan.e2e_setups:
        if bench.time_left():
            out.append(_e2e(bench, routers, workers, per_body))
    parser.append(parser_cpu_us())
    bench.results["e2e"] = out
    bench.results["events_per_body"] = per_body
    bench.results["parser_events_per_second"] = 1e6 / statistics.median(parser)


def _e2e(bench: Bench, routers: int, workers: int, per_body: int) -> dict[str, Any]:
    from shared.settings import Settings
    from shared.topology import Topology

    plan = bench.plan
    prefix = f"{bench.prefix}-e2e{routers}{workers}"
    topology = Topology(prefix)
    main = topology.consumer(NOOP_NAME, Settings.load().retry_delays).main
    progress = bench.logs / f"progress-{routers}-{workers}"
    worker_procs = [
        bench.start_worker(f"worker-{routers}{workers}-{i}", prefix, progress)
        for i in range(workers)
    ]
    router_procs = [
        bench.start_role("router", f"router-{routers}{workers}-{i}", prefix) for i in range(routers)
    ]
    wait_until(lambda: broker(consumers_on, bench.url, main) >= workers, 60)
    ingress = bench.start_ingress(f"ingress-e2e{routers}{workers}", prefix)
    wait_until(lambda: broker(consumers_on, bench.url, topology.raw) >= routers, 60)
    with contextlib.ExitStack() as stack:
        samplers = [stack.enter_context(Sampler(p, 1.0)) for p in worker_procs + router_procs]
        t0 = time.time()
        load = bench.saturate(ingress, plan.e2e_seconds)
        t_load = time.time()
        expected = load.ok * per_body  # at least: requests in flight at wrk's end add some

        def drained() -> bool:
            if _progress(progress)[0] < expected:
                return False
            return bool(broker(ready_messages, bench.url, [topology.raw, main]) == 0)

        finished = wait_until(drained, plan.drain_timeout, interval=0.5)
        time.sleep(1.0)  # the last progress reports
    count, last = _progress(progress)
    for proc in [ingress, *router_procs, *worker_procs]:
        proc.stop()
    elapsed = (last or time.time()) - t0
    entry = {
        "routers": routers,
        "workers": workers,
        "bodies_acked": load.ok,
        "ingress_rate": load.throughput,
        "events": count,
        "events_expected_at_least": expected,
        "seconds": elapsed,
        "events_per_second": count / elapsed if elapsed > 0 else 0.0,
        "drain_after_load": (last or t_load) - t_load,
        "finished": finished,
        "worker_rss_peak": max((s.peak or 0) for s in samplers[:workers]),
        "router_rss_peak": max((s.peak or 0) for s in samplers[workers:]),
    }
    print(
        f"  {routers} router + {workers} worker(s): {count:,} events in {elapsed:.1f}s = "
        f"{entry['events_per_second']:,.0f} events/s"
        f"{'' if finished else ' (did not finish draining)'}",
        flush=True,
    )
    return entry
