"""The built-in consumers' throughput: ``archive`` into PostgreSQL and ``forward`` over HTTP.

    python bench/builtins_bench.py              # about 2 minutes
    python bench/builtins_bench.py --events 4000

Each section fills one consumer's queue with distinct events (the OCR seed under other job
ids, as the router would publish them), then starts one worker (the real runtime: prefetch,
acks, retries, in this process, on uvloop when installed) with the built-in consumer and
times the drain from its first handled event to its last:

0. **no-op**: the same worker and events with a handler that does nothing, the runtime's
   ceiling on this machine in this run (validating each event's JSON, acks);
1. **archive**, batches on (``batch_size`` 200) and off (``batch_size`` 1: a statement per
   event), into a PostgreSQL database made for the run and dropped after (``--pg-dsn`` or
   ``PG_DSN``, default the local server as ``postgres``);
2. **forward** to the no-op receiver of ``bench/servers.py`` in its own process, events
   signed (one secret).

Rounds alternate between the variants so that the neighbours' noise falls on all alike; the
median round is reported. Needs RabbitMQ (``--amqp-url`` or ``AMQP_URL``). Everything
declared or created is deleted at the end. Prints a Markdown table; ``--json`` also writes
the raw numbers to ``bench/results/builtins.json``.

Besides events/s (wall clock), each round records the CPU the worker spent per event, and for
the archive the CPU of the database's server processes per event: on a shared machine the
wall clock says how busy the neighbours were, the CPU per event what one worker costs.
``events/s per worker core`` (a million over the worker's µs per event) is what one worker
reaches when it has a core to itself and the database keeps up.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import secrets
import socket
import statistics
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages live beside bench/
    sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
import asyncpg  # noqa: E402

from shared.callbacks import CallbackEvent, Envelope, parse_callback  # noqa: E402
from shared.logs import configure_logging  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topology import Topology  # noqa: E402
from shared.wire.events import event_message  # noqa: E402
from workers.builtin import archive, forward  # noqa: E402
from workers.consumer import ConsumerSpec, LoadedConsumer  # noqa: E402
from workers.runtime.worker import WorkerService  # noqa: E402

SEED = ROOT / "workers" / "testing" / "seeds" / "ocr.1.xml"
RESULTS = ROOT / "bench" / "results"
JOB = b"a3c193f288b2c11eeb60f39de2f86f409"
ARCHIVE_CONCURRENCY = 400  # the archive's prefetch: two full batches of 200 (its default)
FORWARD_CONCURRENCY = 128  # requests at once to the receiver
SECRET = "whsec_" + base64.b64encode(b"bench-secret-key-of-32-bytes-xx!").decode()


#: The sections in the order they run, with the issue's target (events/s) where it set one.
TARGETS: dict[str, int | None] = {
    "no-op handler (the runtime's ceiling)": None,
    "archive, batches on": 2000,
    "archive, batches off": None,
    "forward": 1500,
}


@dataclass
class Drain:
    """Counts handled events; ``done`` is set at ``expected``."""

    expected: int
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    #: Read at the first handled event and at the last (CPU seconds of whatever it names,
    #: this process's included): what the drain itself cost, start and stop left out.
    probe: Callable[[], dict[str, float]] | None = None
    at_first: dict[str, float] = field(default_factory=dict)
    at_last: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.done = asyncio.Event()

    def counted(self, loaded: LoadedConsumer) -> LoadedConsumer:
        handle = loaded.handle

        async def counting(event: CallbackEvent) -> None:
            await handle(event)
            now = time.perf_counter()
            if not self.count:
                self.first = now
                if self.probe is not None:
                    self.at_first = self.probe()
            self.count += 1
            self.last = now
            if self.count >= self.expected:
                if self.probe is not None:
                    self.at_last = self.probe()
                self.done.set()

        return LoadedConsumer(loaded.spec, counting, loaded.startup, loaded.shutdown, "bench")

    @property
    def rate(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.last > self.first else 0.0

    def spent(self) -> dict[str, float]:
        """µs of CPU per event between the first handled event and the last, by what the
        probe names, and ``busy``: this process's CPU over the wall clock in between."""
        events = max(self.count - 1, 1)
        out = {k: (self.at_last[k] - v) * 1e6 / events for k, v in self.at_first.items()}
        wall = self.last - self.first
        if "worker" in out and wall > 0:
            out["busy"] = out["worker"] * events / 1e6 / wall
        return out


