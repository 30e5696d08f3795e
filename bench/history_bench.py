"""The delivery history's cost: a worker's events/s with history on and off, same run.

    python bench/history_bench.py                  # 3 rounds of 6000 events each way
    python bench/history_bench.py --events 3000 --rounds 3
    python bench/history_bench.py --events 10000 --rounds 6 --pin --btree

``--pin`` puts this process (the worker) alone on the first core and every thread of the
broker (``beam.smp``), of the PostgreSQL server and of the history's writing process (the
worker's child, ``shared.history_process``) on the others, for the run (root, Linux; every
thread of the broker's and the server's is given all cores again at the end: the writing
process ends with its worker); ``--btree`` adds a third
variant, history on with the table's lookup indexes as B-trees (as they were before they
became hash indexes), in a database of its own, in the same rounds.

Each round fills a no-op consumer's queue with distinct events (the OCR seed under other job
ids, as the router publishes them: ``bench/builtins_bench.py``'s), then drains it with one
worker (the real runtime, in this process, on uvloop when installed) twice: without a
history DSN, and with one (a PostgreSQL database made for the run, dropped after; the
history written in batches beside the work). The two alternate, and which goes first
alternates round by round, so the neighbours' noise falls on both alike; the median round is
reported. Events/s is the wall clock from the first handled event to the last; the worker's
CPU per event counts from its start until the history has written (or dropped) every
outcome, so the history's whole cost in the worker is in it, and again between the first
handled event and the last (the drain alone); the writing process's CPU over the drain, and
the database's server CPU per event, are reported apart. The worker runs with the collector
tuned as the worker command tunes it (``shared.gctuning``).

Then the size of what was written: ``pg_total_relation_size`` of the history table (its
indexes included) over its row count, and the heap and the indexes apart: the bytes an
outcome costs, which with the retention bounds the table (rows per day x days x bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages live beside bench/
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench.builtins_bench import (  # noqa: E402
    Drain,
    _admin,
    _cpu_model,
    _process_cpu,
    backends_cpu,
    delete_all,
    drain_parser,
    events,
    fill,
    pg_argument,
    run_and_report,
    spec_of,
)
from shared.callbacks import CallbackEvent  # noqa: E402
from shared.gctuning import tune_collector  # noqa: E402
from shared.history import TABLE, create_table_sql  # noqa: E402
from shared.history_process import HistoryStore, frame  # noqa: E402
from shared.logs import configure_logging  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.wire.events import entries_of  # noqa: E402
from workers.consumer import LoadedConsumer  # noqa: E402
from workers.runtime.handling import Outcome  # noqa: E402
from workers.runtime.history import HistoryWriter  # noqa: E402
from workers.runtime.worker import WorkerService  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONCURRENCY = 64
VARIANTS = ("history off", "history on")
BTREE = "history on, B-tree indexes"
#: The processes ``--pin`` moves off the worker's core (``/proc/<pid>/comm``).
BESIDE = ("beam.smp", "postgres")


@dataclass(frozen=True)
class Round:
    rate: float
    worker_us: float
    database_us: float | None
    written: int
    dropped: int
    #: Between the first handled event and the last: µs of CPU per event of the worker, of
    #: the broker and of the whole PostgreSQL server (every process of it), and ``busy``,
    #: the worker's CPU over that wall clock (below 1: it waited for the broker).
    drain: dict[str, float]
    #: The history's writing process: its CPU per event, its start included (None: off).
    writer_us: float | None = None
    #: The writing process's peak resident memory, MB.
    writer_mb: float | None = None


def _pids_of(names: tuple[str, ...]) -> list[int]:
    """Every process whose command (``/proc/<pid>/comm``) is one of ``names``."""
    found: list[int] = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in names:
                found.append(int(comm.parent.name))
        except OSError:
            continue  # gone meanwhile
    return found


def _cpu_of(names: tuple[str, ...]) -> float:
    """CPU seconds (user + system) so far of every process whose command is in ``names``."""
    return sum(_process_cpu(pid) for pid in _pids_of(names))


def _probe(history: HistoryWriter | None) -> Callable[[], dict[str, float]]:
    def probe() -> dict[str, float]:
        pid = history.pid if history is not None else None
        return {
            "worker": time.process_time(),
            "writer": _process_cpu(pid) if pid is not None else 0.0,
            "broker": _cpu_of(("beam.smp",)),
            "postgres": _cpu_of(("postgres",)),
        }

    return probe


def _threads_of(names: tuple[str, ...]) -> list[int]:
    """Every thread of every process whose command is one of ``names``."""
    return [tid for pid in _pids_of(names) for tid in _threads_of_process(pid)]


def _set_affinity(threads: list[int], cores: set[int]) -> None:
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cores)
        except OSError:
            continue  # gone meanwhile


@contextlib.contextmanager
def pinned(on: bool) -> Iterator[str | None]:
    """With ``on``: this process on the first core, the broker and PostgreSQL (every thread;
    the backends they fork inherit it) on the others, until the end, when every thread of
    theirs (those born meanwhile too) is given every core again. What was done, or None."""
    cores = sorted(os.sched_getaffinity(0))
    if not on or len(cores) < 2:
        yield None
        return
    mine, beside = {cores[0]}, set(cores[1:])
    everything = set(range(os.cpu_count() or len(cores)))
    before = os.sched_getaffinity(0)
    _set_affinity(_threads_of(BESIDE), beside)
    os.sched_setaffinity(0, mine)
    try:
        others = ", ".join(str(c) for c in sorted(beside))
        yield (
            f"worker on CPU {cores[0]}; broker, PostgreSQL and the history's writing process "
            f"on CPU {others}"
        )
    finally:
        os.sched_setaffinity(0, before)
        _set_affinity(_threads_of(BESIDE), everything)


async def _btree_table(dsn: str) -> None:
    """The history table with its lookup indexes as B-trees (before they were hash)."""
    connection = await asyncpg.connect(dsn)
    try:
        for statement in create_table_sql():
            await connection.execute(statement.replace(" USING hash ", " "))
    finally:
        await connection.close()


def _noop(name: str) -> LoadedConsumer:
    spec = spec_of(name, CONCURRENCY)

    async def nothing(event: CallbackEvent) -> None:
        return None

    async def no_hook() -> None:
        return None

    return LoadedConsumer(spec, nothing, no_hook, no_hook, "noop")


async def drain(
    settings: Settings, n: int, offset: int, dsn: str | None, beside: set[int] | None
) -> Round:
    """Fill the no-op consumer's queue with ``n`` events, drain it with one worker; with
    ``beside``, the history's writing process on those cores (as the database is)."""
    loaded = _noop("noop-history")
    await fill(settings, loaded.spec, events(n, offset))
    if dsn is not None:
        settings = settings.model_copy(update={"history_dsn": SecretStr(dsn)})
    counter = Drain(n)
    worker = WorkerService(settings, [counter.counted(loaded)])
    history = worker.history
    counter.probe = _probe(history)
    database_before = await backends_cpu(dsn, dsn.rpartition("/")[2]) if dsn else 0.0
    cpu = time.process_time()
    await worker.start()
    writer_s = writer_mb = None
    try:
        await worker.wait_started()
        if history is not None:
            pid = await _writing_process(history)
            if beside:
                _set_affinity(_threads_of_process(pid), beside)
        await asyncio.wait_for(counter.done.wait(), timeout=600)
        if history is not None:  # the history's whole cost: until it kept every outcome
            await _kept(history, n)
            writer_s = _process_cpu(history.pid) if history.pid is not None else None
            writer_mb = _peak_mb(history.pid) if history.pid is not None else None
        cpu = time.process_time() - cpu
        database_s = (
            await backends_cpu(dsn, dsn.rpartition("/")[2]) - database_before if dsn else None
        )
    finally:
        await worker.stop()
    return Round(
        counter.rate,
        cpu * 1e6 / n,
        database_s * 1e6 / n if database_s is not None else None,
        history.written if history is not None else 0,
        history.dropped if history is not None else 0,
        counter.spent(),
        writer_s * 1e6 / n if writer_s is not None else None,
        writer_mb,
    )


