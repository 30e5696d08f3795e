"""The configuration file: every way it can be wrong is one line naming the key, exit 2;
settings precedence; secrets resolved and never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from callback_fanout.cli import main
from shared.configfile import ConfigFile
from shared.errors import ConfigError
from shared.settings import Settings
from tests.config.support import SinkOptions, TestSink
from workers.configured import configured_consumers
from workers.loader import consumers_of

SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cy1vbmx5"
SINK = """
[consumers.billing]
use = "test-sink"
routes = ["TaskFinish.*.Success", "WorkflowFinish.#"]
url = "https://billing.internal/ci-results"
secret = { env = "BILLING_WEBHOOK_SECRET" }
concurrency = 32
max_attempts = 8
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CALLBACK_FANOUT_") or name == "BILLING_WEBHOOK_SECRET":
            monkeypatch.delenv(name)


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fanout.toml"
    path.write_text(text)
    return path


def _worker_error(path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    """Start `worker` with the file: it must stop at once with exit 2 and one line."""
    assert main(["worker", "--config", str(path), "--no-entry-points", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.removeprefix("callback-fanout: ").rstrip("\n")


LITERAL = 'a secret cannot be written in the file: use { env = "NAME" } or { file = "path" }'
BAD_FILES = [
    (
        "[consumer.billing]\n",
        "consumer: unknown key (expected [settings], [history] or [consumers.<name>])",
    ),
    ("settings = 3\n", "settings: must be a table"),
    ("consumers = [1]\n", "consumers: must be a table of [consumers.<name>] tables"),
    ("[settings]\nprefixx = 'a'\n", "settings.prefixx: unknown setting"),
    (
        "[settings]\nprefix = 'has space'\n",
        "settings.prefix: prefix must be 1-64 characters of letters, digits, '_', '-', '.', "
        "starting with a letter or digit",
    ),
    ("[settings]\nport = 70000\n", "settings.port: Input should be less than or equal to 65535"),
    (
        "[settings]\nretry_delays = [1, -2]\n",
        "settings.retry_delays: retry delays must be positive seconds",
    ),
    (
        "[settings]\nconfig = 'other.toml'\n",
        "settings.config: the configuration file cannot name another one",
    ),
    ("[consumers.billing]\nroutes = ['#']\n", "consumers.billing.use: required"),
    (
        "[consumers.billing]\nuse = 'fwd'\nroutes = ['#']\n",
        "consumers.billing.use: unknown built-in 'fwd' "
        "(known: archive, archive-files, forward, log, test-sink)",
    ),
    ("[consumers.billing]\nuse = 'log'\n", "consumers.billing.routes: required"),
    (
        "[consumers.billing]\nuse = 'log'\nroutes = []\n",
        "consumers.billing.routes: List should have at least 1 item after validation, not 0",
    ),
    (
        "[consumers.billing]\nuse = 'log'\nroutes = ['TaskFinish.#', 'a..b']\n",
        "consumers.billing.routes[1]: 'a..b' is not an AMQP topic pattern (dot-separated words "
        "of letters, digits, '_' or '-', or '*' and '#')",
    ),
    (
        "[consumers.billing]\nuse = 'log'\nroutes = ['#']\nconcurrency = 0\n",
        "consumers.billing.concurrency: Input should be greater than 0",
    ),
    (
        "[consumers.billing]\nuse = 'log'\nroutes = ['#']\nretry_delays = [5, 0]\n",
        "consumers.billing.retry_delays[1]: Input should be greater than 0",
    ),
    (
        "[consumers.billing]\nuse = 'log'\nroutes = ['#']\ndedupe = 'yes'\n",
        "consumers.billing.dedupe: Input should be a valid boolean",
    ),
    (
        "[consumers.Billing]\nuse = 'log'\nroutes = ['#']\n",
        "consumers.Billing: name must be 1-63 characters of lowercase letters, digits, '_' or "
        "'-', starting with a letter or digit",
    ),
    (
        "[consumers.billing]\nuse = 'log'\nroutes = ['#']\ncolour = 'red'\n",
        "consumers.billing.colour: unknown key",
    ),
    (
        "[consumers.billing]\nuse = 'test-sink'\nroutes = ['#']\n"
        "secret = { env = 'SINK_SECRET' }\n",
        "consumers.billing.url: required",
    ),
    (
        "[consumers.billing]\nuse = 'test-sink'\nroutes = ['#']\nurl = 'ftp://x'\n"
        "secret = { env = 'SINK_SECRET' }\n",
        "consumers.billing.url: String should match pattern '^https?://'",
    ),
    (
        "[consumers.billing]\nuse = 'test-sink'\nroutes = ['#']\nurl = 'https://x'\n"
        "secret = { env = 'BILLING_WEBHOOK_SECRET' }\n",
        "consumers.billing.secret: environment variable BILLING_WEBHOOK_SECRET is not set",
    ),
    (
        "[consumers.billing]\nuse = 'test-sink'\nroutes = ['#']\nurl = 'https://x'\n"
        "secret = { file = 'secrets/billing' }\n",
        "consumers.billing.secret: file secrets/billing cannot be read: No such file or directory",
    ),
    (
        "[consumers.billing]\nuse = 'test-sink'\nroutes = ['#']\nurl = 'https://x'\n"
        "secret = { env = 'SINK_SECRET' }\n"
        "old_secrets = [{ file = 'old-secret' }, { env = 'OLD_BILLING_SECRET' }]\n",
        "consumers.billing.old_secrets[1]: environment variable OLD_BILLING_SECRET is not set",
    ),
    (
        "[consumers.billing]\nuse = 'test-sink'\nroutes = ['#']\nurl = 'https://x'\n"
        "secret = 'whsec_written_in_the_file'\n",
        f"consumers.billing.secret: {LITERAL}",
    ),
    (
        "[consumers.billing]\nuse = 'test-sink'\nroutes = ['#']\nurl = 'https://x'\n"
        "secret = { env = 'SINK_SECRET' }\nold_secrets = [{ env = 'SINK_SECRET' }, 'whsec_old']\n",
        f"consumers.billing.old_secrets[1]: {LITERAL}",
    ),
    ("[settings]\nredis_url = 'redis://:pw@cache/0'\n", f"settings.redis_url: {LITERAL}"),
    (
        "[settings]\ntokens = [{ env = 'SINK_SECRET' }, 'ci=tok']\n",
        f"settings.tokens[1]: {LITERAL}",
    ),
    (
        "[consumers.billing]\nuse = 'test-sink'\nroutes = ['#']\nurl = 'https://x'\n"
        "secret = { env = 3 }\n",
        "consumers.billing.secret: { env = ... } needs the name of an environment variable",
    ),
]


@pytest.mark.parametrize(
    ("text", "problem"), BAD_FILES, ids=[p.split(":")[0] for _, p in BAD_FILES]
)
def test_a_bad_file_stops_the_worker_with_one_line_naming_the_key(  # noqa: PLR0917
    text: str,
    problem: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sink_builtin: TestSink,
) -> None:
    monkeypatch.setenv("SINK_SECRET", "whsec_from_the_environment")
    (tmp_path / "old-secret").write_text("whsec_from_a_file\n")
    path = _file(tmp_path, text)
    line = _worker_error(path, capsys)
    assert line == f"config {path}: {problem}"
    assert "whsec_" not in line.removesuffix("with whsec_")
    assert "pw@cache" not in line
    assert sink_builtin.calls == []


def test_a_file_that_is_missing_or_not_toml_is_one_line_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    assert (
        _worker_error(missing, capsys)
        == f"config {missing}: cannot read: No such file or directory"
    )
    broken = _file(tmp_path, "[consumers.billing\nuse = 'log'\n")
    assert _worker_error(broken, capsys).startswith(f"config {broken}: not valid TOML: ")


def test_an_empty_secret_is_refused_and_the_other_secret_is_never_in_the_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sink_builtin: TestSink,
) -> None:
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET", "")
    path = _file(tmp_path, SINK)
    problem = "consumers.billing.secret: environment variable BILLING_WEBHOOK_SECRET is empty"
    assert _worker_error(path, capsys) == f"config {path}: {problem}"
    # a secret that does not validate: the key and the rule, never the value
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET", "not-a-whsec-secret-1234")
    line = _worker_error(path, capsys)
    assert line == f"config {path}: consumers.billing.secret: a secret starts with whsec_"
    assert "not-a-whsec-secret-1234" not in line


def test_two_consumers_with_one_name_name_both_origins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path, "[consumers.log]\nuse = 'log'\nroutes = ['#']\n")
    line = _worker_error(path, capsys, "--consumer", "log")
    assert line == (
        f"two consumers are named 'log': config {path}: consumers.log and "
        "workers.builtin.log:log_consumer"
    )


def test_a_builtin_with_options_named_on_the_command_line_points_to_the_file(
    capsys: pytest.CaptureFixture[str], sink_builtin: TestSink
) -> None:
    assert main(["worker", "--consumer", "test-sink", "--no-entry-points"]) == 2
    assert capsys.readouterr().err == (
        "callback-fanout: consumer 'test-sink': the built-in 'test-sink' needs options; "
        'declare it in the configuration file: [consumers.<name>] use = "test-sink"\n'
    )


def test_the_file_declares_consumers_from_builtins_with_their_policy_and_resolved_secrets(
    tmp_path: Path, sink_builtin: TestSink
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "old").write_text("whsec_b2xkLXNlY3JldA==\n")
    path = _file(
        tmp_path,
        SINK
        + "old_secrets = [{ file = 'secrets/old' }]\nheaders = { X-Team = 'billing' }\n"
        + "retry_delays = [1, 10]\ntimeout = 2.5\ndedupe = true\ndedupe_window = 60\n"
        + "\n[consumers.audit]\nuse = 'log'\nroutes = ['TaskFinish.*.Failed']\n",
    )
    settings = Settings.load(config=path)
    billing, audit = consumers_of(settings, {"BILLING_WEBHOOK_SECRET": SECRET})
    assert billing.spec.name == "billing"
    assert billing.spec.routes == ("TaskFinish.*.Success", "WorkflowFinish.#")
    assert (billing.spec.concurrency, billing.spec.max_attempts) == (32, 8)
    assert (billing.spec.retry_delays, billing.spec.timeout) == ((1.0, 10.0), 2.5)
    assert (billing.spec.dedupe, billing.spec.dedupe_window) == (True, 60.0)
    assert billing.origin == f"config {path}: consumers.billing"
    assert (audit.spec.name, audit.spec.routes, audit.spec.max_attempts) == (
        "audit",
        ("TaskFinish.*.Failed",),
        None,  # the settings' default applies
    )


async def test_the_builtin_gets_the_secret_values_and_its_other_options(
    tmp_path: Path, sink_builtin: TestSink
) -> None:
    (tmp_path / "old").write_text("whsec_b2xkLXNlY3JldA==\n")
    path = _file(tmp_path, SINK + "old_secrets = [{ file = 'old' }]\n")
    [billing] = configured_consumers(ConfigFile.read(path), {"BILLING_WEBHOOK_SECRET": SECRET})
    from workers.testing import make_event

    await billing.handle(make_event())
    [(name, options, _)] = sink_builtin.calls
    assert name == "billing"
    assert isinstance(options, SinkOptions)
    assert options.secret.get_secret_value() == SECRET
    assert [s.get_secret_value() for s in options.old_secrets] == ["whsec_b2xkLXNlY3JldA=="]
    assert options.url == "https://billing.internal/ci-results"
    assert SECRET not in repr(options)
    assert SECRET not in repr(billing)


def test_secrets_are_masked_in_the_log_line_of_each_configured_consumer(
    tmp_path: Path, sink_builtin: TestSink
) -> None:
    path = _file(tmp_path, SINK)
    with structlog.testing.capture_logs() as logs:
        consumers_of(Settings.load(config=path), {"BILLING_WEBHOOK_SECRET": SECRET})
    [line] = [entry for entry in logs if entry["event"] == "consumer configured"]
    assert line["consumer"] == "billing"
    assert line["use"] == "test-sink"
    assert line["options"]["secret"] == "**********"
    assert line["options"]["url"] == "https://billing.internal/ci-results"
    assert SECRET not in repr(logs)


def test_settings_come_from_flags_then_environment_then_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(
        tmp_path,
        "[settings]\nprefix = 'from-file'\nmax_attempts = 7\nconcurrency = 3\n"
        "retry_delays = [2, 4]\nredis_url = { env = 'REDIS_SECRET_URL' }\n",
    )
    monkeypatch.setenv("CALLBACK_FANOUT_CONFIG", str(path))
    monkeypatch.setenv("CALLBACK_FANOUT_MAX_ATTEMPTS", "9")
    monkeypatch.setenv("CALLBACK_FANOUT_CONCURRENCY", "4")
    monkeypatch.setenv("REDIS_SECRET_URL", "redis://:r3dis-pw@cache:6379/0")
    settings = Settings.load(concurrency="5")
    assert settings.config == path  # from the environment
    assert settings.concurrency == 5  # flag over environment over file
    assert settings.max_attempts == 9  # environment over file
    assert settings.prefix == "from-file"  # file over default
    assert settings.retry_delays == [2.0, 4.0]
    assert settings.handler_timeout == 60.0  # default
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://:r3dis-pw@cache:6379/0"
    assert "r3dis-pw" not in repr(settings)
    # a setting the environment sets is not even read from the file: its bad value is no error
    bad = _file(tmp_path, "[settings]\nprefix = 'bad prefix'\n")
    monkeypatch.setenv("CALLBACK_FANOUT_CONFIG", str(bad))
    monkeypatch.setenv("CALLBACK_FANOUT_PREFIX", "from-env")
    assert Settings.load().prefix == "from-env"
    monkeypatch.delenv("CALLBACK_FANOUT_PREFIX")
    with pytest.raises(ConfigError, match=r"settings\.prefix: prefix must be"):
        Settings.load()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACK_FANOUT_")}
    return subprocess.run(
        [sys.executable, "-m", "callback_fanout", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_stops_with_one_line_when_a_secret_is_missing(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "[consumers.audit]\nuse = 'log'\nroutes = ['#']\n"
        "[settings]\nredis_url = { env = 'REDIS_SECRET_URL' }\n",
    )
    done = _cli("worker", "--no-entry-points", env={"CALLBACK_FANOUT_CONFIG": str(path)})
    assert done.returncode == 2
    assert done.stderr == (
        f"callback-fanout: config {path}: settings.redis_url: environment variable "
        "REDIS_SECRET_URL is not set\n"
    )
    assert done.stdout == ""


def test_the_command_stops_with_one_line_on_a_bad_route(tmp_path: Path) -> None:
    path = _file(tmp_path, "[consumers.audit]\nuse = 'log'\nroutes = ['TaskFinish.**']\n")
    done = _cli("run", "--config", str(path), "--no-entry-points", env={})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"callback-fanout: config {path}: consumers.audit.routes[0]: 'TaskFinish.**' is not an "
        "AMQP topic pattern (dot-separated words of letters, digits, '_' or '-', or '*' and '#')"
    ]


def test_help_shows_the_config_flag_and_no_secret(tmp_path: Path) -> None:
    path = _file(tmp_path, SINK)
    done = _cli(
        "worker",
        "--help",
        env={
            "CALLBACK_FANOUT_CONFIG": str(path),
            "CALLBACK_FANOUT_AMQP_URL": "amqp://fanout:amqp-pw-9f8e@rabbit:5672/",
            "BILLING_WEBHOOK_SECRET": SECRET,
        },
    )
    assert done.returncode == 0
    assert "--config CONFIG" in done.stdout
    assert "CALLBACK_FANOUT_CONFIG" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    assert "amqp-pw-9f8e" not in done.stdout + done.stderr


def test_a_check_the_builtin_makes_when_it_is_built_is_one_line_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.builtin import log
    from workers.builtin.registry import BUILTINS, Builtin
    from workers.consumer import ConsumerSpec, LoadedConsumer

    def build(spec: ConsumerSpec, options: log.Options) -> LoadedConsumer:
        raise ValueError("concurrency above 16 needs a pool option")

    monkeypatch.setitem(BUILTINS, "picky", Builtin("picky", log.Options, build))
    path = _file(tmp_path, "[consumers.p]\nuse = 'picky'\nroutes = ['#']\n")
    line = _worker_error(path, capsys)
    assert line == f"config {path}: consumers.p: concurrency above 16 needs a pool option"
