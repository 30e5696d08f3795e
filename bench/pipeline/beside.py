"""The parser measured beside the pipeline: same seed, same core, same minutes.

A child process parses the seed in a loop while a round runs (on the router's core when the
roles are pinned) and, when told to stop, prints its CPU microseconds per event. Its figure
is taken under the load the router works under (the broker and the worker busy on the same
two cores), where the parser measured on a quiet machine is not: the two ratios bound what
the router's own work costs.
"""

from __future__ import annotations

import subprocess
import sys

from bench.pipeline.common import ROOT, SEED
from bench.pipeline.procs import _env

__all__ = ["ParserBeside"]

_LOOP = """
import sys, time, select
from pathlib import Path
from shared.callbacks.parser import parse_callback
body = Path(sys.argv[1]).read_bytes()
per_body = len(parse_callback(body))
for _ in range(100):
    parse_callback(body)
print("ready", flush=True)
parsed = 0
start = time.process_time()
while not select.select([sys.stdin], [], [], 0)[0]:
    for _ in range(20):
        parse_callback(body)
    parsed += 20
print(1e6 * (time.process_time() - start) / max(1, parsed * per_body), flush=True)
"""


class ParserBeside:
    """``with ParserBeside(cpu) as beside: ...``; then ``beside.cpu_us``."""

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu
        self.cpu_us: float | None = None
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ParserBeside:
        argv = [sys.executable, "-c", _LOOP, str(SEED)]
        if self.cpu is not None:
            argv = ["taskset", "-c", str(self.cpu), *argv]
        self._proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # warmed up
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        assert proc is not None
        try:
            out, _ = proc.communicate("stop\n", timeout=30)
            self.cpu_us = float(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            proc.kill()
            proc.wait()
