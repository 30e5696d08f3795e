"""The operator console's page latency at scale: 10,000 messages parked, a million history rows.

    python -m bench.console_bench                   # about 4 minutes
    python -m bench.console_bench --requests 100 --rows 200000

The issue's target: every page answers in under 200 ms (p95) with 10,000 messages parked in
a consumer's dead queue and 1,000,000 rows in the delivery history; the parked pages read a
bounded window of the queue, never the whole of it.

1. **History**: a PostgreSQL database made for the run (``--pg-dsn`` or ``PG_DSN``; dropped
   after) gets the delivery history's table (``shared.history``) and ``--rows`` rows written
   by one ``INSERT ... SELECT generate_series`` before the indexes are built: four outcomes
   an event (``handled`` mostly, some ``retried``, ``parked``,
   ``duplicate``, ``timed_out``, ``filtered``) of six consumers, two events a job (so
   ~125,000 job ids, ~8 rows each), spread over the last 7 days, a tenth under another
   deployment's prefix; deterministic (hashes of the row number, no ``random()``). Then the
   known jobs' rows: each retried twice then parked by ``bench``, handled by ``idle``.
2. **Parked**: the topology of the consumers of ``bench/console_consumers.py`` under a fresh
   prefix, and ``--parked`` events (the OCR seed under other job ids, framed as the router
   publishes them) published, confirmed, to ``bench``'s dead queue with the headers the
   worker's runtime parks them with (``workers.runtime.handling.parked_headers``: attempts,
   the last error, the consumer, when), reasons and times varied. The known jobs sit at
   positions 0, 150, 190, 490, 5,000 and the last of the queue.
3. **Console**: ``ConsoleService`` in this process (the command's sampler interval, 5 s),
   with the history's DSN and a console token: the benchmark logs in as an operator does
   (``GET /login`` for the form's CSRF and the pre-login cookie, ``POST /login`` with the
   token, then the session cookie). No worker runs: nothing moves the parked messages.
4. **Pages**: each page ``--warmup`` times, then ``--requests`` times one after the other over
   HTTP (aiohttp, keep-alive, the whole body read; the status must be 200 and the body must
   not be the login form); p50/p95/max in ms.
5. **Breakdown**: the calls under the slow pages timed alone, in this process: the parking
   counts, 500 ``basic.get`` of the dead queue, the hand-back of the unacked messages (the
   channel's close, then the wait until the queue counts them again), the history lookup.
6. **Kept**: the dead queue's message count after every page, and its message ids read in
   order (``basic.get`` unacked, handed back) against the order they were published: the
   same messages, and where the order differs. The load average is printed beside: the
   figures are a wall clock, and the machine may be shared.

Needs RabbitMQ (``--amqp-url`` or ``AMQP_URL``) and PostgreSQL. The queues, exchanges and the
database are deleted at the end, on failure too. Prints a Markdown table; ``--json`` also
writes the raw numbers to ``bench/results/console.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages live beside bench/
    sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench import console_consumers  # noqa: E402
from bench.builtins_bench import (  # noqa: E402
    _admin,
    _cpu_model,
    events,
    pg_argument,
    run_and_report,
)
from callback_fanout.console.service import ConsoleService  # noqa: E402
from callback_fanout.tracing import _history_rows  # noqa: E402
from shared.control import ask_exchange, control_stream  # noqa: E402
from shared.history import COLUMNS, TABLE, create_table_sql  # noqa: E402
from shared.logs import configure_logging  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topology import Topology  # noqa: E402
from shared.wire.headers import DEAD_AT  # noqa: E402
from workers.runtime.handling import Outcome, parked_headers  # noqa: E402

#: The consumer whose dead queue is filled.
PARKED_CONSUMER = "bench"
#: Where the known jobs sit in the dead queue (the last one is added: ``parked - 1``).
KNOWN_POSITIONS = (0, 150, 190, 490, 5000)
#: A job id no history row or parked message names.
UNKNOWN = "a3c193f288b2c11eeb60f39de2fffffff"
#: The console token the benchmark logs in with (``NAME=SECRET``).
TOKEN_NAME = "bench"
TOKEN = "bench-console-token-0123456789"
#: The issue's bound on a page's p95, in ms.
TARGET_MS = 200.0
HISTORY_CONSUMERS = ("thumbs", "archive", "search", "billing", "bench", "idle")
REASONS = (
    "RuntimeError: bench refuses job {job}",
    "TimeoutError: the handler ran longer than 60 s",
    "HTTPStatusError: upstream answered 503 Service Unavailable",
    "ValidationError: 1 validation error for CallbackEvent",
)


@dataclass(frozen=True)
class Timing:
    page: str
    path: str
    samples_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        return _percentile(self.samples_ms, 0.95)

    @property
    def max(self) -> float:
        return max(self.samples_ms)


def _percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile, nearest rank (of 50 samples, p95 is the 48th smallest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(round(q * len(ordered), 9)))
    return ordered[min(len(ordered), rank) - 1]


# -- the history ------------------------------------------------------------------------------


def _fill_sql() -> str:
    """The history rows ``$4`` rows long, four an event, two events a job (see the module's
    doc); ``$1`` the run's prefix, ``$2`` another deployment's, ``$3`` now."""
    columns = ", ".join(COLUMNS)
    consumers = ", ".join(f"'{c}'" for c in HISTORY_CONSUMERS)
    keys = (
        "'TaskFinish.ImageOCR.Success', 'TaskFinish.PicProcess.Success', "
        "'TaskStart.ImageOCR.Processing', 'TaskFinish.Translation.Failure'"
    )
    return f"""
    INSERT INTO {TABLE} ({columns})
    SELECT
        base + (slot * interval '2 seconds') + (attempt - 1) * interval '5 seconds',
        CASE WHEN e % 10 = 9 THEN $2::text ELSE $1::text END,
        (ARRAY[{consumers}])[1 + (e + slot) % 6],
        outcome,
        attempt,
        md5('key' || e),
        'j' || md5('job' || (e / 2)),
        md5('request' || (e / 2)),
        (ARRAY[{keys}])[1 + e % 4],
        CASE WHEN outcome IN ('retried', 'parked', 'timed_out')
             THEN 'RuntimeError: upstream answered 503 for job j' || md5('job' || (e / 2))
        END,
        CASE WHEN outcome IN ('duplicate', 'filtered') THEN NULL ELSE (h % 50000) / 1e6 END,
        base - interval '150 milliseconds',
        '10.0.' || (e % 250) || '.' || (e % 7 + 1),
        (ARRAY['ingest-a', 'ingest-b'])[1 + e % 2],
        CASE WHEN e % 10 = 0 THEN md5('trace' || e) END
    FROM (
        SELECT n, e, slot, h, base,
            CASE WHEN h % 100 < 86 THEN 'handled' WHEN h % 100 < 92 THEN 'retried'
                 WHEN h % 100 < 94 THEN 'parked' WHEN h % 100 < 97 THEN 'duplicate'
                 WHEN h % 100 < 99 THEN 'timed_out' ELSE 'filtered' END AS outcome,
            CASE WHEN h % 100 BETWEEN 86 AND 93 OR h % 100 BETWEEN 97 AND 98
                 THEN 1 + h % 3 ELSE 1 END AS attempt
        FROM (
            SELECT n, n / 4 AS e, n % 4 AS slot,
                hashint4(n)::bigint + 2147483648 AS h,
                $3::timestamptz
                    - ((hashint4(n / 4)::bigint + 2147483648) % 604800) * interval '1 second'
                    AS base
            FROM generate_series(0, $4::integer - 1) AS n
        ) numbered
    ) chosen
    """


def _known_rows(prefix: str, jobs: list[str], now: datetime) -> list[tuple[Any, ...]]:
    """The known jobs' story: ``bench`` retried twice then parked it, ``idle`` handled it."""
    out: list[tuple[Any, ...]] = []
    for i, job in enumerate(jobs):
        at = now - timedelta(hours=i + 1)
        key, request = f"known-key-{job}", f"known-request-{job}"
        story = [
            ("idle", "handled", 1, None),
            ("bench", "retried", 1, f"RuntimeError: bench refuses job {job}"),
            ("bench", "retried", 2, f"RuntimeError: bench refuses job {job}"),
            ("bench", "parked", 3, f"RuntimeError: bench refuses job {job}"),
        ]
        for step, (consumer, outcome, attempt, error) in enumerate(story):
            out.append(
                (
                    at + timedelta(seconds=5 * step),
                    prefix,
                    consumer,
                    outcome,
                    attempt,
                    key,
                    job,
                    request,
                    "TaskFinish.ImageOCR.Success",
                    error,
                    0.012,
                    at - timedelta(milliseconds=150),
                    "10.0.0.1",
                    "ingest-a",
                    None,
                )
            )
    return out


