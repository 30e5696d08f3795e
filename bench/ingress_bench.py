"""The ingress benchmark: our ingress against baselines, under the same load, in one run.

    python bench/ingress_bench.py            # the full run, about 8 minutes
    python bench/ingress_bench.py --quick    # the same sections, shorter, about 2 minutes

It starts everything it needs on 127.0.0.1 (RabbitMQ must be running: ``--amqp-url`` or
``AMQP_URL``), and stops and deletes everything it started and declared, whatever happens:

1. **saturation**: wrk (1 thread, 32 connections, the 2.6 KB OCR XML seed) against the no-op
   aiohttp server, the naive ingress (one publish per request, each awaiting its own
   confirm, on a durable quorum queue), the same minimal handler in front of our group
   commit publisher, the same handler durable on local disk only (one ``fdatasync`` per
   group, no broker: the ceiling of a spool-first design), our ingress's HTTP app with
   publishing disabled (the ceiling of our HTTP code, not durable) and our ingress
   (``callback-fanout ingress``), in interleaved rounds so that the neighbours' noise falls
   on all of them alike (``bench/servers.py``); with the CPU each process (server, broker,
   wrk) spent per request;
2. **fixed rates**: an open-loop generator (``bench/loadgen.py``) offers fractions of the
   no-op server's throughput to each, latency counted from when each request was released;
3. **every acked body is delivered**: every request our ingress answered 2xx is found in
   ``<prefix>.raw`` (bodies unpacked from batches, compared byte for byte);
4. **end to end**: HTTP in -> router -> a no-op consumer, events/s, with one router and one
   worker process, then more processes (``--quick``: one of each only); then one router
   alone on a backlog of raw bodies: events/s, its CPU and the broker's per event;
5. **memory**: the ingress's RSS under sustained saturation; a worker's RSS while a backlog
   of 100,000 events (20,000 with ``--quick``) drains.

It prints a Markdown table and writes it, the raw numbers (JSON) and a plot of latency
against offered rate (PNG) to ``bench/results/``; ``--docs`` also copies the plot to
``docs/bench-latency.png``. Everything is reported as ratios against baselines measured in
the same run: the machine is shared, absolute numbers move.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages live beside bench/
    sys.path.insert(0, str(ROOT))

SEED = ROOT / "tests" / "fixtures" / "seeds" / "ocr.1.xml"
RESULTS = ROOT / "bench" / "results"
DOCS_PLOT = ROOT / "docs" / "bench-latency.png"
LUA = ROOT / "bench" / "post.lua"
CONNECTIONS = 32  # wrk's connections at saturation (the load)
OPEN_LOOP_CONNECTIONS = 64  # the open-loop generator's pool (a real sender opens more)
NOOP_CONSUMER = "bench.noop_consumer"
NOOP_NAME = "bench-noop"

NOOP = "no-op aiohttp"
NAIVE = "naive: a publish per request"
GROUP = "naive handler + group commit"
FSYNC = "naive handler + local fsync, no broker"
APP = "our HTTP app, no broker"
OURS = "callback-fanout ingress"


@dataclass(frozen=True)
class Plan:
    """How long each section runs: the full run or ``--quick``."""

    rounds: int
    saturation_seconds: float
    warmup_seconds: float
    fractions: tuple[float, ...]
    rate_seconds: float
    sustained_seconds: float
    e2e_seconds: float
    e2e_setups: tuple[tuple[int, int], ...]  # (routers, workers)
    backlog_events: int
    router_bodies: int
    drain_timeout: float

    @classmethod
    def choose(cls, quick: bool) -> Plan:
        if quick:
            return cls(1, 5, 1, (0.1, 0.25, 0.5), 3, 8, 2, ((1, 1),), 20_000, 5_000, 60)
        return cls(
            3,
            8,
            2,
            (0.05, 0.1, 0.15, 0.25, 0.5, 0.75),
            5,
            30,
            3,
            ((1, 1), (1, 2), (2, 2)),
            100_000,
            20_000,
            120,
        )


# -- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    """A process the benchmark started; stopped (SIGTERM, then SIGKILL) at the end."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_mb(self) -> float | None:
        """Resident memory now, in MB (None once the process is gone)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


class Sampler:
    """Samples a process's RSS in the background."""

    def __init__(self, proc: Proc, interval: float = 0.5) -> None:
        self.proc = proc
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (monotonic time, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.proc.rss_mb()
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float | None:
        return max((mb for _, mb in self.samples), default=None)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and all its threads so far (None if unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _idle_seconds() -> float | None:
    """Idle time of all cores together so far, from ``/proc/stat``."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    return (int(first[4]) + int(first[5])) / _TICK  # idle, iowait


def broker_pid() -> int | None:
    """The local RabbitMQ node's process (``beam.smp``), when it runs on this machine."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "beam.smp":
                cmdline = (comm.parent / "cmdline").read_bytes()
                if b"rabbit" in cmdline:
                    return int(comm.parent.name)
    return None


class CpuMeter:
    """Where the machine's CPU went during one load run: server, broker, load generator.

    The load generator is the benchmark's child that finished inside the block (its CPU is
    in this process's ``RUSAGE_CHILDREN``); the broker is counted only when it runs here.
    """

    def __init__(self, server: Proc, broker: int | None) -> None:
        self.pids = {"server": server.pid, "broker": broker}
        self.used: dict[str, float | None] = {}

    def _read(self) -> dict[str, float | None]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        now: dict[str, float | None] = {
            name: _cpu_seconds(pid) if pid is not None else None for name, pid in self.pids.items()
        }
        now["load"] = children.ru_utime + children.ru_stime
        now["idle"] = _idle_seconds()
        now["wall"] = time.monotonic()
        return now

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *_exc: object) -> None:
        end = self._read()
        for name, value in end.items():
            before = self._start.get(name)
            self.used[name] = None if value is None or before is None else value - before

    def per_request(self, requests: int) -> dict[str, float | None]:
        """CPU microseconds per request of each process, and the machine's idle share."""
        out: dict[str, float | None] = {
            name: (1e6 * used / requests) if used is not None and requests else None
            for name, used in self.used.items()
            if name not in ("idle", "wall")
        }
        idle, wall = self.used.get("idle"), self.used.get("wall")
        out["idle_pct"] = (
            100 * idle / (wall * (os.cpu_count() or 1)) if idle is not None and wall else None
        )
        return out


def free_port() -> int:
    """A port nobody listens on (bound without SO_REUSEPORT, so a stale server shows)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float, proc: Proc) -> None:
    """Wait until ``url`` answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early; see {proc.log}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready at {url} within {timeout:.0f}s; see {proc.log}")


# -- load ------------------------------------------------------------------------------------


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


def run_wrk(wrk: str, url: str, seconds: float) -> Load:
    """wrk at saturation: 1 thread, 32 connections, the seed POSTed by ``bench/post.lua``."""
    argv = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "10s"]
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


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


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


