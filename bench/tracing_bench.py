"""What tracing costs per event: off, on with 1 % of the callbacks sampled, on with all, same run.

    python bench/tracing_bench.py                      # 4 rounds of 1,000 callbacks each way
    python bench/tracing_bench.py --callbacks 500 --rounds 3

The whole system runs in this process (ingress, router, worker with a no-op consumer, on
uvloop when installed), three times over under three prefixes: one built with tracing off,
two with tracing on and an SDK provider each (a parent-based sampler at 1 % and at 100 %,
a batch span processor exporting over OTLP/HTTP to a receiver in a child process that
reads and discards). Each round posts the same callback (one job: one event) to each system
in turn, which one first rotating round by round, and waits until its consumer has handled
every event; the process's CPU time (``/proc/self/stat``: every thread, the exporter's too,
and the load generator's share, the same in every mode) over the events is the cost per
event, the wall clock from the first post to the last handled event gives events/s. The
median round is reported. RabbitMQ must be running (``AMQP_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages live beside bench/
    sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
import aiohttp  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: E402

from ingress.server import IngressService  # noqa: E402
from shared import otel  # noqa: E402
from shared.callbacks import CallbackEvent  # noqa: E402
from shared.logs import configure_logging  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topology import Topology  # noqa: E402
from workers.consumer import LoadedConsumer, consumer  # noqa: E402
from workers.router.service import RouterService  # noqa: E402
from workers.runtime.worker import WorkerService  # noqa: E402

BODY = (ROOT / "tests" / "fixtures" / "callbacks" / "snapshot-success.xml").read_bytes()
MODES = ("off", "on, 1 % sampled", "on, 100 % sampled")
_TICKS = os.sysconf("SC_CLK_TCK")

RECEIVER = """
import sys
from aiohttp import web
async def traces(request):
    await request.read()
    return web.Response(body=b"", content_type="application/x-protobuf")
app = web.Application(client_max_size=64 * 1024 * 1024)
app.add_routes([web.post("/v1/traces", traces)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def cpu_seconds() -> float:
    """This process's CPU time, every thread, user and system."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class System:
    mode: str
    settings: Settings
    provider: TracerProvider | None
    handled: list[int] = field(default_factory=lambda: [0])
    services: list[IngressService | RouterService | WorkerService] = field(default_factory=list)
    port: int = 0

    async def start(self) -> None:
        otel.enable(self.provider)
        counter = self.handled

        @consumer(name="noop", routes=["#"])
        async def noop(event: CallbackEvent) -> None:
            counter[0] += 1

        loaded = LoadedConsumer.from_target(noop, "bench:noop")
        worker = WorkerService(self.settings, [loaded])
        router = RouterService(self.settings)
        ingress = IngressService(self.settings)
        self.services = [worker, router, ingress]
        for service in (worker, router):
            await service.start()
            await asyncio.wait_for(service.wait_started(), 30)
        await ingress.start()
        while not ingress.publisher.ready:  # noqa: ASYNC110 - a flag, no event to wait on
            await asyncio.sleep(0.05)
        self.port = ingress.port
        otel.enable(None)

    async def stop(self) -> None:
        for service in reversed(self.services):
            await service.stop()


async def round_of(
    system: System, http: aiohttp.ClientSession, callbacks: int
) -> tuple[float, float]:
    """Post ``callbacks`` (20 at a time) and wait until each event is handled: CPU µs per event
    and events/s."""
    otel.enable(system.provider)
    url = f"http://127.0.0.1:{system.port}/callbacks"
    before = system.handled[0]
    queue = iter(range(callbacks))

    async def post_all() -> None:
        for _ in queue:
            async with http.post(url, data=BODY, headers={"Content-Type": "application/xml"}) as r:
                await r.read()
                assert r.status == 200, r.status

    cpu, wall = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(post_all() for _ in range(20)))
    while system.handled[0] - before < callbacks:  # noqa: ASYNC110 - a count, as above
        await asyncio.sleep(0.005)
    if system.provider is not None:
        system.provider.force_flush()  # the export of this round's spans is its cost
    wall = time.perf_counter() - wall
    cpu = cpu_seconds() - cpu
    otel.enable(None)
    return cpu / callbacks * 1e6, callbacks / wall


def provider(ratio: float, endpoint: str) -> TracerProvider:
    made = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return made


@contextlib.contextmanager
def receiver(port: int) -> Iterator[None]:
    child = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        time.sleep(1.0)
        yield
    finally:
        child.terminate()
        child.wait(5)


async def cleanup(url: str, prefixes: list[str]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for prefix in prefixes:
            topology = Topology(prefix)
            noop = topology.consumer("noop", Settings.load().retry_delays)
            queues = [topology.raw, topology.unparsed, topology.unrouted, noop.main, noop.dead]
            queues += [name for _, name in noop.delays]
            for queue in queues:
                with contextlib.suppress(Exception):
                    await channel.queue_delete(queue)
            for exchange in (topology.events, topology.unrouted):
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(exchange)


async def main(callbacks: int, rounds: int, endpoint: str) -> None:
    amqp = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    run = secrets.token_hex(3)
    providers: dict[str, TracerProvider | None] = {"off": None}
    providers[MODES[1]] = provider(0.01, endpoint)
    providers[MODES[2]] = provider(1.0, endpoint)
    systems = [
        System(
            mode,
            Settings.load(
                amqp_url=amqp, prefix=f"bench-trace-{run}-{i}", host="127.0.0.1", port=0,
                entry_points=False, metrics=True, log_level="warning",
            ),
            providers[mode],
        )
        for i, mode in enumerate(MODES)
    ]  # fmt: skip
    configure_logging(systems[0].settings)  # warnings only: no line per event
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    try:
        for system in systems:
            await system.start()
        async with aiohttp.ClientSession() as http:
            for system in systems:  # warm-up, not counted
                await round_of(system, http, 100)
            for number in range(rounds):
                order = systems[number % 3 :] + systems[: number % 3]
                for system in order:
                    results[system.mode].append(await round_of(system, http, callbacks))
    finally:
        for system in systems:
            await system.stop()
        for made in providers.values():
            if made is not None:
                made.shutdown()
        await cleanup(amqp, [s.settings.prefix for s in systems])
    off = statistics.median(cpu for cpu, _ in results["off"])
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}"
        f", {os.cpu_count()} cores; {callbacks} callbacks (one event each) x {rounds} rounds\n"
    )
    print("| tracing | CPU µs/event (median) | rounds | vs off | events/s (median) |")
    print("|---|---:|---|---:|---:|")
    for mode in MODES:
        cpus = [cpu for cpu, _ in results[mode]]
        rates = [rate for _, rate in results[mode]]
        median = statistics.median(cpus)
        print(
            f"| {mode} | {median:,.0f} | {', '.join(f'{c:,.0f}' for c in cpus)} | "
            f"{(median / off - 1) * 100:+.0f} % | {statistics.median(rates):,.0f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    port = 43180 + secrets.randbelow(1000)
    with receiver(port):
        asyncio.run(main(args.callbacks, args.rounds, f"http://127.0.0.1:{port}/v1/traces"))