async def fill_history(
    dsn: str, prefix: str, rows: int, jobs: list[str], now: datetime
) -> dict[str, float]:
    """The table, ``rows`` rows and the known jobs' rows, its indexes, ANALYZE; seconds each."""
    create, *indexes = create_table_sql()
    connection = await asyncpg.connect(dsn)
    took: dict[str, float] = {}
    try:
        await connection.execute(create)
        started = time.perf_counter()
        await connection.execute(_fill_sql(), prefix, "other-deployment", now, rows)
        known = _known_rows(prefix, jobs, now)
        await connection.copy_records_to_table(TABLE, records=known, columns=list(COLUMNS))
        took["insert_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for statement in indexes:
            await connection.execute(statement)
        await connection.execute(f"ANALYZE {TABLE}")
        took["index_s"] = time.perf_counter() - started
        took["rows"] = await connection.fetchval(f"SELECT count(*) FROM {TABLE}")
        took["job_ids"] = await connection.fetchval(f"SELECT count(DISTINCT job_id) FROM {TABLE}")
        took["mb"] = await connection.fetchval("SELECT pg_total_relation_size($1)", TABLE) / 1e6
    finally:
        await connection.close()
    return took


# -- the parked messages ----------------------------------------------------------------------


def parked_messages(n: int, now: float) -> list[aio_pika.Message]:
    """``n`` events as the worker's runtime parks them (one event each, its parking headers)."""
    out = events(n, 0)
    for i, message in enumerate(out):
        job = _job_of(i)
        reason = REASONS[i % len(REASONS)].format(job=job)
        headers = parked_headers(Outcome("parked", 3, 3, reason=reason), PARKED_CONSUMER)
        headers[DEAD_AT] = int(now) - (n - i) * 7  # parked over the last hours, oldest first
        message.headers = {**(message.headers or {}), **headers}
    return out


def _job_of(i: int) -> str:
    """The job id of the ``i``-th event of :func:`bench.builtins_bench.events`."""
    return f"a3c193f288b2c11eeb60f39de{i:08d}"


async def declare_and_park(settings: Settings, messages: list[aio_pika.Message]) -> str:
    """The consumers' topology, and ``messages`` in ``bench``'s dead queue (confirmed)."""
    topology = Topology(settings.prefix, settings.quorum_initial_group_size)
    connection = await aio_pika.connect(settings.broker_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for name in console_consumers.NAMES:
            await topology.declare_consumer(
                channel, topology.consumer(name, settings.retry_delays), ["TaskFinish.#"]
            )
        await topology.declare_ingress(channel)
        dead = topology.consumer(PARKED_CONSUMER, ()).dead
        for start in range(0, len(messages), 500):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(m, routing_key=dead)
                    for m in messages[start : start + 500]
                )
            )
    finally:
        await connection.close()
    return dead


