"""Logs for people and for machines: `--log-json auto` looks at where stderr goes."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from callback_fanout.cli import _build_parser, _settings_from
from shared.errors import ConfigError
from shared.settings import Settings
from tests.support.terminal import COMMAND, clean_env, read_until, terminal_process

#: A router that cannot reach its broker says so at once, then keeps retrying.
ROUTER = ["router", "--amqp-url", "amqp://fanout:s3cret-pw@127.0.0.1:1/", "--prefix", "logs"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_warning_piped(*extra: str) -> str:
    process = subprocess.Popen(
        [*COMMAND, *ROUTER, *extra],
        env=clean_env(),  # no CALLBACK_FANOUT_* from outside: the default applies
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if "broker unreachable" in line:
                return line
        raise AssertionError("the router exited without saying the broker is unreachable")
    finally:
        process.terminate()
        process.wait(20)
        process.stderr.close()


def _first_warning_at_terminal(*extra: str) -> str:
    with terminal_process([*ROUTER, *extra]) as (_process, reader):
        shown = read_until(reader, "rabbitmq-server")  # the hint ends the line's fields
    [line] = [line for line in shown.splitlines() if "broker unreachable" in line]
    return line


def test_piped_stderr_gets_json_lines_by_default() -> None:
    record = json.loads(_first_warning_piped())
    assert record["event"] == "broker unreachable, retrying"
    assert record["level"] == "warning"
    assert record["url"] == "amqp://fanout:***@127.0.0.1:1/"
    assert record["component"] == "amqp"
    assert {"timestamp", "error", "hint"} <= set(record)


def test_a_terminal_gets_readable_coloured_lines_with_the_same_fields() -> None:
    line = _first_warning_at_terminal()
    assert ANSI.search(line), "not coloured"
    plain = ANSI.sub("", line)
    assert not plain.lstrip().startswith("{")
    assert "broker unreachable, retrying" in plain
    assert "warning" in plain
    assert "s3cret-pw" not in plain
    record = json.loads(_first_warning_piped())
    for field in set(record) - {"event", "level", "timestamp"}:
        assert f"{field}=" in plain, field
    assert "url=amqp://fanout:***@127.0.0.1:1/" in plain


def test_the_flags_still_force_either_format() -> None:
    assert json.loads(_first_warning_at_terminal("--log-json"))["level"] == "warning"
    plain = _first_warning_piped("--no-log-json")
    assert not ANSI.search(plain)  # readable, and no colour codes into a file
    assert plain.split()[1:3] == ["[warning", "]"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "auto"),
        (["--log-json"], True),
        (["--no-log-json"], False),
        (["--log-json", "auto"], "auto"),
        (["--log-json", "false"], False),
    ],
)
def test_log_json_takes_auto_true_or_false(argv: list[str], expected: object) -> None:
    args = _build_parser().parse_args(["router", *argv])
    assert _settings_from(args).log_json == expected


def test_a_bad_log_json_value_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="log_json must be auto, true or false"):
        Settings.load(log_json="sometimes")
