"""What holding a destination costs while it holds nothing: a worker's events/s with a no-op
consumer plain, with an idle breaker and rate limiter, and with the rate budget in Redis.

    python bench/holding_bench.py                  # 3 rounds of 3000 events each way
    python bench/holding_bench.py --events 2000 --rounds 2

Each round fills the no-op consumer's queue with distinct events (``bench/builtins_bench.py``'s
OCR seed under other job ids, as the router publishes them), then drains it with one worker
(the real runtime, in this process, on uvloop when installed), once per variant:

- ``plain``: no breaker, no rate limit;
- ``idle breaker + rate limit``: ``Breaker(failures=20, cool_down=30)`` that never opens
  (the handler never fails) and a per-process rate limit far above what a worker drains
  (1,000,000/s: it never waits), so what is measured is their bookkeeping per event;
- ``idle breaker + global rate limit``: the same with a Redis URL, the budget kept in Redis
  (one script call per event; it never waits either).

The variants alternate, and their order rotates round by round, so the neighbours' noise falls
on each alike; the median round is reported. Events/s is the wall clock from the first handled
event to the last; CPU per event is this process's (``/proc/self/stat``, user + system) from
the worker's start to its last event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import secrets
import statistics
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages live beside bench/
    sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from bench.builtins_bench import (  # noqa: E402
    Drain,
    _cpu_model,
    _process_cpu,
    delete_all,
    drain_parser,
    events,
    fill,
    run_and_report,
    spec_of,
)
from shared.callbacks import CallbackEvent  # noqa: E402
from shared.logs import configure_logging  # noqa: E402
from shared.settings import Settings  # noqa: E402
from workers.consumer import Breaker, LoadedConsumer  # noqa: E402
from workers.runtime.worker import WorkerService  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONCURRENCY = 64
NAME = "noop-holding"
VARIANTS = ("plain", "idle breaker + rate limit", "idle breaker + global rate limit")
NEVER_WAITS = 1_000_000.0  # events/s: far above a worker's drain


@dataclass(frozen=True)
class Round:
    rate: float
    cpu_us: float


def _noop(variant: str) -> LoadedConsumer:
    spec = spec_of(NAME, CONCURRENCY)
    if variant != "plain":
        spec = dataclasses.replace(spec, breaker=Breaker(20, 30.0), rate_limit=NEVER_WAITS)

    async def nothing(event: CallbackEvent) -> None:
        return None

    async def no_hook() -> None:
        return None

    return LoadedConsumer(spec, nothing, no_hook, no_hook, "noop")


async def drain(settings: Settings, variant: str, n: int, offset: int, redis: str) -> Round:
    """Fill the no-op consumer's queue with ``n`` events, drain it with one worker."""
    loaded = _noop(variant)
    await fill(settings, loaded.spec, events(n, offset))
    if variant.endswith("global rate limit"):
        settings = settings.model_copy(update={"redis_url": SecretStr(redis)})
    counter = Drain(n)
    worker = WorkerService(settings, [counter.counted(loaded)])
    cpu = _process_cpu(os.getpid())
    await worker.start()
    try:
        await worker.wait_started()
        await asyncio.wait_for(counter.done.wait(), timeout=600)
        cpu = _process_cpu(os.getpid()) - cpu
    finally:
        await worker.stop()
    return Round(counter.rate, cpu * 1e6 / n)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.load(
        amqp_url=args.amqp_url,
        prefix=f"bench-holding-{secrets.token_hex(3)}",
        retry_delays=[1.0],
        log_level="warning",
    )
    configure_logging(settings)
    rounds: dict[str, list[Round]] = {v: [] for v in VARIANTS}
    offset = 0
    try:
        for i in range(args.rounds):
            shift = i % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                done = await drain(settings, variant, args.events, offset, args.redis_url)
                offset += args.events
                rounds[variant].append(done)
                print(f"  {variant}: {done}", file=sys.stderr)
    finally:
        await delete_all(settings, [NAME])
        await _delete_control(settings)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores",
        "events_per_round": args.events,
        "rounds": {v: [asdict(r) for r in done] for v, done in rounds.items()},
    }


async def _delete_control(settings: Settings) -> None:
    import aio_pika

    from shared.control import ask_exchange, control_stream

    connection = await aio_pika.connect(settings.broker_url)
    channel = await connection.channel()
    with contextlib.suppress(aio_pika.exceptions.AMQPError):
        await channel.queue_delete(control_stream(settings.prefix))
    channel = await connection.channel()
    with contextlib.suppress(aio_pika.exceptions.AMQPError):
        await channel.exchange_delete(ask_exchange(settings.prefix))
    await connection.close()


def table(result: dict[str, Any]) -> str:
    lines = [
        "| worker, no-op consumer | events/s (median) | rounds | CPU µs/event (median) |",
        "|---|---:|---|---:|",
    ]
    medians: dict[str, float] = {}
    for variant, done in result["rounds"].items():
        rates = [r["rate"] for r in done]
        medians[variant] = statistics.median(rates)
        cpu = statistics.median(r["cpu_us"] for r in done)
        lines.append(
            f"| {variant} | {medians[variant]:,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} "
            f"| {cpu:,.1f} |"
        )
    plain = medians["plain"]
    lines.append("")
    for variant in VARIANTS[1:]:
        lines.append(f"{variant}: {medians[variant] / plain:.1%} of plain's events/s.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = drain_parser(__doc__, "holding", 3000)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args(argv)
    return run_and_report(run(args), table, "holding", write_json=args.json)


if __name__ == "__main__":
    raise SystemExit(main())
