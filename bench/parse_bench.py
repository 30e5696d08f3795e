"""How many events per second ``parse_callback`` turns out, on one core.

Usage::

    python bench/parse_bench.py            # the OCR XML and DigitalWatermark JSON seeds
    python bench/parse_bench.py --all      # every seed payload
    python bench/parse_bench.py --repeat 30 --number 1000

Each body is parsed ``number`` times per round, for ``repeat`` rounds, in this one-thread
process pinned to one CPU (where the platform allows; ``--cpu`` picks it). It prints the
best round (the least disturbed by other work on the machine) and the median round, as
events per second.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import timeit
from pathlib import Path

import pydantic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.callbacks.parser import parse_callback  # noqa: E402 - after the path is set

SEEDS = ROOT / "workers" / "testing" / "seeds"
DEFAULT_BODIES = ("ocr.1.xml", "digital-watermark.1.json")


def _pin_to_one_core(cpu: int | None) -> str:
    """Pin the process to one CPU (by default the last one it may use)."""
    if not hasattr(os, "sched_setaffinity"):
        return "one thread, not pinned (no sched_setaffinity on this platform)"
    core = max(os.sched_getaffinity(0)) if cpu is None else cpu
    os.sched_setaffinity(0, {core})
    return f"one thread pinned to CPU {core}"


def measure(body: bytes, *, number: int, repeat: int) -> tuple[float, float, int]:
    """(best, median) events per second, and events per body."""
    events = len(parse_callback(body))
    for _ in range(min(number, 200)):  # warm up
        parse_callback(body)
    rounds = timeit.repeat(lambda: parse_callback(body), number=number, repeat=repeat)
    best = events * number / min(rounds)
    median = events * number / statistics.median(rounds)
    return best, median, events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every seed, not just the two")
    parser.add_argument("--number", type=int, default=500, help="parses per round")
    parser.add_argument("--repeat", type=int, default=15, help="rounds")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to run on")
    args = parser.parse_args(argv)
    names = (
        sorted(p.name for p in SEEDS.iterdir() if p.suffix in (".xml", ".json"))
        if args.all
        else list(DEFAULT_BODIES)
    )
    print(
        f"python {platform.python_version()}, pydantic {pydantic.VERSION}, "
        f"{platform.machine()}, {_pin_to_one_core(args.cpu)}"
    )
    print(f"{'body':28} {'events/s (best)':>16} {'events/s (median)':>18}")
    for name in names:
        best, median, events = measure(
            (SEEDS / name).read_bytes(), number=args.number, repeat=args.repeat
        )
        label = name if events == 1 else f"{name} ({events} events)"
        print(f"{label:28} {best:16,.0f} {median:18,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
