"""The command line."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.pipeline.common import DOCS_PLOT, RESULTS, ROOT, SECTIONS, SEED, machine
from bench.pipeline.report import plot, report
from bench.pipeline.runner import Bench


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
    parser.add_argument(
        "--section",
        action="append",
        choices=SECTIONS,
        help="run only this section (repeatable): " + ", ".join(SECTIONS),
    )
    parser.add_argument(
        "--roles-tree",
        type=Path,
        action="append",
        default=[],
        help="roles section: also run the router and worker of another checkout, interleaved",
    )
    parser.add_argument(
        "--pin-roles",
        action="store_true",
        help="roles section: the router alone on the last core, the worker and the load on "
        "the first, the parser measured on the router's core (the broker is not pinned)",
    )
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument(
        "--compare-tree",
        type=Path,
        help="also run the ingress of another checkout (a before/after in the same run; "
        "the http and pinned sections)",
    )
    parser.add_argument("--compare-label", help="the name of that row in the tables")
    parser.add_argument(
        "--metrics-rounds", type=int, help="rounds of the metrics section (default 6; 4 --quick)"
    )
    parser.add_argument(
        "--metrics-control",
        action="store_true",
        help="the metrics section as a control: both processes --no-metrics (the noise floor)",
    )
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
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
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
