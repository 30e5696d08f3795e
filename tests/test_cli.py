"""The `callback-fanout` command: offline parsing, flags for every setting, clear start-up."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from callback_fanout.cli import _build_parser, main
from shared.settings import ENV_PREFIX, Settings
from tests.conftest import SEEDS

README = Path(__file__).parent.parent / "README.md"


def test_parse_prints_one_json_event_per_line_with_snake_case_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["parse", str(SEEDS / "ocr.1.xml"), str(SEEDS / "translation.1.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["routing_key"] for e in events] == [
        "TaskFinish.ImageOCR.Success",
        "TaskFinish.Translation.Success",
    ]
    assert events[0]["job_id"] == "a3c193f288b2c11eeb60f39de2f86f409"
    assert events[1]["repaired"] is True  # the vendor's trailing comma


def test_parse_reports_a_bad_file_on_stderr_prints_the_others_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"EventName": "TaskFinish", "JobsDetail": [}')
    status = main(["parse", str(bad), str(SEEDS / "ocr.1.xml"), str(tmp_path / "missing.xml")])
    captured = capsys.readouterr()
    assert status == 1
    assert len(captured.out.splitlines()) == 1
    assert f"{bad}: " in captured.err
    assert "missing.xml: cannot read" in captured.err


def test_every_setting_is_a_flag_of_every_role(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _build_parser()
    for role in ("run", "ingress", "router", "worker"):
        args = parser.parse_args([role, "--prefix", "p1", "--consumer", "a", "--consumer", "b"])
        assert args.prefix == "p1"
        assert args.consumers == ["a", "b"]
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = capsys.readouterr().out
    for name in Settings.model_fields:
        assert ENV_PREFIX + name.upper() in help_text


def test_the_readme_lists_every_setting_and_every_command() -> None:
    readme = README.read_text()
    for name in Settings.model_fields:
        assert f"`{ENV_PREFIX}{name.upper()}`" in readme, name
    for command in ("run", "ingress", "router", "worker", "parse", "parked", "status"):
        assert f"callback-fanout {command}" in readme, command


def test_an_invalid_setting_is_one_clear_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["worker", "--prefix", "bad prefix!"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("callback-fanout: invalid settings: prefix:")
    assert "\n" not in err


async def test_an_unreachable_broker_is_said_once_with_the_url_masked_and_retried() -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "callback_fanout", "router"),
        *("--amqp-url", "amqp://fanout:s3cret-pw@127.0.0.1:1/", "--prefix", "unreachable"),
        *("--log-level", "debug", "--log-json"),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert process.stderr is not None
    attempts: list[dict[str, str]] = []  # every "broker unreachable" line, in order
    printed = b""
    try:
        # Retrying is seen, not assumed: three more attempts logged (at debug) after the first.
        while len(attempts) < 4:
            line = await asyncio.wait_for(process.stderr.readline(), 20)
            assert line, "the router exited instead of retrying"
            printed += line
            entry = json.loads(line)
            if entry["event"] == "broker unreachable, retrying":
                attempts.append(entry)
        assert process.returncode is None  # still running after four failed attempts
    finally:
        process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stderr.read(), 20)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    for line in rest.splitlines():
        entry = json.loads(line)
        if entry["event"] == "broker unreachable, retrying":
            attempts.append(entry)
    said = [a for a in attempts if a["level"] != "debug"]
    assert len(said) == 1  # said once, at warning level; the retries only at debug
    assert attempts[0] is said[0]
    assert said[0]["level"] == "warning"
    assert said[0]["url"] == "amqp://fanout:***@127.0.0.1:1/"
    assert "rabbitmq-server" in said[0]["hint"]  # how to start one
    assert all(a["url"] == said[0]["url"] for a in attempts)
    assert b"Traceback" not in printed + rest
    assert b"s3cret-pw" not in printed + rest