async def queue_order(settings: Settings, queue: str) -> list[str | None]:
    """The message ids of ``queue`` in the order it delivers them (nothing removed)."""
    topology = Topology(settings.prefix, settings.quorum_initial_group_size)
    connection = await aio_pika.connect(settings.broker_url)
    try:
        channel = await connection.channel()
        declared = await topology.declare_queue(channel, queue)
        ids: list[str | None] = []
        while (message := await declared.get(no_ack=False, fail=False)) is not None:
            ids.append(message.message_id)
        await channel.close()
        probe = await connection.channel()
        for _ in range(200):  # the hand-back, as Parking._settled waits for it
            if await topology.message_count(probe, queue) >= len(ids):
                break
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    return ids


async def message_count(settings: Settings, queue: str) -> int:
    topology = Topology(settings.prefix, settings.quorum_initial_group_size)
    connection = await aio_pika.connect(settings.broker_url)
    try:
        return await topology.message_count(await connection.channel(), queue)
    finally:
        await connection.close()


async def delete_topology(settings: Settings) -> None:
    """Every queue and exchange of the run's prefix."""
    topology = Topology(settings.prefix, settings.quorum_initial_group_size)
    queues = [topology.raw, topology.unparsed, topology.unrouted]
    for name in console_consumers.NAMES:
        consumer = topology.consumer(name, settings.retry_delays)
        queues += [consumer.main, consumer.dead, *(q for _, q in consumer.delays)]
    queues.append(control_stream(settings.prefix))
    connection = await aio_pika.connect(settings.broker_url)
    try:
        for queue in queues:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
        for exchange in (topology.events, topology.unrouted, ask_exchange(settings.prefix)):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()


