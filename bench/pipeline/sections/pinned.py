"""The ingress measured fairly: each server alone on one core, the load generator on the other.

The no-op aiohttp server and our ingress each run pinned to the last core (``taskset``),
wrk pinned to the first, in interleaved rounds; the shared RabbitMQ is not pinned (it is
not the benchmark's to move) and takes what is left. "x no-op" then compares two servers
that had the same one core, and the server CPU per request says what each request cost it.
Two more servers split the gap between them, on the same core in the same rounds: our HTTP
app with a publisher that keeps nothing (what the HTTP side costs), and a handler that does
nothing but publish through our group commit (what making a body durable costs).
With ``--compare-tree`` the ingress of that other checkout takes its turn in every round too
(a before/after on the same core in the same run; the machine's noise moves both alike).
"""

from __future__ import annotations

import os
import statistics
from typing import TYPE_CHECKING, Any

from bench.pipeline.common import APP, GROUP, NOOP, OURS
from bench.pipeline.load import ensure_wrk

if TYPE_CHECKING:
    from bench.pipeline.load import Load
    from bench.pipeline.runner import Bench

__all__ = ["run_pinned"]


def run_pinned(bench: Bench) -> None:
    cores = sorted(os.sched_getaffinity(0))
    if bench.wrk is None:
        bench.wrk = ensure_wrk(not bench.args.no_install)
    if len(cores) < 2 or bench.wrk is None:
        bench.results["notes"].append("pinned section skipped: needs two cores and wrk")
        return
    server_cpu, load_cpu = cores[-1], cores[0]
    plan = bench.plan
    print(f"pinned: servers on CPU {server_cpu}, wrk on CPU {load_cpu}", flush=True)
    servers = {
        NOOP: bench.start_server("noop", "noop-pinned", cpu=server_cpu),
        APP: bench.start_server("app", "app-pinned", cpu=server_cpu),
        GROUP: bench.start_server("group", "group-pinned", cpu=server_cpu),
        OURS: bench.start_ingress("ingress-pinned", f"{bench.prefix}-pinned", cpu=server_cpu),
    }
    if bench.args.compare_tree:
        label = bench.args.compare_label or f"ingress from {bench.args.compare_tree.name}"
        servers[label] = bench.start_ingress(
            "ingress-pinned-cmp",
            f"{bench.prefix}-pinned-cmp",
            tree=bench.args.compare_tree.resolve(),
            cpu=server_cpu,
        )
    runs: dict[str, list[Load]] = {name: [] for name in servers}
    for proc in servers.values():  # warm up
        bench.saturate(proc, plan.warmup_seconds, wrk_cpu=load_cpu)
    for _ in range(plan.rounds):
        for name, proc in servers.items():
            load = bench.saturate(proc, plan.saturation_seconds, wrk_cpu=load_cpu)
            runs[name].append(load)
            server = (load.cpu or {}).get("server")
            print(
                f"  {name}: {load.throughput:,.0f} req/s, server CPU {server or 0:.0f} us/req",
                flush=True,
            )
    for proc in servers.values():
        proc.stop()
    out: dict[str, Any] = {"server_cpu": server_cpu, "load_cpu": load_cpu}
    for name, loads in runs.items():
        cpus = [c for x in loads if (c := x.cpu.get("server")) is not None]
        out[name] = {
            "throughput": statistics.median(x.throughput for x in loads),
            "throughputs": [x.throughput for x in loads],
            "server_cpu_us": statistics.median(cpus) if cpus else None,
            "server_cpus_us": [x.cpu.get("server") for x in loads],
            "non_2xx": sum(x.non_2xx + x.errors for x in loads),
        }
    bench.results["pinned"] = out
