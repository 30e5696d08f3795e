"""``make mutate``: mutation testing of the five modules whose decisions the fast tests pin.

Runs mutmut (configured in pyproject.toml, ``[tool.mutmut]``) one module at a time, then
prints each module's score: the share of its mutants that a fast test kills. The survivors
that change nothing a caller can see are listed, each with why, in
``tests/unit/EQUIVALENT_MUTANTS.md``; a survivor not listed there is a missing test, and a
listed one that is now killed is stale. Exits 1 when a module is under 90 % or a survivor is
not listed.

    python -m tests.unit.mutate [module ...]   # e.g. workers/runtime/acks.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = (
    "workers/runtime/handling.py",
    "workers/runtime/acks.py",
    "shared/wire/events.py",
    "workers/runtime/retry.py",
    "shared/wire/raw.py",
)
EQUIVALENTS = Path(__file__).with_name("EQUIVALENT_MUTANTS.md")
TARGET = 0.90
#: mutmut's exit codes of a mutant's test run: a test failed (or timed out), or none did.
_KILLED = {1, 3, 36, -24, 24, 152, 255}
_SURVIVED = {0, 5, 33}
_NAME = re.compile(r"`([\w.ǁ]+__mutmut_\d+)`")


def listed_equivalents() -> set[str]:
    return set(_NAME.findall(EQUIVALENTS.read_text())) if EQUIVALENTS.exists() else set()


def run(module: str, children: str) -> None:
    name = module.removesuffix(".py").replace("/", ".")
    subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", children, f"{name}.*"],
        cwd=ROOT,
        check=True,
    )


def results(module: str) -> dict[str, int | None]:
    meta = ROOT / "mutants" / f"{module}.meta"
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return codes


def main(argv: list[str]) -> int:
    modules = argv or list(MODULES)
    children = os.environ.get("MUTATE_CHILDREN", "1")
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)  # every score from scratch
    for module in modules:
        run(module, children)
    equivalent = listed_equivalents()
    failed = False
    print(f"\n{'module':<32} {'mutants':>7} {'killed':>7} {'equiv.':>7} {'score':>7}")
    for module in modules:
        codes = results(module)
        killed = sum(1 for code in codes.values() if code in _KILLED)
        survivors = sorted(k for k, code in codes.items() if code in _SURVIVED)
        unlisted = [s for s in survivors if s not in equivalent]
        stale = sorted(k for k, code in codes.items() if code in _KILLED and k in equivalent)
        score = killed / len(codes) if codes else 1.0
        same = len(survivors) - len(unlisted)
        print(f"{module:<32} {len(codes):>7} {killed:>7} {same:>7} {score:>7.1%}")
        for name in unlisted:
            print(f"    survived, not listed as equivalent: {name}")
        for name in stale:
            print(f"    listed as equivalent but killed (remove it): {name}")
        failed |= score < TARGET or bool(unlisted)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