def _peak_mb(pid: int) -> float | None:
    """The most memory (resident) process ``pid`` has held, in MB; None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return int(kb) / 1024


async def _writing_process(history: HistoryWriter) -> int:
    """The pid of ``history``'s writing process, once it runs (10 s at most)."""
    for _ in range(1000):
        if history.pid is not None:
            return history.pid
        await asyncio.sleep(0.01)
    raise RuntimeError("the history's writing process did not start")


def _threads_of_process(pid: int) -> list[int]:
    try:
        return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return []


async def _kept(history: HistoryWriter, n: int) -> None:
    """Wait (a minute at most) until ``history`` wrote or dropped ``n`` outcomes."""
    for _ in range(6000):
        if history.written + history.dropped >= n:
            return
        await asyncio.sleep(0.01)


async def row_cost(dsn: str, n: int = 20_000) -> dict[str, float]:
    """CPU µs per outcome of the history alone (no broker), with a real event's outcome: in
    the worker, ``record()`` on the hot path and handing the rows over in batches (a frame
    each); in the writing process, the ``COPY`` of those batches."""
    [event] = events(1, 0)
    decoded = entries_of(event.content_type, event.body, 1)[0].event()
    outcome = Outcome("handled", 1, 1, decoded, handler_seconds=0.0001)
    writer = HistoryWriter(dsn, "bench-row-cost", 3600, capacity=n, batch_size=1000)
    unused: Any = None  # the message is read only for an event that did not validate
    started = time.process_time()
    for _ in range(n):
        writer.record("noop", outcome, unused)
    record_us = (time.process_time() - started) * 1e6 / n
    # every outcome's own values, as in a drain (equal objects would be framed once)
    rows = [
        tuple(v.encode().decode() if isinstance(v, str) else v for v in row) for row in writer._rows
    ]
    writer._rows.clear()
    batches = [rows[i : i + writer.batch_size] for i in range(0, n, writer.batch_size)]
    started = time.process_time()
    framed = sum(len(frame(batch)) for batch in batches)
    frame_us = (time.process_time() - started) * 1e6 / n
    store = HistoryStore(dsn, table=TABLE)
    await store.write(rows[:1])  # the pool and the table, outside the timing
    started = time.process_time()
    for batch in batches:
        await store.write(batch)
    write_us = (time.process_time() - started) * 1e6 / n
    await store.close()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"DELETE FROM {TABLE} WHERE prefix = 'bench-row-cost'")
    finally:
        await connection.close()
    return {
        "record_us": record_us,
        "frame_us": frame_us,
        "frame_bytes": framed / n,
        "write_us": write_us,
    }


