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
SETTINGS_PAGE = Path(__file__).parent.parent / "docs" / "settings.md"


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


def test_the_docs_list_every_setting_and_the_readme_every_command() -> None:
    page = SETTINGS_PAGE.read_text()
    for name in Settings.model_fields:
        assert f"`{ENV_PREFIX}{name.upper()}`" in page, name
    readme = README.read_text()
    for command in ("run", "ingress", "router", "worker", "parse", "parked", "status", "console"):
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


def test_several_broker_urls_come_from_a_repeated_flag_or_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = _build_parser()
    args = parser.parse_args(
        ["router", "--amqp-url", "amqp://u:p@n1:5672/", "--amqp-url", "amqp://u:p@n2:5673/"]
    )
    assert Settings.load(amqp_url=args.amqp_url).broker_urls == [
        "amqp://u:p@n1:5672/",
        "amqp://u:p@n2:5673/",
    ]
    monkeypatch.setenv("CALLBACK_FANOUT_AMQP_URL", "amqp://u:p1@n1/, amqp://u:p2@n2/")
    settings = Settings.load()
    assert settings.broker_urls == ["amqp://u:p1@n1/", "amqp://u:p2@n2/"]
    assert settings.masked_broker_url == "amqp://u:***@n1/,amqp://u:***@n2/"
    assert Settings.load(amqp_url="amqp://one@host/").broker_urls == ["amqp://one@host/"]


@pytest.mark.parametrize(
    ("urls", "problem"),
    [
        ("amqp://u:s3cret-pw@n1/,http://u:s3cret-pw@n2/", "starts with amqp:// or amqps://"),
        ("amqp://u:s3cret-pw@n1:99999/", "port is not a number"),
        ("amqp://u:s3cret-pw@/", "names a host"),
        (",", "at least one broker URL"),
    ],
)
def test_a_bad_broker_url_is_one_clear_line_without_its_password(
    capsys: pytest.CaptureFixture[str], urls: str, problem: str
) -> None:
    assert main(["router", "--amqp-url", urls]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("callback-fanout: invalid settings: amqp_url:")
    assert problem in err
    assert "s3cret-pw" not in err
    assert "\n" not in err


async def test_with_every_node_unreachable_it_says_so_once_naming_them_all_masked() -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "callback_fanout", "router", "--prefix", "unreachable"),
        *("--amqp-url", "amqp://fanout:first-pw@127.0.0.1:1/"),
        *("--amqp-url", "amqp://fanout:second-pw@127.0.0.1:2/", "--no-log-json"),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert process.stderr is not None
    try:
        line = b""
        while b"broker unreachable" not in line:
            line = await asyncio.wait_for(process.stderr.readline(), 20)
            assert line, "the router exited instead of retrying"
        text = line.decode()
        assert "amqp://fanout:***@127.0.0.1:1/" in text
        assert "amqp://fanout:***@127.0.0.1:2/" in text
        await asyncio.sleep(1.0)
        assert process.returncode is None
    finally:
        process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stderr.read(), 20)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    assert b"broker unreachable" not in rest  # said once
    assert b"first-pw" not in line + rest
    assert b"second-pw" not in line + rest