# -- the broker side -------------------------------------------------------------------------


def broker(coro_fn: Callable[..., Any], *args: Any) -> Any:
    """Run one broker chore in its own event loop (the benchmark itself is synchronous)."""
    return asyncio.run(coro_fn(*args))


async def _connect(url: str) -> Any:
    import aio_pika

    return await aio_pika.connect(url)


async def count_bodies(url: str, prefix: str) -> tuple[int, int, set[str], int]:
    """Drain ``<prefix>.raw``: (messages, bodies, request ids, bodies not equal to the seed).

    Consumes until the queue stays empty (nothing publishes to it any more), then makes sure
    with a ``basic.get``: exact, where a quorum queue's declared count can lag. The queue is
    declared passively, so its arguments need not match this checkout's.
    """
    from shared.batchformat import is_batch, unpack
    from shared.topology import Topology

    seed = SEED.read_bytes()
    topology = Topology(prefix)
    connection = await _connect(url)
    ids: set[str] = set()
    messages = bodies = wrong = 0

    def take(message: Any) -> None:
        nonlocal messages, bodies, wrong
        if is_batch(message.content_type):
            entries = [(m.request_id, b) for m, b in unpack(message.body)]
        else:
            entries = [(message.message_id or "", message.body)]
        for request_id, body in entries:
            ids.add(request_id)
            wrong += body != seed
        bodies += len(entries)
        messages += 1

    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        queue = await channel.declare_queue(topology.raw, passive=True)
        while True:
            with contextlib.suppress(TimeoutError):
                async with queue.iterator(timeout=2) as it:
                    async for message in it:
                        take(message)
                        await message.ack()
            last = await queue.get(fail=False)
            if last is None:
                return messages, bodies, ids, wrong
            take(last)
            await last.ack()
    finally:
        await connection.close()


async def consumers_on(url: str, queue: str) -> int:
    """Consumers of ``queue`` (a passive declare: its arguments need not match ours)."""
    connection = await _connect(url)
    try:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)
    except Exception:  # not declared yet
        return 0
    finally:
        await connection.close()


async def ready_messages(url: str, queues: Sequence[str]) -> int:
    """Ready messages in ``queues`` (passive declares: metrics, they may lag a little)."""
    connection = await _connect(url)
    try:
        total = 0
        for queue in queues:
            declared = await (await connection.channel()).declare_queue(queue, passive=True)
            total += declared.declaration_result.message_count or 0
        return total
    finally:
        await connection.close()