# -- the console ------------------------------------------------------------------------------


async def log_in(session: aiohttp.ClientSession, base: str) -> None:
    """As a browser does: the form (its CSRF and the pre-login cookie), then the token."""
    async with session.get(f"{base}/login") as response:
        form = await response.text()
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', form)
    assert found is not None, "no CSRF token in the login form"
    data = {"csrf": found.group(1), "next": "/", "token": TOKEN}
    async with session.post(f"{base}/login", data=data, allow_redirects=False) as response:
        assert response.status == 303, f"login answered {response.status}"
    assert any(c.key == "cf_console" for c in session.cookie_jar), "no session cookie"


async def time_page(
    session: aiohttp.ClientSession, base: str, path: str, warmup: int, requests: int
) -> list[float]:
    async def one() -> float:
        started = time.perf_counter()
        async with session.get(base + path, allow_redirects=False) as response:
            body = await response.text()
        took = (time.perf_counter() - started) * 1000
        if response.status != 200 or 'name="token"' in body:
            raise RuntimeError(f"{path} answered {response.status}: {body[:300]}")
        return took

    for _ in range(warmup):
        await one()
    return [await one() for _ in range(requests)]


def pages(dead: str, message_id: str, job: str, traced: str, far: str) -> list[tuple[str, str]]:
    """The pages timed: each as an operator opens it (the console's window, 200 messages of a
    queue), then a job beyond it, looked for in a window asked for (``?window=1000``)."""
    return [
        ("overview", "/"),
        ("overview, live part", "/overview/live"),
        ("consumer", f"/consumers/{PARKED_CONSUMER}"),
        ("parked, all queues", "/parked"),
        ("parked queue (first 50)", f"/parked/{quote(dead)}"),
        ("parked queue, by job id", f"/parked/{quote(dead)}?job_id={job}"),
        ("parked message (#191)", f"/parked/{quote(dead)}/{quote(message_id)}"),
        ("trace, known job", f"/trace?q={traced}"),
        ("trace, unknown id", f"/trace?q={UNKNOWN}"),
        ("replay", "/replay"),
        (
            "parked queue, job at #490, ?window=1000",
            f"/parked/{quote(dead)}?job_id={far}&window=1000",
        ),
        ("trace, job at #490, ?window=1000", f"/trace?q={far}&window=1000"),
    ]


# -- the breakdown ----------------------------------------------------------------------------