def events(n: int, offset: int) -> list[aio_pika.Message]:
    """``n`` distinct events as the router publishes them (envelope and raw body included)."""
    seed = SEED.read_bytes()
    out = []
    for i in range(n):
        body = seed.replace(JOB, f"{JOB[:-8].decode()}{offset + i:08d}".encode())
        envelope = Envelope(
            request_id=f"bench{offset + i:027d}",
            received_at=datetime.now(UTC),
            source_address="127.0.0.1",
            content_type="application/xml",
            raw_body=body,
        )
        [event] = parse_callback(body, envelope=envelope)
        out.append(event_message(event))
    return out


async def fill(settings: Settings, spec: ConsumerSpec, messages: list[aio_pika.Message]) -> None:
    topology = Topology(settings.prefix)
    connection = await aio_pika.connect(settings.broker_url)
    channel = await connection.channel(publisher_confirms=True)
    queues = topology.consumer(spec.name, settings.retry_delays)
    await topology.declare_consumer(channel, queues, spec.routes)
    for start in range(0, len(messages), 500):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(m, routing_key=queues.main)
                for m in messages[start : start + 500]
            )
        )
    await connection.close()


@dataclass(frozen=True)
class Round:
    """One drain: events/s (wall clock), and CPU per event of the worker and the database."""

    rate: float
    worker_us: float
    database_us: float | None = None


async def drain(
    settings: Settings,
    loaded: LoadedConsumer,
    expected: int,
    database_cpu: Callable[[], Awaitable[float]] | None = None,
) -> Round:
    """Run one worker with ``loaded`` until it handled ``expected`` events.

    Its CPU (this process) counts from the worker's start to the last event; the database's,
    when ``database_cpu`` reads it, is that of its server processes for this run's database
    (they are born with the worker's pool, so their total is the drain's)."""
    counter = Drain(expected)
    worker = WorkerService(settings, [counter.counted(loaded)])
    cpu = time.process_time()
    await worker.start()
    database_s = None
    try:
        await worker.wait_started()
        await asyncio.wait_for(counter.done.wait(), timeout=600)
        cpu = time.process_time() - cpu
        if database_cpu is not None:
            database_s = await database_cpu()
    finally:
        await worker.stop()
    per_event = 1e6 / expected
    return Round(
        counter.rate, cpu * per_event, database_s * per_event if database_s is not None else None
    )


async def backends_cpu(dsn: str, database: str) -> float:
    """CPU seconds spent so far by the server processes serving ``database`` (Linux)."""
    connection = await asyncpg.connect(dsn)
    try:
        pids = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await connection.close()
    return sum(_process_cpu(row["pid"]) for row in pids)


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


async def delete_all(settings: Settings, names: list[str]) -> None:
    topology = Topology(settings.prefix)
    connection = await aio_pika.connect(settings.broker_url)
    for name in names:
        queues = topology.consumer(name, settings.retry_delays)
        for queue in (queues.main, queues.dead, *(q for _, q in queues.delays)):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
    channel = await connection.channel()
    with contextlib.suppress(aio_pika.exceptions.AMQPError):
        await channel.queue_delete(topology.unrouted)
    for exchange in (topology.events, topology.unrouted):
        channel = await connection.channel()
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await channel.exchange_delete(exchange)
    await connection.close()


def spec_of(name: str, concurrency: int = ARCHIVE_CONCURRENCY) -> ConsumerSpec:
    return ConsumerSpec(name=name, routes=("TaskFinish.#",), concurrency=concurrency)


async def archive_round(settings: Settings, dsn: str, batch: int, n: int, offset: int) -> Round:
    name = f"archive-b{batch}"
    spec = spec_of(name)
    await fill(settings, spec, events(n, offset))
    options = archive.Options.model_validate(
        {"dsn": dsn, "table": "bench_events", "batch_size": batch}
    )
    database = dsn.rpartition("/")[2]
    return await drain(
        settings, archive.build(spec, options), n, lambda: backends_cpu(dsn, database)
    )


async def noop_round(settings: Settings, n: int, offset: int) -> Round:
    """The runtime alone: the same worker with a handler that does nothing (the ceiling)."""
    spec = spec_of("noop")
    await fill(settings, spec, events(n, offset))

    async def nothing(event: CallbackEvent) -> None:
        return None

    async def no_hook() -> None:
        return None

    return await drain(settings, LoadedConsumer(spec, nothing, no_hook, no_hook, "noop"), n)


