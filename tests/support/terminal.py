"""Running the command as an operator would: at a terminal (a pseudo-terminal), or piped."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "COMMAND",
    "Finished",
    "at_terminal",
    "clean_env",
    "piped",
    "read_until",
    "terminal_process",
]

COMMAND = (sys.executable, "-m", "callback_fanout")


@dataclass(frozen=True)
class Finished:
    status: int
    out: str
    err: str


def clean_env(extra: Mapping[str, str] = {}, columns: int = 120) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACK_FANOUT_")}
    env.pop("NO_COLOR", None)
    env.update({"COLUMNS": str(columns), "TERM": "xterm-256color", **extra})
    return env


def piped(argv: Sequence[str], env: Mapping[str, str] = {}, timeout: float = 60) -> Finished:
    """Run ``callback-fanout argv`` with stdout and stderr piped (what a script sees)."""
    done = subprocess.run(
        [*COMMAND, *argv],
        env=clean_env(env, 120),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Finished(done.returncode, done.stdout, done.stderr)


@contextlib.contextmanager
def terminal_process(
    argv: Sequence[str], env: Mapping[str, str] = {}, *, columns: int = 120
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``callback-fanout argv`` with stdout and stderr on a pseudo-terminal: (process, its
    terminal's reading end). The process is terminated on exit if still running."""
    reader, writer = pty.openpty()
    process = subprocess.Popen(
        [*COMMAND, *argv],
        env=clean_env(env, columns),
        stdin=subprocess.DEVNULL,
        stdout=writer,
        stderr=writer,
    )
    os.close(writer)
    try:
        yield process, reader
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(20)
        os.close(reader)


def read_until(reader: int, done: str | None, timeout: float = 30) -> str:
    """What the terminal shows until ``done`` appears (None: until the process closes it)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while done is None or done.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{done!r} not shown within {timeout}s; shown: {seen!r}")
        ready, _, _ = select.select([reader], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(reader, 65536)
        except OSError:  # EIO: every writer closed
            chunk = b""
        if not chunk:
            if done is None:
                break
            raise AssertionError(f"closed before {done!r} was shown; shown: {seen!r}")
        seen += chunk
    return seen.decode("utf-8", "replace").replace("\r\n", "\n")


def at_terminal(
    argv: Sequence[str], env: Mapping[str, str] = {}, timeout: float = 60, columns: int = 120
) -> Finished:
    """Run ``callback-fanout argv`` to its end at a terminal (what an operator sees)."""
    with terminal_process(argv, env, columns=columns) as (process, reader):
        shown = read_until(reader, None, timeout)
        status = process.wait(timeout)
    return Finished(status, shown, "")
