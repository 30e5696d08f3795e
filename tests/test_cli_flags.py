"""Each command offers the settings it reads; the others' flags are accepted and ignored,
every environment variable still works, and `--version` says the installed version."""

from __future__ import annotations

import argparse
import re
from importlib.metadata import version

import pytest

from callback_fanout.cli import _build_parser, _settings_from, main
from callback_fanout.commands.roles import DEFAULT_RUN_SPOOL, services
from shared.settings import ENV_PREFIX, RUN_ROLES, Settings, read_by, settings_of

COMMANDS = ("run", "ingress", "router", "worker", "declare", "status", "parked", "schema", "replay")


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one setting's help on one line


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def offered(capsys: pytest.CaptureFixture[str], *argv: str) -> set[str]:
    """The environment variables of the settings a command's --help offers as flags."""
    return set(re.findall(r"\[env\s+(CALLBACK_FANOUT_\w+);", help_of(capsys, *argv)))


def env(*names: str) -> set[str]:
    return {ENV_PREFIX + name.upper() for name in names}


def test_parse_offers_no_setting_at_all(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, "parse")
    assert offered(capsys, "parse") == set()
    for flag in ("--amqp-url", "--prefix", "--max-body-bytes", "--port", "--consumer"):
        assert flag not in text


def test_ingress_offers_its_own_settings_and_no_router_or_worker_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_of(capsys, "ingress")
    assert "--max-body-bytes MAX_BODY_BYTES" in text
    shown = offered(capsys, "ingress")
    assert env("max_body_bytes", "port", "tokens", "spool_dir", "health_port") <= shown
    assert not env("router_prefetch", "consumers", "redis_url", "management_url") & shown
    # ...which it still accepts, and says so under the options
    assert "--consumer (CALLBACK_FANOUT_CONSUMERS)" in text


def test_run_offers_the_union_of_the_three_roles(capsys: pytest.CaptureFixture[str]) -> None:
    roles = [offered(capsys, role) for role in RUN_ROLES]
    assert offered(capsys, "run") == set.union(*roles)
    assert env("port", "router_prefetch", "consumers", "redis_url") <= offered(capsys, "run")
    assert not env("management_url") & offered(capsys, "run")


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_offers_exactly_the_settings_said_to_be_read_by_it(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    argv = ("parked", "list") if command == "parked" else (command,)
    assert offered(capsys, *argv) == env(*settings_of(command))


def test_the_operators_commands_offer_what_they_read(capsys: pytest.CaptureFixture[str]) -> None:
    status = offered(capsys, "status")
    assert env("amqp_url", "prefix", "consumers", "retry_delays", "management_url") <= status
    assert not env("port", "tokens", "router_prefetch", "redis_url") & status
    parked = offered(capsys, "parked", "show")
    assert env("amqp_url", "prefix", "consumers") <= parked
    assert not env("management_url", "port") & parked
    assert env("prefix", "event_format") <= offered(capsys, "schema")
    assert not env("port", "consumers") & offered(capsys, "schema")


def test_every_setting_is_read_by_a_known_command() -> None:
    parser = _build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    known = set(commands.choices) - {"run"}  # run reads what its three roles read
    for name in Settings.model_fields:
        assert read_by(name), name
        assert set(read_by(name)) <= known, name


def test_a_setting_a_command_does_not_offer_still_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLBACK_FANOUT_PORT", "9099")
    monkeypatch.setenv("CALLBACK_FANOUT_MANAGEMENT_URL", "off")
    settings = _settings_from(_build_parser().parse_args(["router"]))
    assert settings.port == 9099
    assert settings.management_url.get_secret_value() == "off"


def test_a_flag_only_another_command_reads_is_accepted_and_reaches_the_settings() -> None:
    args = _build_parser().parse_args(["status", "--port", "9100", "--no-log-bodies"])
    settings = _settings_from(args)
    assert (settings.port, settings.log_bodies) == (9100, False)


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"callback-fanout {version('callback-fanout')}\n"


def test_run_starts_worker_router_ingress_then_the_admin_port_over_all_three() -> None:
    settings = Settings.load(consumers=[], entry_points=False, health_port=0)
    started = services("run", settings)
    assert [s.name for s in started] == ["worker", "router", "ingress", "health"]
    assert [s.background for s in started] == [None] * 4  # nothing started yet
    [ingress] = [s for s in started if s.name == "ingress"]
    assert ingress.settings.spool_dir == DEFAULT_RUN_SPOOL  # type: ignore[attr-defined]
    alone = services("router", settings.model_copy(update={"health_port": None}))
    assert [s.name for s in alone] == ["router"]
