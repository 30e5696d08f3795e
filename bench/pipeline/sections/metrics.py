"""The cost of metrics: our ingress with metrics on and with ``--no-metrics``, side by side.

Both processes are saturated at the same time, each by its own wrk, in rounds, so that
whatever else runs on the machine falls on both alike; the metrics-on one has its
``/metrics`` scraped every second (fifteen times Prometheus's default). Reported: the on/off
ratio of each round's throughput and of each server's CPU per request; the CPU time of the
request path's metrics calls alone; the callback handler called directly, off and on.
``--metrics-control`` starts both processes ``--no-metrics``: the noise floor of this A/B.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bench.pipeline.brokerops import _connect, broker
from bench.pipeline.common import CONNECTIONS, SEED
from bench.pipeline.cpu import _cpu_seconds
from bench.pipeline.load import Load, ensure_wrk, run_loadgen, run_wrk
from bench.pipeline.procs import free_port

if TYPE_CHECKING:
    from bench.pipeline.procs import Proc
    from bench.pipeline.runner import Bench

__all__ = ["METRICS_OFF", "METRICS_ON", "metrics_cost", "metrics_lines", "run_metrics"]

METRICS_ON = "ingress, metrics on"
METRICS_OFF = "ingress, --no-metrics"
ACCEPTED_SAMPLE = 'callback_fanout_ingress_requests_total{outcome="accepted"}'
#: Seconds between two scrapes of /metrics while the metrics-on ingress is saturated.
SCRAPE_INTERVAL = 1.0


def run_metrics(bench: Bench) -> None:
    """Our ingress with metrics on and off, saturated at the same time, same run.

    Each round saturates both processes at once, each with its own load generator, so
    that whatever else runs on the machine falls on both alike (rounds one after the
    other moved by a third here, from one to the next).
    """
    plan = bench.plan
    if bench.wrk is None:
        bench.wrk = ensure_wrk(not bench.args.no_install)
    rounds = bench.args.metrics_rounds or plan.metrics_rounds
    seconds = plan.saturation_seconds
    print(f"metrics cost: {rounds} rounds of {seconds:g}s, on and off together", flush=True)
    admin = free_port()
    prefixes = {METRICS_ON: f"{bench.prefix}-mon", METRICS_OFF: f"{bench.prefix}-moff"}
    # --metrics-control: both processes without metrics, the noise floor of this A/B
    on_flags = ["--no-metrics"] if bench.args.metrics_control else []
    procs = {
        METRICS_ON: bench.start_ingress(
            "ingress-metrics-on", prefixes[METRICS_ON], "--health-port", str(admin), *on_flags
        ),
        METRICS_OFF: bench.start_ingress(
            "ingress-metrics-off", prefixes[METRICS_OFF], "--no-metrics"
        ),
    }
    metrics_url = f"http://127.0.0.1:{admin}/metrics"
    runs: dict[str, list[dict[str, Any]]] = {METRICS_ON: [], METRICS_OFF: []}
    seen = scrapes = 0  # 2xx answers the metrics-on ingress gave; scrapes of it
    for round_ in range(rounds + 1):  # the first round warms up and is not kept
        with Scraper(metrics_url, SCRAPE_INTERVAL) as scraper:
            loads = saturate_together(bench, procs, seconds if round_ else plan.warmup_seconds)
        scrapes += scraper.scrapes
        seen += loads[METRICS_ON].ok
        for prefix in prefixes.values():
            broker(purge_raw, bench.url, prefix)  # keep the shared broker light
        if not round_:
            continue
        for name, load in loads.items():
            entry = vars(load)
            entry.pop("request_ids")
            runs[name].append(entry)
        on, off = (loads[n].throughput for n in (METRICS_ON, METRICS_OFF))
        print(
            f"  round {round_}: on {on:,.0f} off {off:,.0f} req/s, ratio {on / off:.3f}",
            flush=True,
        )
    counted = scraped_value(metrics_url, ACCEPTED_SAMPLE)
    for proc in procs.values():
        proc.stop()
    bench.results["metrics_cost"] = {
        "control": bool(bench.args.metrics_control),
        "instrumentation_ns": instrumentation_ns(),
        "handler_us": handler_delta_us(),
        "runs": runs,
        "scrapes": scrapes,
        "accepted_counted": counted,
        "accepted_seen": seen,
        "in_flight_bound": CONNECTIONS * (rounds + 1),
    }


def saturate_together(bench: Bench, procs: dict[str, Proc], seconds: float) -> dict[str, Load]:
    """Saturate every process at once, each with its own load generator; the CPU each
    server spent per request."""
    before = {name: _cpu_seconds(proc.pid) for name, proc in procs.items()}

    def load(proc: Proc) -> Load:
        url = f"http://127.0.0.1:{proc.port}/callbacks"
        if bench.wrk is not None:
            return run_wrk(bench.wrk, url, seconds)
        return run_loadgen(url, rate=None, seconds=seconds)

    with ThreadPoolExecutor(len(procs)) as pool:
        running = {name: pool.submit(load, proc) for name, proc in procs.items()}
        loads = {name: future.result() for name, future in running.items()}
    for name, proc in procs.items():
        start, end = before[name], _cpu_seconds(proc.pid)
        served = loads[name].ok + loads[name].non_2xx
        if start is not None and end is not None and served:
            loads[name].cpu = {"server": 1e6 * (end - start) / served}
    return loads


class Scraper:
    """Scrapes a ``/metrics`` URL every ``interval`` seconds in a thread, as Prometheus would."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url, timeout=5) as r:
                r.read()
                self.scrapes += 1

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def instrumentation_ns() -> float:
    """Nanoseconds the metrics calls of one request take, measured here with ``timeit``.

    The calls the request path makes (a clock read, the outcome, the request time, the body
    size) plus one batch observation (one per message; a message holds one body or more):
    an upper bound of the CPU that counting adds to a request, free of the load's noise.
    """
    import timeit

    from ingress.metrics import IngressMetrics
    from shared.metrics import Metrics

    counted = IngressMetrics(Metrics())
    size = len(SEED.read_bytes())

    def one_request() -> None:
        started = time.perf_counter()
        counted.body_bytes.observe(size)
        counted.answered("accepted", started)
        counted.batch_bodies.observe(1)

    def nothing() -> None:
        return None

    n = 200_000  # timed in CPU time: the neighbours' load does not count
    calls = min(timeit.repeat(one_request, timer=time.thread_time, number=n, repeat=5))
    empty = min(timeit.repeat(nothing, timer=time.thread_time, number=n, repeat=5))
    return max(0.0, calls - empty) / n * 1e9