async def fill_backlog(url: str, prefix: str, count: int) -> int:
    """Publish ``count`` events of the seed to the no-op consumer's queue; its size in bytes."""
    import aio_pika

    from shared.callbacks.events import Envelope
    from shared.callbacks.parser import parse_callback
    from shared.settings import Settings
    from shared.topology import Topology
    from workers.envelope import event_message

    seed = SEED.read_bytes()
    topology = Topology(prefix)
    queues = topology.consumer(NOOP_NAME, Settings.load().retry_delays)
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_consumer(channel, queues, ["#"])
        received = datetime.now(UTC)
        size = 0
        window = 500
        for start in range(0, count, window):
            messages = []
            for i in range(start, min(count, start + window)):
                envelope = Envelope(
                    request_id=f"backlog{i:010d}",
                    received_at=received,
                    source_address="127.0.0.1",
                    content_type="application/xml",
                    raw_body=seed,
                )
                [event] = parse_callback(seed, envelope=envelope)
                messages.append(event_message(event, 0))
            size += sum(len(m.body) for m in messages)
            await asyncio.gather(
                *(channel.default_exchange.publish(m, routing_key=queues.main) for m in messages)
            )
        return size
    finally:
        await connection.close()


async def fill_raw(url: str, prefix: str, count: int) -> int:
    """Send ``count`` seed bodies to ``<prefix>.raw`` as the ingress does; the messages it took.

    Our publisher, 64 requests at a time: the bodies travel in batches as under load.
    """
    from ingress.app import next_request_id
    from ingress.publisher import AmqpPublisher
    from shared.batchformat import RawMeta
    from shared.logs import configure_logging
    from shared.settings import Settings

    seed = SEED.read_bytes()
    headers = {"Content-Type": "application/xml"}
    settings = Settings.load(amqp_url=url, prefix=prefix, log_level="warning")
    configure_logging(settings)  # the benchmark's output is its tables, not our log lines
    publisher = AmqpPublisher(settings)
    await publisher.start()
    try:
        slots = asyncio.Semaphore(64)

        async def one() -> None:
            async with slots:
                meta = RawMeta(next_request_id(), time.time(), "application/xml", None, headers)
                await publisher.publish(seed, meta)

        await asyncio.gather(*(one() for _ in range(count)))
        return publisher.messages_confirmed
    finally:
        await publisher.close()


async def delete_everything(url: str, prefixes: Sequence[str], extra_queues: Sequence[str]) -> None:
    """Delete every queue and exchange the benchmark may have declared."""
    import aio_pika

    from shared.settings import Settings
    from shared.topology import Topology

    connection = await aio_pika.connect(url)
    try:
        delays = Settings.load().retry_delays
        for prefix in prefixes:
            t = Topology(prefix)
            cq = t.consumer(NOOP_NAME, delays)
            for queue in [
                t.raw,
                t.unparsed,
                t.unrouted,
                cq.main,
                cq.dead,
                *(q for _, q in cq.delays),
            ]:
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(queue)
            for exchange in (t.events, t.unrouted):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.exchange_delete(exchange)
        for queue in extra_queues:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
    finally:
        await connection.close()