async def row_size(dsn: str) -> dict[str, float]:
    """Bytes per history row: the whole relation (indexes included), heap, indexes."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"ANALYZE {TABLE}")
        rows = await connection.fetchval(f"SELECT count(*) FROM {TABLE}")
        total = await connection.fetchval("SELECT pg_total_relation_size($1)", TABLE)
        heap = await connection.fetchval("SELECT pg_table_size($1)", TABLE)
        indexes = await connection.fetchval("SELECT pg_indexes_size($1)", TABLE)
    finally:
        await connection.close()
    return {
        "rows": rows,
        "total_bytes": total,
        "bytes_per_row": total / rows if rows else 0.0,
        "heap_bytes_per_row": heap / rows if rows else 0.0,
        "index_bytes_per_row": indexes / rows if rows else 0.0,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.load(
        amqp_url=args.amqp_url,
        prefix=f"bench-history-{secrets.token_hex(3)}",
        retry_delays=[1.0],
        log_level="warning",
    )
    configure_logging(settings)
    tune_collector()  # as the worker command does
    server_dsn = args.pg_dsn
    base = server_dsn.rpartition("/")[0]
    stem = f"cf_bench_history_{secrets.token_hex(4)}"
    dsns = {"history off": None, "history on": f"{base}/{stem}"}
    if args.btree:
        dsns[BTREE] = f"{base}/{stem}_btree"
    variants = tuple(dsns)
    rounds: dict[str, list[Round]] = {v: [] for v in variants}
    sizes: dict[str, dict[str, float]] = {}
    offset = 0
    created: list[str] = []
    try:
        for name in (d.rpartition("/")[2] for d in dsns.values() if d is not None):
            await _admin(server_dsn, f'CREATE DATABASE "{name}"')
            created.append(name)
        if args.btree:
            await _btree_table(f"{base}/{stem}_btree")
        beside = set(sorted(os.sched_getaffinity(0))[1:]) if args.pin else None
        with pinned(args.pin) as where:
            if where:
                print(f"  pinned: {where}", file=sys.stderr)
            for i in range(args.rounds):
                order = variants[i % len(variants) :] + variants[: i % len(variants)]
                for variant in order:
                    done = await drain(settings, args.events, offset, dsns[variant], beside)
                    offset += args.events
                    rounds[variant].append(done)
                    print(f"  {variant}: {done}", file=sys.stderr)
        for variant, written_to in dsns.items():
            if written_to is not None:
                sizes[variant] = await row_size(written_to)
        cost = await row_cost(f"{base}/{stem}")
    finally:
        await delete_all(settings, ["noop-history"])
        for name in created:
            await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores",
        "events_per_round": args.events,
        "pinned": where,
        "rounds": {v: [asdict(r) for r in done] for v, done in rounds.items()},
        "row_size": sizes["history on"],
        "row_sizes": sizes,
        "row_cost": cost,
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def table(result: dict[str, Any]) -> str:
    lines = [
        "| worker, no-op consumer | events/s (median) | rounds | worker CPU µs/event "
        "| worker CPU µs/event, drain | writing process CPU µs/event, drain "
        "| database CPU µs/event "
        "| outcomes written / dropped |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]

    def median_of(done: list[dict[str, Any]], key: str) -> str:
        values = [r[key] for r in done if r.get(key) is not None]
        return f"{_median(values):,.0f}" if values else "-"

    for variant, done in result["rounds"].items():
        rates = [r["rate"] for r in done]
        drained = [r["drain"]["worker"] for r in done if "worker" in r.get("drain", {})]
        writing = [r["drain"]["writer"] for r in done if r.get("drain", {}).get("writer")]
        kept = (
            f"{sum(r['written'] for r in done):,} / {sum(r['dropped'] for r in done):,}"
            if variant != "history off"
            else "-"
        )
        lines.append(
            f"| {variant} | {_median(rates):,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} "
            f"| {median_of(done, 'worker_us')} "
            f"| {f'{_median(drained):,.0f}' if drained else '-'} "
            f"| {f'{_median(writing):,.0f}' if writing else '-'} "
            f"| {median_of(done, 'database_us')} | {kept} |"
        )
    done_off = result["rounds"]["history off"]
    off = _median([r["rate"] for r in done_off])
    lines.append("")
    if result.get("pinned"):
        lines.append(f"Pinned: {result['pinned']}.")
    for variant, done in result["rounds"].items():
        if variant == "history off" or not off:
            continue
        # each round against the history-off drain of the same round
        paired = [r["rate"] / o["rate"] for r, o in zip(done, done_off, strict=False) if o["rate"]]
        cpu = [r["worker_us"] / o["worker_us"] for r, o in zip(done, done_off, strict=False)]
        lines.append(
            f"{variant}: {_median([r['rate'] for r in done]) / off:.1%} of history off's "
            f"events/s (median rounds); round by round {_median(paired):.1%} "
            f"({', '.join(f'{p:.0%}' for p in paired)}); worker CPU per event "
            f"{_median(cpu):.2f}x history off's (median of the rounds' ratios)."
        )
    peaks = [r["writer_mb"] for r in result["rounds"]["history on"] if r.get("writer_mb")]
    if peaks:
        lines.append(f"The writing process's peak resident memory: {max(peaks):.0f} MB.")
    sizes = result.get("row_sizes") or {"history on": result["row_size"]}
    for variant, size in sizes.items():
        lines.append(
            f"Bytes per outcome row, {variant}: {size['bytes_per_row']:,.0f} "
            f"(heap {size['heap_bytes_per_row']:,.0f}, indexes {size['index_bytes_per_row']:,.0f}; "
            f"{size['rows']:,} rows, {size['total_bytes'] / 1e6:,.1f} MB)."
        )
    cost = result["row_cost"]
    lines.append(
        f"CPU per outcome, the history alone: in the worker record() {cost['record_us']:.1f} µs "
        f"and handing it over {cost.get('frame_us', 0.0):.1f} µs "
        f"({cost.get('frame_bytes', 0.0):,.0f} bytes); in the writing process the batched "
        f"COPY {cost['write_us']:.1f} µs."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = drain_parser(__doc__, "history", 6000)
    pg_argument(parser)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the worker alone on the first core, the broker and PostgreSQL on the others",
    )
    parser.add_argument(
        "--btree",
        action="store_true",
        help="also history on with the lookup indexes as B-trees (as before), same rounds",
    )
    args = parser.parse_args(argv)
    return run_and_report(run(args), table, "history", write_json=args.json)


if __name__ == "__main__":
    raise SystemExit(main())
