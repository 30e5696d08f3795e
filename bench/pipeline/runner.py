"""The run: the processes it started and the order of the sections."""

from __future__ import annotations

import argparse
import contextlib
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.pipeline.brokerops import broker, delete_everything
from bench.pipeline.common import (
    APP,
    FSYNC,
    GROUP,
    NAIVE,
    NOOP,
    NOOP_CONSUMER,
    OURS,
    RESULTS,
    ROOT,
    SECTIONS,
    Plan,
)
from bench.pipeline.cpu import CpuMeter, broker_pid
from bench.pipeline.load import Load, ensure_wrk, run_loadgen, run_wrk
from bench.pipeline.procs import Proc, Sampler, _env, free_port, wait_http
from bench.pipeline.sections import (
    backlog,
    e2e,
    http,
    messages,
    metrics,
    parser,
    pinned,
    roles,
    router,
)


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

    def _local_broker(self) -> bool:
        """Whether the broker is this machine's (its CPU can then be read)."""
        return urlsplit(self.url).hostname in ("127.0.0.1", "localhost", "::1")

    def start(
        self, name: str, argv: list[str], *, cwd: Path = ROOT, cpu: int | None = None, **env: str
    ) -> Proc:
        """Start ``argv``; ``cpu`` pins it (and every thread it starts) to that core."""
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
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
        self,
        role: str,
        name: str,
        prefix: str,
        *extra: str,
        tree: Path = ROOT,
        cpu: int | None = None,
        **env: str,
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
        return self.start(name, argv, cwd=tree, cpu=cpu, **env)

    def start_worker(
        self, name: str, prefix: str, progress: Path, tree: Path = ROOT, cpu: int | None = None
    ) -> Proc:
        """A worker running the no-op consumer, reporting its count into ``progress``."""
        progress.mkdir(parents=True, exist_ok=True)
        return self.start_role(
            "worker",
            name,
            prefix,
            "--consumer",
            NOOP_CONSUMER,
            "--no-entry-points",
            tree=tree,
            cpu=cpu,
            BENCH_PROGRESS_DIR=str(progress),
        )

    def start_ingress(
        self, name: str, prefix: str, *extra: str, tree: Path = ROOT, cpu: int | None = None
    ) -> Proc:
        port = free_port()
        address = ("--host", "127.0.0.1", "--port", str(port))
        proc = self.start_role("ingress", name, prefix, *address, *extra, tree=tree, cpu=cpu)
        proc.port = port
        wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc)
        return proc

    def start_server(self, kind: str, name: str, cpu: int | None = None) -> Proc:
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
        proc = self.start(name, argv, cpu=cpu)
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

    def saturate(self, proc: Proc, seconds: float, wrk_cpu: int | None = None) -> Load:
        url = f"http://127.0.0.1:{proc.port}/callbacks"
        with Sampler(proc) as sampler, CpuMeter(proc, self.broker_pid) as meter:
            if self.wrk is not None:
                load = run_wrk(self.wrk, url, seconds, wrk_cpu)
            else:
                load = run_loadgen(url, rate=None, seconds=seconds)
        load.rss_peak = sampler.peak
        load.cpu = meter.per_request(load.ok + load.non_2xx)
        return load

    def run(self) -> dict[str, Any]:
        """Every chosen section (all of them unless ``--section``), in order."""
        chosen = set(self.args.section or SECTIONS)
        self.broker_pid = broker_pid() if self._local_broker() else None
        if "http" in chosen:
            self._http()
        if "pinned" in chosen and self.time_left():
            pinned.run_pinned(self)
        if "metrics" in chosen and self.time_left():
            metrics.run_metrics(self)
        pipeline = {"e2e": e2e.run_e2e, "roles": roles.run_roles, "router": router.run_router}
        pipeline |= {"backlog": backlog.run_backlog}
        for name, section in pipeline.items():
            if name in chosen and not self.args.skip_e2e and self.time_left():
                section(self)
        if "parser" in chosen:
            parser.run_parser(self)
        if "messages" in chosen:
            messages.run_messages(self)
        return self.results

    def _http(self) -> None:
        """The ingress against its baselines (saturation, fixed rates, sustained, delivered)."""
        self.wrk = ensure_wrk(not self.args.no_install)
        if self.wrk is None:
            note = (
                "wrk is not installed (apt-get install wrk): saturation used the Python "
                "closed-loop generator instead, which shares the 2 cores and reads lower"
            )
            print(note, flush=True)
            self.results["notes"].append(note)
        self.results["tool"] = "wrk" if self.wrk else "loadgen (closed)"
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
        http.run_saturation(self, servers)
        http.run_rates(self, servers)
        http.run_sustained(self, servers[OURS])
        http.run_delivered(self)
        for proc in servers.values():
            proc.stop()