# -- the run ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = Plan.choose(args.quick)
        self.url: str = args.amqp_url
        self.run_id = secrets.token_hex(3)
        self.prefix = f"bench-{self.run_id}"
        self.prefixes: list[str] = []
        self.extra_queues: list[str] = []
        self.procs: list[Proc] = []
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.logs = RESULTS / f"logs-{self.stamp}"
        self.results: dict[str, Any] = {"notes": []}
        self.deadline = time.monotonic() + (240 if args.quick else 900)
        self.wrk: str | None = None
        self.broker_pid: int | None = None

    # processes

    def _local_broker(self) -> bool:
        """Whether the broker is this machine's (its CPU can then be read)."""
        return urlsplit(self.url).hostname in ("127.0.0.1", "localhost", "::1")

    def start(self, name: str, argv: list[str], *, cwd: Path = ROOT, **env: str) -> Proc:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("wb") as sink:
            popen = subprocess.Popen(
                argv, cwd=cwd, env=_env(**env), stdout=sink, stderr=subprocess.STDOUT
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_role(
        self, role: str, name: str, prefix: str, *extra: str, tree: Path = ROOT, **env: str
    ) -> Proc:
        """A ``callback-fanout`` role under ``prefix`` (from another checkout with ``tree``)."""
        if prefix not in self.prefixes:
            self.prefixes.append(prefix)
        argv = [sys.executable, "-m", "callback_fanout", role, "--prefix", prefix, *extra]
        env |= {
            "CALLBACK_FANOUT_AMQP_URL": self.url,
            "CALLBACK_FANOUT_LOG_LEVEL": "warning",
            "PYTHONPATH": str(tree),
        }
        return self.start(name, argv, cwd=tree, **env)

    def start_worker(self, name: str, prefix: str, progress: Path) -> Proc:
        """A worker running the no-op consumer, reporting its count into ``progress``."""
        progress.mkdir(parents=True, exist_ok=True)
        return self.start_role(
            "worker",
            name,
            prefix,
            "--consumer",
            NOOP_CONSUMER,
            "--no-entry-points",
            BENCH_PROGRESS_DIR=str(progress),
        )

    def start_ingress(self, name: str, prefix: str, tree: Path = ROOT) -> Proc:
        port = free_port()
        proc = self.start_role(
            "ingress", name, prefix, "--host", "127.0.0.1", "--port", str(port), tree=tree
        )
        proc.port = port
        wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc)
        return proc

    def start_server(self, kind: str, name: str) -> Proc:
        port = free_port()
        argv = [sys.executable, "-m", "bench.servers", kind, "--port", str(port)]
        if kind == "naive":
            queue = f"{self.prefix}.naive"
            self.extra_queues.append(queue)
            argv += ["--amqp-url", self.url, "--queue", queue]
        if kind == "group":
            prefix = f"{self.prefix}-group"
            self.prefixes.append(prefix)
            argv += ["--amqp-url", self.url, "--prefix", prefix]
        if kind == "fsync":
            argv += ["--file", str(self.logs / "fsync-server.log")]
        proc = self.start(name, argv)
        proc.port = port
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()
        broker(delete_everything, self.url, self.prefixes, self.extra_queues)

    def time_left(self) -> bool:
        return time.monotonic() < self.deadline

    def saturate(self, proc: Proc, seconds: float) -> Load:
        url = f"http://127.0.0.1:{proc.port}/callbacks"
        with Sampler(proc) as sampler, CpuMeter(proc, self.broker_pid) as meter:
            if self.wrk is not None:
                load = run_wrk(self.wrk, url, seconds)
            else:
                load = run_loadgen(url, rate=None, seconds=seconds)
        load.rss_peak = sampler.peak
        load.cpu = meter.per_request(load.ok + load.non_2xx)
        return load

    # sections

    def run(self) -> dict[str, Any]:
        self.wrk = ensure_wrk(not self.args.no_install)
        if self.wrk is None:
            note = (
                "wrk is not installed (apt-get install wrk): saturation used the Python "
                "closed-loop generator instead, which shares the 2 cores and reads lower"
            )
            print(note, flush=True)
            self.results["notes"].append(note)
        self.results["tool"] = "wrk" if self.wrk else "loadgen (closed)"
        self.broker_pid = broker_pid() if self._local_broker() else None
        servers: dict[str, Proc] = {
            NOOP: self.start_server("noop", "noop"),
            NAIVE: self.start_server("naive", "naive"),
            GROUP: self.start_server("group", "group"),
            FSYNC: self.start_server("fsync", "fsync"),
            APP: self.start_server("app", "app"),
            OURS: self.start_ingress("ingress", self.prefix),
        }
        if self.args.compare_tree:
            label = self.args.compare_label or f"ingress from {self.args.compare_tree.name}"
            servers[label] = self.start_ingress(
                "ingress-compare", f"{self.prefix}-cmp", tree=self.args.compare_tree.resolve()
            )
        self.section_saturation(servers)
        self.section_rates(servers)
        self.section_sustained(servers[OURS])
        self.section_delivered()
        for proc in servers.values():
            proc.stop()
        if not self.args.skip_e2e and self.time_left():
            self.section_e2e()
        if not self.args.skip_e2e and self.time_left():
            self.section_router()
        if not self.args.skip_e2e and self.time_left():
            self.section_backlog()
        self.section_parser()
        return self.results

    def section_parser(self) -> None:
        """The parser's own figure (``bench/parse_bench.py``, one core), for the same page."""
        script = ROOT / "bench" / "parse_bench.py"
        if not script.exists():
            return
        print("parser: bench/parse_bench.py", flush=True)
        out = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=ROOT,
            env=_env(),
        )
        self.results["parser"] = out.stdout.strip().splitlines() if out.returncode == 0 else []

    def section_saturation(self, servers: dict[str, Proc]) -> None:
        plan = self.plan
        print(
            f"saturation: {plan.rounds} round(s) of {plan.saturation_seconds:g}s each", flush=True
        )
        self.results["acked"] = 0  # 2xx answers of our ingress, every run counted
        self.results["acked_ids"] = []
        self.results["in_flight_at_cutoff"] = 0  # bound on bodies published but never answered
        for name, proc in servers.items():  # warm up: connections, caches, the broker's queue
            self._count(name, self.saturate(proc, plan.warmup_seconds))
        runs: dict[str, list[Load]] = {name: [] for name in servers}
        for round_ in range(plan.rounds):
            for name, proc in servers.items():
                load = self.saturate(proc, plan.saturation_seconds)
                self._count(name, load)
                runs[name].append(load)
                print(
                    f"  round {round_ + 1} {name}: {load.throughput:,.0f} req/s "
                    f"p99 {load.p99:.1f} ms non-2xx {load.non_2xx}",
                    flush=True,
                )
        self.results["saturation"] = {
            name: [vars(x) for x in loads] for name, loads in runs.items()
        }

    def _count(self, name: str, load: Load) -> None:
        """Keep the account of what our ingress acked, for the delivery check."""
        if name != OURS:
            return
        self.results["acked"] += load.ok
        self.results["acked_ids"] += load.request_ids
        # wrk stops with a request in flight on each connection: published, never answered
        self.results["in_flight_at_cutoff"] += CONNECTIONS if load.tool == "wrk" else 0
        self.results["in_flight_at_cutoff"] += load.unanswered

    def section_rates(self, servers: dict[str, Proc]) -> None:
        plan = self.plan
        noop = median_throughput(self.results, NOOP)
        rates: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        print(f"fixed rates: {', '.join(f'{f:g}' for f in plan.fractions)} x no-op", flush=True)
        for fraction in plan.fractions:
            rate = fraction * noop
            for name, proc in servers.items():
                if (rates[name] and rates[name][-1]["saturated"]) or not self.time_left():
                    continue  # past its capacity at a lower rate already
                ids = self.logs / f"ids-{name.replace(' ', '_')}-{fraction:g}.txt"
                url = f"http://127.0.0.1:{proc.port}/callbacks"
                load = run_loadgen(url, rate=rate, seconds=plan.rate_seconds, ids=ids)
                saturated = (
                    load.dropped > 0
                    or load.throughput < 0.9 * rate
                    or load.p99 > 1000
                    or load.unanswered > 0
                )
                self._count(name, load)
                entry = vars(load) | {"fraction": fraction, "saturated": saturated}
                entry.pop("request_ids")
                rates[name].append(entry)
                print(
                    f"  {fraction:g}x = {rate:,.0f} req/s {name}: p50 {load.p50:.2f} "
                    f"p99 {load.p99:.2f} p99.9 {load.p999:.2f} ms"
                    f"{' (saturated)' if saturated else ''}",
                    flush=True,
                )
        self.results["rates"] = rates

    def section_sustained(self, ours: Proc) -> None:
        seconds = self.plan.sustained_seconds
        print(f"sustained saturation of our ingress: {seconds:g}s", flush=True)
        load = self.saturate(ours, seconds)
        self._count(OURS, load)
        self.results["sustained"] = vars(load)
        self.results["sustained"].pop("request_ids")
        print(f"  {load.throughput:,.0f} req/s, RSS peak {load.rss_peak or 0:.0f} MB", flush=True)

    def section_delivered(self) -> None:
        time.sleep(1)  # the last confirms are in; nothing is in flight any more
        messages, bodies, ids, wrong = broker(count_bodies, self.url, self.prefix)
        acked_ids = set(self.results.pop("acked_ids"))
        missing = len(acked_ids - ids)
        acked, cutoff = self.results["acked"], self.results["in_flight_at_cutoff"]
        self.results["delivered"] = {
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

    def section_e2e(self) -> None:
        from shared.callbacks.parser import parse_callback

        per_body = len(parse_callback(SEED.read_bytes()))
        print("end to end: HTTP in -> router -> no-op consumer", flush=True)
        out = []
        for routers, workers in self.plan.e2e_setups:
            if self.time_left():
                out.append(self._e2e(routers, workers, per_body))
        self.results["e2e"] = out

    def _e2e(self, routers: int, workers: int, per_body: int) -> dict[str, Any]:
        from shared.settings import Settings
        from shared.topology import Topology

        plan = self.plan
        prefix = f"{self.prefix}-e2e{routers}{workers}"
        topology = Topology(prefix)
        main = topology.consumer(NOOP_NAME, Settings.load().retry_delays).main
        progress = self.logs / f"progress-{routers}-{workers}"
        worker_procs = [
            self.start_worker(f"worker-{routers}{workers}-{i}", prefix, progress)
            for i in range(workers)
        ]
        router_procs = [
            self.start_role("router", f"router-{routers}{workers}-{i}", prefix)
            for i in range(routers)
        ]
        wait_until(lambda: broker(consumers_on, self.url, main) >= workers, 60)
        ingress = self.start_ingress(f"ingress-e2e{routers}{workers}", prefix)
        wait_until(lambda: broker(consumers_on, self.url, topology.raw) >= routers, 60)
        with contextlib.ExitStack() as stack:
            samplers = [stack.enter_context(Sampler(p, 1.0)) for p in worker_procs + router_procs]
            t0 = time.time()
            load = self.saturate(ingress, plan.e2e_seconds)
            t_load = time.time()
            expected = load.ok * per_body  # at least: requests in flight at wrk's end add some

            def drained() -> bool:
                if _progress(progress)[0] < expected:
                    return False
                return bool(broker(ready_messages, self.url, [topology.raw, main]) == 0)

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

    def section_router(self) -> None:
        """One router alone on a backlog of raw bodies: events/s and CPU per event."""
        from shared.callbacks.parser import parse_callback
        from shared.topology import Topology

        n = self.plan.router_bodies
        prefix = f"{self.prefix}-router"
        self.prefixes.append(prefix)
        topology = Topology(prefix)
        expected = n * len(parse_callback(SEED.read_bytes()))
        print(f"router alone: a backlog of {n:,} raw bodies", flush=True)
        messages = broker(fill_raw, self.url, prefix, n)
        router = self.start_role("router", "router-alone", prefix)
        # The clock starts once it consumes: its start-up (imports, connecting) is not routing.
        wait_until(lambda: broker(consumers_on, self.url, topology.raw) >= 1, 60, 0.02)

        def routed() -> bool:
            return bool(broker(ready_messages, self.url, [topology.unrouted]) >= expected)

        t0 = time.monotonic()
        with CpuMeter(router, self.broker_pid) as meter:
            finished = wait_until(routed, self.plan.drain_timeout, 0.1)
        elapsed = time.monotonic() - t0
        router.stop()
        cpu = meter.per_request(expected)
        self.results["router"] = {
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
            f"{self.results['router']['router_cpu_us'] or 0:.0f} us/event",
            flush=True,
        )

    def section_backlog(self) -> None:
        plan = self.plan
        prefix = f"{self.prefix}-backlog"
        self.prefixes.append(prefix)
        n = plan.backlog_events
        print(f"worker memory: a backlog of {n:,} events drains", flush=True)
        size = broker(fill_backlog, self.url, prefix, n)
        progress = self.logs / "progress-backlog"
        worker = self.start_worker("worker-backlog", prefix, progress)
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

        self.results["backlog"] = {
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
        b = self.results["backlog"]
        print(
            f"  drained {done:,}/{n:,} in {elapsed:.1f}s; RSS at 10/50/90%: "
            f"{b['rss_at_10']}/{b['rss_at_50']}/{b['rss_at_90']} MB, peak {b['rss_peak']} MB",
            flush=True,
        )


def _progress(directory: Path) -> tuple[int, float | None]:
    """Events the no-op consumers under ``directory`` handled, and when the last one came."""
    count, last = 0, None
    for path in directory.glob("noop-*.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            count += data["count"]
            if data["last"] is not None:
                last = max(last or 0.0, data["last"])
    return count, last


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def median_load(loads: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median throughput among a server's saturation rounds."""
    return sorted(loads, key=lambda x: x["throughput"])[len(loads) // 2]


def median_throughput(results: dict[str, Any], name: str) -> float:
    return float(statistics.median(x["throughput"] for x in results["saturation"][name]))


# -- the report ------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024**2:.0f} GiB"
    return f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}"


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    noop = median_throughput(results, NOOP)
    lines.append(
        f"Saturation: {results['tool']}, 1 thread, {CONNECTIONS} connections, the 2.6 KB OCR XML "
        f"seed; median of {len(results['saturation'][NOOP])} interleaved round(s)."
    )
    lines.append("")
    lines.append(
        "| server | req/s | x no-op | p50 ms | p99 ms | p99.9 ms | non-2xx | errors | RSS MB |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, loads in results["saturation"].items():
        mid = median_load(loads)
        rss = max((x["rss_peak"] or 0) for x in loads)
        lines.append(
            f"| {name} | {mid['throughput']:,.0f} | {mid['throughput'] / noop:.2f} | "
            f"{_ms(mid['p50'])} | {_ms(mid['p99'])} | {_ms(mid['p999'])} | "
            f"{sum(x['non_2xx'] for x in loads)} | {sum(x['errors'] for x in loads)} | {rss:.0f} |"
        )
    lines += cpu_table(results)
    lines.append("")
    lines.append(
        f"Fixed rates (open loop, {OPEN_LOOP_CONNECTIONS} connections, latency from release; "
        "fractions of the no-op server's saturation throughput):"
    )
    lines.append("")
    lines.append(
        "| server | offered req/s | x no-op | achieved | p50 ms | p99 ms | p99.9 ms | non-2xx | "
        "dropped |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, entries in results.get("rates", {}).items():
        for e in entries:
            flag = " (saturated)" if e["saturated"] else ""
            lines.append(
                f"| {name} | {e['offered']:,.0f} | {e['fraction']:g} | "
                f"{e['throughput']:,.0f}{flag} | {_ms(e['p50'])} | {_ms(e['p99'])} | "
                f"{_ms(e['p999'])} | {e['non_2xx']} | {e['dropped']} |"
            )
    if "sustained" in results:
        s = results["sustained"]
        lines.append("")
        lines.append(
            f"Sustained saturation of our ingress: {s['throughput']:,.0f} req/s "
            f"({s['throughput'] / noop:.2f}x no-op), non-2xx {s['non_2xx']}, "
            f"RSS peak {s['rss_peak'] or 0:.0f} MB."
        )
    if "delivered" in results:
        d = results["delivered"]
        lines.append(
            f"Every acked body delivered: **{'yes' if d['ok'] else 'NO'}**. {d['bodies']:,} bodies "
            f"(in {d['messages']:,} messages) on the raw queue for {d['acked']:,} 2xx answers "
            f"(wrk stops with up to {CONNECTIONS} requests in flight, published but never "
            f"answered: at most {d['unanswered_bound']:,} more); of the "
            f"{d['acked_ids_checked']:,} acked request ids the open-loop runs recorded, "
            f"{d['acked_ids_missing']} missing; bodies differing from the seed: "
            f"{d['bodies_not_the_seed']}."
        )
    if results.get("e2e"):
        lines.append("")
        lines.append("End to end (HTTP in -> router -> no-op consumer; wrk burst, then drain):")
        lines.append("")
        lines.append("| routers | workers | events | seconds | events/s | worker RSS MB |")
        lines.append("|---:|---:|---:|---:|---:|---:|")
        for e in results["e2e"]:
            lines.append(
                f"| {e['routers']} | {e['workers']} | {e['events']:,} | {e['seconds']:.1f} | "
                f"{e['events_per_second']:,.0f}{'' if e['finished'] else ' (unfinished)'} | "
                f"{e['worker_rss_peak']:.0f} |"
            )
    lines += router_lines(results)
    if "backlog" in results:
        b = results["backlog"]
        lines.append("")
        lines.append(
            f"Worker memory while a backlog of {b['events']:,} events drains "
            f"({b['events_per_second']:,.0f} events/s): RSS at 10% / 50% / 90% drained "
            f"{b['rss_at_10'] or 0:.0f} / {b['rss_at_50'] or 0:.0f} / {b['rss_at_90'] or 0:.0f} "
            f"MB, peak {b['rss_peak'] or 0:.0f} MB."
        )
    if results.get("parser"):
        lines.append("")
        lines.append("Parser on one core (`bench/parse_bench.py`, same run):")
        lines.append("")
        lines.append("```")
        lines += results["parser"]
        lines.append("```")
    lines.append("")
    lines.append("Targets (issue 5), from this run:")
    lines.append("")
    lines += [f"- {line}" for line in targets(results)]
    for note in results["notes"]:
        lines.append("")
        lines.append(f"Note: {note}")
    return "\n".join(lines) + "\n"


def cpu_table(results: dict[str, Any]) -> list[str]:
    """Where both cores went at saturation: CPU microseconds per request of each process."""
    rows = []
    for name, loads in results["saturation"].items():
        mid = median_load(loads)
        cpu = mid.get("cpu") or {}
        if cpu.get("server") is None:
            continue

        def us(key: str, cpu: dict[str, float | None] = cpu) -> str:
            value = cpu.get(key)
            return "-" if value is None else f"{value:.0f}"

        known = [cpu.get(k) for k in ("server", "broker", "load")]
        total = sum(v for v in known if v is not None)
        idle = cpu.get("idle_pct")
        rows.append(
            f"| {name} | {us('server')} | {us('broker')} | {us('load')} | {total:.0f} | "
            f"{'-' if idle is None else f'{idle:.0f}'} |"
        )
    if not rows:
        return []
    cores = int(results.get("cores") or os.cpu_count() or 1)  # the run's machine, if saved
    return [
        "",
        f"CPU per request at saturation, same runs (microseconds of CPU; the {cores} cores "
        f"give {cores * 1_000_000:,} per second, so a total of T allows at most "
        f"{cores * 1_000_000:,}/T req/s):",
        "",
        "| server | server | broker | load generator | total | machine idle % |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ]


def router_lines(results: dict[str, Any]) -> list[str]:
    """The router-alone section: events/s and CPU per event."""
    r = results.get("router")
    if not r:
        return []
    cpu = [
        f"{label} {r[key]:.0f} us"
        for label, key in (("router", "router_cpu_us"), ("broker", "broker_cpu_us"))
        if r.get(key) is not None
    ]
    outcome = (
        f"{r['events_per_second']:,.0f} events/s; CPU per event: {', '.join(cpu)}."
        if r["finished"]
        else f"did not finish in {r['seconds']:.0f} s."
    )
    return [
        "",
        f"One router alone on a backlog of {r['bodies']:,} raw bodies ({r['messages']:,} "
        f"messages, batched as the ingress sends them under load): {outcome}",
    ]


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets, each with this run's figure and whether it is met."""

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "**not met**")

    out = []
    noop = median_throughput(results, NOOP)
    ours = median_throughput(results, OURS)
    sat = results["saturation"][OURS]
    non_2xx = sum(x["non_2xx"] + x["errors"] for x in sat)
    delivered = results.get("delivered", {}).get("ok")
    ratio = ours / noop
    out.append(
        f"durable ingest >= 0.6x no-op (aim 0.8x), zero non-2xx, every acked body delivered: "
        f"{ratio:.2f}x, {non_2xx} non-2xx/errors, delivered {delivered} - "
        f"{verdict(ratio >= 0.6 and non_2xx == 0 and bool(delivered))}"
    )
    half = next((e for e in results.get("rates", {}).get(OURS, []) if e["fraction"] == 0.5), None)
    if half is None:
        out.append(
            "ack latency p99 <= 10 ms, p99.9 <= 50 ms at half the no-op throughput: our ingress "
            "saturated below that rate - **not met**"
        )
    else:
        ok = half["p99"] <= 10 and half["p999"] <= 50 and not half["saturated"]
        out.append(
            f"ack latency p99 <= 10 ms, p99.9 <= 50 ms at half the no-op throughput "
            f"({half['offered']:,.0f} req/s): p99 {_ms(half['p99'])} ms, p99.9 "
            f"{_ms(half['p999'])} ms{' (saturated)' if half['saturated'] else ''} - {verdict(ok)}"
        )
    e2e = next((e for e in results.get("e2e", []) if e["routers"] == e["workers"] == 1), None)
    if e2e is None:
        out.append("end to end >= 3,000 events/s with 1 router + 1 worker (aim): not measured")
    else:
        rate = e2e["events_per_second"]
        out.append(
            f"end to end >= 3,000 events/s with 1 router + 1 worker (aim): {rate:,.0f} "
            f"events/s - {verdict(rate >= 3000)}"
        )
    rss = max(
        [x["rss_peak"] or 0 for x in sat] + [results.get("sustained", {}).get("rss_peak") or 0]
    )
    out.append(
        f"ingress RSS <= 100 MB under sustained saturation: {rss:.0f} MB - {verdict(rss <= 100)}"
    )
    backlog = results.get("backlog")
    if backlog and backlog["rss_at_10"] and backlog["rss_at_90"]:
        growth = backlog["rss_at_90"] - backlog["rss_at_10"]
        out.append(
            f"worker RSS flat while {backlog['events']:,} events drain: "
            f"{backlog['rss_at_10']:.0f} MB at 10%, {backlog['rss_at_90']:.0f} MB at 90% "
            f"({growth:+.1f} MB) - {verdict(growth <= 0.1 * backlog['rss_at_10'])}"
        )
    else:
        out.append("worker RSS flat while a backlog drains: not measured")
    return out


def plot(results: dict[str, Any], paths: Sequence[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.2), dpi=110)
    for i, (name, entries) in enumerate(results.get("rates", {}).items()):
        if not entries:
            continue
        color = f"C{i}"
        x = [e["offered"] for e in entries]
        ax.plot(x, [e["p99"] for e in entries], "o-", color=color, label=f"{name} p99")
        ax.plot(x, [e["p50"] for e in entries], "x--", color=color, alpha=0.6, label=f"{name} p50")
        hollow = [e for e in entries if e["saturated"]]
        ax.plot(
            [e["offered"] for e in hollow],
            [e["p99"] for e in hollow],
            "o",
            markersize=11,
            markerfacecolor="none",
            color=color,
        )
    half = median_throughput(results, NOOP) / 2
    ax.axvline(half, color="grey", linestyle=":", linewidth=1)
    ax.text(
        half, 0.02, " half the no-op\n throughput", transform=ax.get_xaxis_transform(), fontsize=7
    )
    ax.axhline(10, color="grey", linestyle=":", linewidth=1)
    ax.text(
        0.01, 10, "p99 target 10 ms", transform=ax.get_yaxis_transform(), fontsize=7, va="bottom"
    )
    ax.set_yscale("log")
    ax.set_xlabel("offered load, requests/s (open loop)")
    ax.set_ylabel("latency, ms (log)")
    ax.set_title(
        f"Latency against offered rate (circled: saturated) - {results['date']}", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 2 minutes)")
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        help="the broker (default: AMQP_URL, else the local one)",
    )
    parser.add_argument("--docs", action="store_true", help="also write docs/bench-latency.png")
    parser.add_argument("--skip-e2e", action="store_true", help="HTTP sections only")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument(
        "--compare-tree",
        type=Path,
        help="also run the ingress of another checkout (a before/after in the same run)",
    )
    parser.add_argument("--compare-label", help="the name of that row in the tables")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="run nothing: print the table and draw the plot of a saved run again",
    )
    args = parser.parse_args(argv)
    if args.report is not None:
        results = json.loads(args.report.read_text())
        plot(results, [args.report.with_suffix(".png"), *([DOCS_PLOT] if args.docs else [])])
        print(f"{results['date']}, {results['machine']}, {results['mode']} run")
        print()
        print(report(results))
        return 0
    bench = Bench(args)
    started = time.monotonic()
    if not SEED.exists():
        raise SystemExit(f"the seed {SEED.relative_to(ROOT)} is missing")
    try:
        results = bench.run()
    finally:
        bench.stop_all()
    results["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["machine"] = machine()
    results["cores"] = os.cpu_count() or 1
    results["seconds"] = round(time.monotonic() - started)
    results["mode"] = "quick" if args.quick else "full"
    table = report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"ingress-{bench.stamp}.json").write_text(json.dumps(results, indent=1))
    (RESULTS / f"ingress-{bench.stamp}.md").write_text(table)
    png = RESULTS / f"ingress-{bench.stamp}.png"
    plot(results, [png, *([DOCS_PLOT] if args.docs else [])])
    print()
    print(
        f"{results['date']}, {results['machine']}, {results['mode']} run in {results['seconds']}s"
    )
    print()
    print(table)
    print(f"written: {RESULTS.relative_to(ROOT)}/ingress-{bench.stamp}.{{md,json,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