async def forward_round(settings: Settings, url: str, n: int, offset: int) -> Round:
    spec = spec_of("forward", FORWARD_CONCURRENCY)
    await fill(settings, spec, events(n, offset))
    options = forward.Options.model_validate({"url": url, "secret": SECRET})
    return await drain(settings, forward.build(spec, options), n)


async def _admin(server_dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(server_dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _noop_receiver() -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.servers", "noop", "--port", str(port), cwd=ROOT
    )
    for _ in range(200):
        with contextlib.suppress(OSError):
            await asyncio.to_thread(
                urllib.request.urlopen, f"http://127.0.0.1:{port}/healthz", timeout=1
            )
            return process, f"http://127.0.0.1:{port}/callbacks"
        await asyncio.sleep(0.05)
    process.kill()
    raise RuntimeError("the no-op receiver did not start")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.load(
        amqp_url=args.amqp_url,
        prefix=f"bench-builtins-{secrets.token_hex(3)}",
        retry_delays=[1.0],
        log_level="warning",
    )
    configure_logging(settings)
    server_dsn = args.pg_dsn
    database = f"cf_bench_{secrets.token_hex(4)}"
    dsn = f"{server_dsn.rpartition('/')[0]}/{database}"
    await _admin(server_dsn, f'CREATE DATABASE "{database}"')
    receiver, url = await _noop_receiver()
    rounds: dict[str, list[Round]] = {label: [] for label in TARGETS}
    sections: list[tuple[str, Callable[[int], Awaitable[Round]]]] = [
        (
            "no-op handler (the runtime's ceiling)",
            lambda o: noop_round(settings, args.events, o),
        ),
        (
            "archive, batches on",
            lambda o: archive_round(settings, dsn, 200, args.events, o),
        ),
        (
            "archive, batches off",
            lambda o: archive_round(settings, dsn, 1, args.events // 2, o),
        ),
        ("forward", lambda o: forward_round(settings, url, args.events, o)),
    ]
    offset = 0
    try:
        for _ in range(args.rounds):
            for label, start in sections:
                done = await start(offset)
                offset += args.events
                rounds[label].append(done)
                print(f"  {label}: {done}", file=sys.stderr)
    finally:
        receiver.terminate()
        await receiver.wait()
        await delete_all(settings, ["noop", "archive-b200", "archive-b1", "forward"])
        await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores",
        "events_per_round": args.events,
        "rounds": {label: [asdict(r) for r in done] for label, done in rounds.items()},
    }


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def table(result: dict[str, Any]) -> str:
    """Events/s (median round, and every round) and CPU per event (median)."""
    lines = [
        "| consumer (one worker) | events/s (median) | rounds | target "
        "| worker CPU µs/event | database CPU µs/event | events/s per worker core |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for label, done in result["rounds"].items():
        rates = [r["rate"] for r in done]
        worker_us = _median([r["worker_us"] for r in done])
        database_us = _median([r["database_us"] for r in done])
        target = TARGETS[label]
        lines.append(
            f"| {label} | {statistics.median(rates):,.0f} "
            f"| {', '.join(f'{r:,.0f}' for r in rates)} "
            f"| {f'>= {target:,}' if target else '-'} "
            f"| {worker_us:,.0f} | {f'{database_us:,.0f}' if database_us else '-'} "
            f"| {1e6 / worker_us:,.0f} |"
            if worker_us
            else f"| {label} | - | - | - | - | - | - |"
        )
    return "\n".join(lines)


def drain_parser(doc: str | None, name: str, events: int) -> argparse.ArgumentParser:
    """The arguments every drain benchmark takes (its backend's URL is added by each)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--events", type=int, default=events, help="events per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help=f"write bench/results/{name}.json")
    return parser


def pg_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )


def run_and_report(
    measure: Coroutine[Any, Any, dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
    name: str,
    *,
    write_json: bool,
) -> int:
    """Run ``measure`` on the loop the command runs the roles on, print its table, and write
    its result as ``bench/results/<name>.json`` when asked."""
    runner: Callable[[Any], Any] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run  # as the command runs the roles
    result: dict[str, Any] = runner(measure)
    print(f"{result['date']}, {result['machine']}\n")
    print(table(result))
    if write_json:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = drain_parser(__doc__, "builtins", 6000)
    pg_argument(parser)
    args = parser.parse_args(argv)
    return run_and_report(run(args), table, "builtins", write_json=args.json)


if __name__ == "__main__":
    raise SystemExit(main())