async def _timed(call: Callable[[], Awaitable[object]], times: int) -> list[float]:
    out = []
    for _ in range(times):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def breakdown(
    service: ConsoleService, dead: str, dsn: str, traced: str, times: int
) -> dict[str, list[float]]:
    """The calls under the parked and trace pages, timed alone (ms)."""
    ops = service.ops
    assert ops is not None
    topology, parking = ops.topology, ops.parking
    names = list(ops.specs)
    gets: list[float] = []
    back: list[float] = []
    for _ in range(times):
        channel = await ops.connection.channel()
        declared = await topology.declare_queue(channel, dead)
        total = declared.declaration_result.message_count or 0
        started = time.perf_counter()
        for _ in range(500):
            await declared.get(no_ack=False, fail=False)
        gets.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await channel.close()
        probe = await ops.connection.channel()
        for _ in range(2000):  # 10 s at most
            if await topology.message_count(probe, dead) >= total:
                break
            await asyncio.sleep(0.005)
        await probe.close()
        back.append((time.perf_counter() - started) * 1000)
    return {
        "parking counts (3 queues)": await _timed(lambda: parking.counts(names), times),
        "status (one reading)": await _timed(lambda: ops.status({}), times),
        "500 x basic.get (unacked)": gets,
        "hand-back: close + counted again": back,
        "history lookup, known job": await _timed(
            lambda: _history_rows(dsn, service.settings.prefix, traced), times
        ),
        "history lookup, unknown id": await _timed(
            lambda: _history_rows(dsn, service.settings.prefix, UNKNOWN), times
        ),
    }


# -- the run ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench-console-{secrets.token_hex(3)}"
    database = f"cf_bench_console_{secrets.token_hex(4)}"
    server_dsn = args.pg_dsn
    dsn = f"{server_dsn.rpartition('/')[0]}/{database}"
    settings = Settings.load(
        amqp_url=args.amqp_url,
        prefix=prefix,
        consumers=console_consumers.TARGETS,
        entry_points=False,
        history_dsn=SecretStr(dsn),
        console_host="127.0.0.1",
        console_port=0,
        console_token=[SecretStr(f"{TOKEN_NAME}={TOKEN}")],
        log_level="warning",
    )
    configure_logging(settings)
    n = args.parked
    positions = [p for p in KNOWN_POSITIONS if p < n] + [n - 1]
    jobs = [_job_of(p) for p in positions]
    now = datetime.now(UTC)
    load_before = os.getloadavg()
    await _admin(server_dsn, f'CREATE DATABASE "{database}"')
    service: ConsoleService | None = None
    try:
        print(f"history: {args.rows:,} rows ...", file=sys.stderr)
        history = await fill_history(dsn, prefix, args.rows, jobs, now)
        print(f"  {history}", file=sys.stderr)
        print(f"parking {n:,} messages ...", file=sys.stderr)
        messages = parked_messages(n, now.timestamp())
        published = [m.message_id for m in messages]
        started = time.perf_counter()
        dead = await declare_and_park(settings, messages)
        park_s = time.perf_counter() - started
        before = await message_count(settings, dead)
        service = ConsoleService(settings, interval=args.interval)
        await service.start()
        base = f"http://127.0.0.1:{service.bound_port}"
        message_id = published[min(191, n - 1)]
        assert message_id is not None
        traced = jobs[1 % len(jobs)]  # parked at 150: in the window the pages read
        far = jobs[3 % len(jobs)]  # parked at 490: beyond it
        timings: list[Timing] = []
        jar = aiohttp.CookieJar(unsafe=True)  # cookies of 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            await log_in(session, base)
            for page, path in pages(dead, message_id, traced, traced, far):
                print(f"  {page}: {path}", file=sys.stderr)
                samples = await time_page(session, base, path, args.warmup, args.requests)
                timings.append(Timing(page, path, samples))
        parts = await breakdown(service, dead, dsn, traced, args.breakdown)
        await service.stop()
        service = None
        after = await message_count(settings, dead)
        order = await queue_order(settings, dead)
    finally:
        if service is not None:
            await service.stop()
        await delete_topology(settings)
        await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    moved = [i for i, (a, b) in enumerate(zip(published, order, strict=False)) if a != b]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores",
        "rows": history,
        "parked": n,
        "dead_queue": quote(dead),
        "park_s": park_s,
        "requests": args.requests,
        "warmup": args.warmup,
        "login": "console token (POST /login with the form's CSRF, then the session cookie)",
        "pages": [{**asdict(t), "p50": t.p50, "p95": t.p95, "max": t.max} for t in timings],
        "breakdown": parts,
        "count_before": before,
        "count_after": after,
        "read_after": len(order),
        "same_messages": sorted(map(str, order)) == sorted(map(str, published)),
        "order_kept": order == published,
        "positions_moved": len(moved),
        "last_position_moved": moved[-1] if moved else None,
        "load_average": [load_before, os.getloadavg()],
    }


