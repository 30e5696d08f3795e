"""Router and worker CPU per event against the parser's, measured in the same run.

A router and a worker (the no-op consumer) wait on empty queues; the benchmark then sends
seed bodies to the raw queue as the ingress does (our publisher, group commit) and reads
from ``/proc`` the CPU each role and the broker spent until the consumer has counted every
event. The parser's CPU per event on the same body is measured in this process before and
after each round, so each ratio compares figures taken under the same load on the machine.
Rounds are interleaved with those of other checkouts (``--roles-tree``) so that the
neighbours' noise falls on all of them alike; medians are reported, with the spread.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.pipeline.beside import ParserBeside
from bench.pipeline.brokerops import _progress, broker, consumers_on, fill_raw
from bench.pipeline.common import NOOP_NAME, ROOT, SEED, wait_until
from bench.pipeline.cpu import CpuMeter

if TYPE_CHECKING:
    from bench.pipeline.runner import Bench

__all__ = ["ROLES", "parser_cpu_us", "run_roles"]

#: What each round reports per event, in CPU microseconds.
ROLES = ("router", "worker", "broker")


def parser_cpu_us(seconds: float = 1.5, cpu: int | None = None) -> float:
    """The parser's CPU microseconds per event on the seed, in this one thread (on ``cpu``
    when given; the thread's affinity is restored after)."""
    if cpu is not None:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            return parser_cpu_us(seconds)
        finally:
            os.sched_setaffinity(0, before)
    from shared.callbacks.parser import parse_callback

    body = SEED.read_bytes()
    per_body = len(parse_callback(body))
    for _ in range(200):  # warm up
        parse_callback(body)
    parsed = 0
    start = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(50):
            parse_callback(body)
        parsed += 50
    return 1e6 * (time.process_time() - start) / (parsed * per_body)


def _cores(bench: Bench) -> tuple[int, int] | None:
    """(the router's core, the others' core) with ``--pin-roles`` on two cores or more."""
    cores = sorted(os.sched_getaffinity(0))
    if not bench.args.pin_roles or len(cores) < 2:
        return None
    return cores[-1], cores[0]


def _round(bench: Bench, prefix: str, bodies: int, tree: Path) -> dict[str, Any]:
    """One router and one worker of ``tree`` take ``bodies`` raw bodies through."""
    from shared.callbacks.parser import parse_callback
    from shared.settings import Settings
    from shared.topology import Topology

    expected = bodies * len(parse_callback(SEED.read_bytes()))
    topology = Topology(prefix)
    main = topology.consumer(NOOP_NAME, Settings.load().retry_delays).main
    progress = bench.logs / f"progress-{prefix}"
    pinned = _cores(bench)
    router_cpu, other_cpu = pinned if pinned else (None, None)
    worker = bench.start_worker(f"worker-{prefix}", prefix, progress, tree=tree, cpu=other_cpu)
    router = bench.start_role("router", f"router-{prefix}", prefix, tree=tree, cpu=router_cpu)
    wait_until(lambda: broker(consumers_on, bench.url, main) >= 1, 60, 0.1)
    wait_until(lambda: broker(consumers_on, bench.url, topology.raw) >= 1, 60, 0.1)
    meter = CpuMeter(router, bench.broker_pid)
    meter.pids["worker"] = worker.pid
    beside = ParserBeside(router_cpu)
    with meter, beside:
        t0 = time.monotonic()
        before = os.sched_getaffinity(0)
        if other_cpu is not None:  # the load beside the worker, not on the router's core
            os.sched_setaffinity(0, {other_cpu})
        try:
            broker(fill_raw, bench.url, prefix, bodies)
        finally:
            os.sched_setaffinity(0, before)
        finished = wait_until(lambda: _progress(progress)[0] >= expected, 120, 0.05)
        elapsed = time.monotonic() - t0
    router.stop()
    worker.stop()
    us = meter.per_request(expected)
    return {
        "events": expected,
        "seconds": elapsed,
        "finished": finished,
        "router": us["server"],
        "worker": us["worker"],
        "broker": us["broker"],
        "parser_beside": beside.cpu_us,
    }


def _median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _spread(values: list[float | None]) -> list[float]:
    got = [v for v in values if v is not None]
    return [min(got), max(got)] if got else []


def run_roles(bench: Bench) -> None:
    """CPU per event of each role and of the broker, as ratios to the parser's."""
    trees = [ROOT, *(t.resolve() for t in bench.args.roles_tree)]
    bodies, rounds = bench.plan.role_bodies, bench.plan.rounds
    print(f"roles: {rounds} round(s) of {bodies:,} bodies, router + worker", flush=True)
    parser: list[float | None] = []
    runs: dict[Path, list[dict[str, Any]]] = {tree: [] for tree in trees}
    pinned = _cores(bench)
    on = pinned[0] if pinned else None
    if pinned:
        print(f"  router on CPU {pinned[0]}, worker and load on CPU {pinned[1]}", flush=True)
    for i in range(rounds):
        parser.append(parser_cpu_us(cpu=on))
        for j, tree in enumerate(trees):
            prefix = f"{bench.prefix}-roles{i}{j}"
            if prefix not in bench.prefixes:
                bench.prefixes.append(prefix)
            entry = _round(bench, prefix, bodies, tree)
            runs[tree].append(entry)
            print(
                f"  round {i + 1} {tree.name}: "
                + ", ".join(f"{r} {entry[r] or 0:.0f} us" for r in ROLES),
                flush=True,
            )
        parser.append(parser_cpu_us(cpu=on))
    out = []
    for tree, entries in runs.items():
        row: dict[str, Any] = {
            "tree": "this checkout" if tree == ROOT else tree.name,
            "rounds": len(entries),
            "events_per_round": entries[0]["events"] if entries else 0,
            "finished": all(e["finished"] for e in entries),
            "parser_cpu_us": _median(parser),
            "parser_cpu_us_spread": _spread(parser),
            "pinned": pinned is not None,
            "parser_beside_cpu_us": _median([e["parser_beside"] for e in entries]),
        }
        for role in ROLES:
            row[f"{role}_cpu_us"] = _median([e[role] for e in entries])
            row[f"{role}_cpu_us_spread"] = _spread([e[role] for e in entries])
        out.append(row)
    bench.results["roles"] = out