def handler_delta_us(pairs: int = 10, requests: int = 2000) -> tuple[float, float]:
    """CPU microseconds per request of our callback handler without and with metrics, called
    directly (no network, a publisher that keeps nothing), alternately in this process; the
    medians of the blocks."""
    from unittest import mock

    from aiohttp import streams
    from aiohttp.test_utils import make_mocked_request

    from ingress.app import CallbackReceiver, IngressState
    from ingress.groupcommit import Durable, RawMeta
    from ingress.guard import Guard
    from ingress.metrics import IngressMetrics
    from shared.logs import configure_logging
    from shared.metrics import Metrics
    from shared.settings import Settings

    class Discard:
        ready = True

        async def publish(self, body: bytes, meta: RawMeta) -> Durable:
            return "accepted"

    body = SEED.read_bytes()
    headers = {"Content-Type": "application/xml", "Content-Length": str(len(body))}
    settings = Settings.load(log_level="error")
    configure_logging(settings)  # as the ingress runs: no debug line per request

    async def measure() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        receivers = {
            on: CallbackReceiver(
                settings,
                Discard(),
                IngressState(),
                Guard.from_settings(settings),
                IngressMetrics(Metrics()) if on else None,
            )
            for on in (False, True)
        }

        def request() -> Any:
            payload = streams.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
            payload.feed_data(body)
            payload.feed_eof()
            return make_mocked_request("POST", "/callbacks", headers=headers, payload=payload)

        async def block(on: bool, n: int) -> float:
            made = [request() for _ in range(n)]
            started = time.thread_time()
            for one in made:
                await receivers[on].receive(one)
            return (time.thread_time() - started) / n * 1e6

        used: dict[bool, list[float]] = {False: [], True: []}
        for pair in range(pairs + 1):  # the first pair warms up
            for on in (True, False) if pair % 2 else (False, True):
                spent = await block(on, requests)
                if pair:
                    used[on].append(spent)
        return statistics.median(used[False]), statistics.median(used[True])

    return asyncio.run(measure())


def scraped_value(url: str, sample: str) -> float | None:
    """The value of one sample (``name{labels}`` as exposed) at ``url``, or None."""
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
    return None


