"""The HTTP sections: saturation, fixed rates, sustained load, every acked body delivered."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bench.pipeline.brokerops import broker, count_bodies
from bench.pipeline.common import CONNECTIONS, NOOP, OURS
from bench.pipeline.load import Load, run_loadgen
from bench.pipeline.procs import Proc
from bench.pipeline.report import median_throughput

if TYPE_CHECKING:
    from bench.pipeline.runner import Bench


def run_saturation(bench: Bench, servers: dict[str, Proc]) -> None:
    plan = bench.plan
    print(f"saturation: {plan.rounds} round(s) of {plan.saturation_seconds:g}s each", flush=True)
    bench.results["acked"] = 0  # 2xx answers of our ingress, every run counted
    bench.results["acked_ids"] = []
    bench.results["in_flight_at_cutoff"] = 0  # bound on bodies published but never answered
    for name, proc in servers.items():  # warm up: connections, caches, the broker's queue
        count(bench, name, bench.saturate(proc, plan.warmup_seconds))
    runs: dict[str, list[Load]] = {name: [] for name in servers}
    for round_ in range(plan.rounds):
        for name, proc in servers.items():
            load = bench.saturate(proc, plan.saturation_seconds)
            count(bench, name, load)
            runs[name].append(load)
            print(
                f"  round {round_ + 1} {name}: {load.throughput:,.0f} req/s "
                f"p99 {load.p99:.1f} ms non-2xx {load.non_2xx}",
                flush=True,
            )
    bench.results["saturation"] = {name: [vars(x) for x in loads] for name, loads in runs.items()}


def count(bench: Bench, name: str, load: Load) -> None:
    """Keep the account of what our ingress acked, for the delivery check."""
    if name != OURS:
        return
    bench.results["acked"] += load.ok
    bench.results["acked_ids"] += load.request_ids
    # wrk stops with a request in flight on each connection: published, never answered
    bench.results["in_flight_at_cutoff"] += CONNECTIONS if load.tool == "wrk" else 0
    bench.results["in_flight_at_cutoff"] += load.unanswered


def run_rates(bench: Bench, servers: dict[str, Proc]) -> None:
    plan = bench.plan
    noop = median_throughput(bench.results, NOOP)
    rates: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    print(f"fixed rates: {', '.join(f'{f:g}' for f in plan.fractions)} x no-op", flush=True)
    for fraction in plan.fractions:
        rate = fraction * noop
        for name, proc in servers.items():
            if (rates[name] and rates[name][-1]["saturated"]) or not bench.time_left():
                continue  # past its capacity at a lower rate already
            ids = bench.logs / f"ids-{name.replace(' ', '_')}-{fraction:g}.txt"
            url = f"http://127.0.0.1:{proc.port}/callbacks"
            load = run_loadgen(url, rate=rate, seconds=plan.rate_seconds, ids=ids)
            saturated = (
                load.dropped > 0
                or load.throughput < 0.9 * rate
                or load.p99 > 1000
                or load.unanswered > 0
            )
            count(bench, name, load)
            entry = vars(load) | {"fraction": fraction, "saturated": saturated}
            entry.pop("request_ids")
            rates[name].append(entry)
            print(
                f"  {fraction:g}x = {rate:,.0f} req/s {name}: p50 {load.p50:.2f} "
                f"p99 {load.p99:.2f} p99.9 {load.p999:.2f} ms"
                f"{' (saturated)' if saturated else ''}",
                flush=True,
            )
    bench.results["rates"] = rates


def run_sustained(bench: Bench, ours: Proc) -> None:
    seconds = bench.plan.sustained_seconds
    print(f"sustained saturation of our ingress: {seconds:g}s", flush=True)
    load = bench.saturate(ours, seconds)
    count(bench, OURS, load)
    bench.results["sustained"] = vars(load)
    bench.results["sustained"].pop("request_ids")
    print(f"  {load.throughput:,.0f} req/s, RSS peak {load.rss_peak or 0:.0f} MB", flush=True)


def run_delivered(bench: Bench) -> None:
    time.sleep(1)  # the last confirms are in; nothing is in flight any more
    messages, bodies, ids, wrong = broker(count_bodies, bench.url, bench.prefix)
    acked_ids = set(bench.results.pop("acked_ids"))
    missing = len(acked_ids - ids)
    acked, cutoff = bench.results["acked"], bench.results["in_flight_at_cutoff"]
    bench.results["delivered"] = {
        "messages": messages,
        "bodies": bodies,
        "acked": acked,
        "unanswered_bound": cutoff,
        "acked_ids_checked": len(acked_ids),
        "acked_ids_missing": missing,
        "bodies_not_the_seed": wrong,
        "ok": missing == 0 and wrong == 0 and acked <= bodies <= acked + cutoff,
    }
    print(
        f"delivered: {bodies:,} bodies in {messages:,} messages for "
        f"{acked:,} acked (+ at most {cutoff} in flight when a run stopped); "
        f"acked ids missing: {missing}; "
        f"bodies differing from the seed: {wrong}",
        flush=True,
    )