def table(result: dict[str, Any]) -> str:
    dead = result["dead_queue"]
    lines = [
        f"| page ({result['parked']:,} parked, {result['rows']['rows']:,} history rows) "
        "| path | p50 ms | p95 ms | max ms | under 200 ms (p95) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for t in result["pages"]:
        ok = "yes" if t["p95"] < TARGET_MS else "**no**"
        lines.append(
            f"| {t['page']} | `{t['path'].replace(dead, '<dead>')}` "
            f"| {t['p50']:.1f} | {t['p95']:.1f} "
            f"| {t['max']:.1f} | {ok} |"
        )
    lines += [
        "",
        f"{result['requests']} requests a page one after the other after {result['warmup']} "
        f"of warm-up; login: {result['login']}.",
        "",
        "| call under the pages, alone | p50 ms | p95 ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    for name, samples in result["breakdown"].items():
        lines.append(
            f"| {name} | {statistics.median(samples):.1f} | {_percentile(samples, 0.95):.1f} "
            f"| {max(samples):.1f} |"
        )
    rows = result["rows"]
    if result["order_kept"]:
        order = "in the order published"
    else:
        order = (
            f"**not** in the order published: {result['positions_moved']:,} positions differ, "
            f"the last at position {result['last_position_moved']:,} (from 0)"
        )
    same = "every message published, none other" if result["same_messages"] else "**lost some**"
    load = ", ".join("/".join(f"{x:.1f}" for x in each) for each in result["load_average"])
    lines += [
        "",
        f"History: {rows['rows']:,} rows, {rows['job_ids']:,} job ids, {rows['mb']:,.0f} MB "
        f"with indexes (insert {rows['insert_s']:.0f} s, indexes {rows['index_s']:.0f} s). "
        f"Parked: {result['parked']:,} messages in {result['park_s']:.1f} s.",
        f"Dead queue: {result['count_before']:,} messages before the pages, "
        f"{result['count_after']:,} after; {result['read_after']:,} read back ({same}), "
        f"{order}.",
        f"Load average (1/5/15 min) at the start and the end: {load}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    pg_argument(parser)
    parser.add_argument("--rows", type=int, default=1_000_000, help="history rows")
    parser.add_argument("--parked", type=int, default=10_000, help="messages parked")
    parser.add_argument("--requests", type=int, default=50, help="timed requests a page")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests a page first")
    parser.add_argument(
        "--breakdown", type=int, default=20, help="times each call of the breakdown runs"
    )
    parser.add_argument(
        "--interval", type=float, default=5.0, help="the console sampler's seconds (command: 5)"
    )
    parser.add_argument("--json", action="store_true", help="write bench/results/console.json")
    args = parser.parse_args(argv)
    if args.parked < 1 or args.rows < 1:
        parser.error("--parked and --rows must be at least 1")
    return run_and_report(run(args), table, "console", write_json=args.json)


if __name__ == "__main__":
    raise SystemExit(main())