async def purge_raw(url: str, prefix: str) -> None:
    """Empty ``<prefix>.raw`` (the bodies of a finished run)."""
    from shared.topology import Topology

    connection = await _connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(Topology(prefix).raw, ensure=False)
        await queue.purge()
    finally:
        await connection.close()


def metrics_cost(results: dict[str, Any]) -> float | None:
    """What metrics cost, as a share of saturated throughput: 1 - the median on/off ratio."""
    m = results.get("metrics_cost")
    if not m or not m["runs"][METRICS_ON]:
        return None
    pairs = zip(m["runs"][METRICS_ON], m["runs"][METRICS_OFF], strict=True)
    return 1 - float(statistics.median(on["throughput"] / off["throughput"] for on, off in pairs))


def metrics_lines(results: dict[str, Any]) -> list[str]:
    """The metrics on/off section: both rows, each round's ratio, the cost, the counter check."""
    m = results.get("metrics_cost")
    cost = metrics_cost(results)
    if not m or cost is None:
        return []
    runs = m["runs"]
    control = (
        " **Control run: both processes `--no-metrics`** (the rows differ by noise alone)."
        if m.get("control")
        else ""
    )
    lines = [
        "",
        f"Metrics on (`/metrics` scraped every {SCRAPE_INTERVAL:g} s, {m['scrapes']} scrapes) "
        f"against `--no-metrics`, both saturated at the same time, each by its own load "
        f"generator, {len(runs[METRICS_ON])} rounds; medians:{control}",
        "",
        "| ingress | req/s | p50 ms | p99 ms | server CPU us/req |",
        "|---|---:|---:|---:|---:|",
    ]
    cpu: dict[str, float | None] = {}
    shown = {METRICS_ON: "ingress A, --no-metrics", METRICS_OFF: "ingress B, --no-metrics"}
    for name in (METRICS_ON, METRICS_OFF):
        loads = runs[name]
        server = [x["cpu"]["server"] for x in loads if x["cpu"].get("server") is not None]
        cpu[name] = statistics.median(server) if server else None
        lines.append(
            f"| {shown[name] if m.get('control') else name} | "
            f"{statistics.median(x['throughput'] for x in loads):,.0f} | "
            f"{_ms(statistics.median(x['p50'] for x in loads))} | "
            f"{_ms(statistics.median(x['p99'] for x in loads))} | "
            f"{'-' if cpu[name] is None else f'{cpu[name]:.1f}'} |"
        )
    ratios = [
        on["throughput"] / off["throughput"]
        for on, off in zip(runs[METRICS_ON], runs[METRICS_OFF], strict=True)
    ]
    off_cpu = cpu[METRICS_OFF]
    cpu_ratios = [
        on["cpu"]["server"] / off["cpu"]["server"]
        for on, off in zip(runs[METRICS_ON], runs[METRICS_OFF], strict=True)
        if on["cpu"].get("server") and off["cpu"].get("server")
    ]
    pair = "A/B" if m.get("control") else "on/off"
    verdict = (
        f"two processes alike differ by **{-cost:+.1%}**"
        if m.get("control")
        else f"metrics cost **{cost:.1%}** of saturated throughput"
    )
    cpu_text = (
        f"; server CPU per request, {pair} each round: median {statistics.median(cpu_ratios):.3f}"
        if cpu_ratios
        else ""
    )
    lines += [
        "",
        f"Throughput {pair}, each round: {', '.join(f'{r:.3f}' for r in ratios)}; median "
        f"{1 - cost:.3f}: {verdict}{cpu_text}.",
        f"The request path's metrics calls take {m['instrumentation_ns']:.0f} ns a request "
        f"(timeit, in the benchmark's process){_share(m['instrumentation_ns'], off_cpu)}."
        + (
            " Our callback handler called directly, off and on alternately (CPU time, "
            f"no network): {m['handler_us'][0]:.2f} and {m['handler_us'][1]:.2f} us a request."
            if m.get("handler_us")
            else ""
        ),
    ]
    if m["accepted_counted"] is not None:
        lines.append(
            f"Counted `accepted`: {m['accepted_counted']:,.0f} for {m['accepted_seen']:,} 2xx "
            f"wrk saw (it stops with requests in flight, answered after it left: at most "
            f"{m['in_flight_bound']:,} more)."
        )
    return lines


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _share(ns: float, per_request_us: float | None) -> str:
    if not per_request_us:
        return ""
    return (
        f": {ns / 10 / per_request_us:.2f}% of the {per_request_us:.0f} us of CPU the "
        "`--no-metrics` ingress spent per request"
    )
