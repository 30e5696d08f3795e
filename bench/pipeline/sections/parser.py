"""The parser alone on one core (bench/parse_bench.py)."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

from bench.pipeline.common import ROOT
from bench.pipeline.procs import _env

if TYPE_CHECKING:
    from bench.pipeline.runner import Bench


def run_parser(bench: Bench) -> None:
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
    bench.results["parser"] = out.stdout.strip().splitlines() if out.returncode == 0 else []
