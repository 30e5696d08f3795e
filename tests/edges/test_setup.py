"""`make test` sets the machine up itself (.ci/setup, `make test-setup`): when everything is
there it changes nothing, quickly; what it cannot reach it names; `.ci/run` does no set-up of
its own beyond calling make. The tests run it with ``--check`` (it only looks)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / ".ci" / "setup"


def _setup(**env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SETUP), "--check"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - started


@pytest.mark.broker
def test_setup_where_everything_is_there_has_nothing_to_do_and_says_nothing() -> None:
    # `make test` ran it before the suite: everything is there now.
    done, seconds = _setup()
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")
    assert seconds < 15


def test_setup_names_a_remote_broker_that_does_not_answer_and_fails() -> None:
    done, _ = _setup(AMQP_URL="amqp://guest:guest@192.0.2.1:5672/")  # TEST-NET-1: nobody
    assert done.returncode == 1
    assert done.stderr == "test-setup: no broker answers at 192.0.2.1:5672 (AMQP_URL)\n"


def test_setup_says_what_it_would_start_for_a_local_server_that_does_not_answer() -> None:
    done, _ = _setup(AMQP_URL="amqp://guest:guest@127.0.0.1:1/")
    assert done.returncode == 1
    assert "test-setup: would start the local RabbitMQ (installed first if missing)\n" in (
        done.stderr
    )


def test_make_test_runs_the_setup_first_and_ci_does_nothing_else_but_make() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: venv test-setup ", makefile, re.M)
    assert re.search(r"^test-setup:.*\n\tbash \.ci/setup$", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line and not line.lstrip().startswith("#")]
    for word in ("apt-get", "sudo", "rabbitmq", "prometheus", "systemctl", "service"):
        assert not any(word in line for line in commands), word
    assert commands[-1] == 'make check VENV="$VENV"'
    setup = SETUP.read_text()
    assert '[ "$(id -u)" -eq 0 ] || sudo="sudo"' in setup  # sudo only when not root
    assert "stop_service prometheus" in setup  # never left running
