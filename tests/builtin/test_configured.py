"""The built-ins declared in a configuration file: built by the configuration layer, with
their policy and options, secrets resolved and never shown."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from shared.configfile import ConfigFile
from shared.errors import ConfigError
from workers.builtin import archive, archive_files, forward
from workers.configured import build_configured

SECRET = "whsec_" + base64.b64encode(b"a key for the configured forward").decode()
OLD = "whsec_" + base64.b64encode(b"the key before the rotation, old").decode()
TOKEN = "Bearer static-token-for-billing"
PASSWORD = "database-password-in-a-file"

FILE = """
[consumers.billing]
use = "forward"
routes = ["TaskFinish.*.Success"]
url = "https://hooks:url-password-here@billing.internal/ci-results"
secret = [{ env = "BILLING_SECRET" }, { env = "BILLING_OLD_SECRET" }]
headers = { Authorization = "%s", X-Team = "billing" }
body = "raw"
concurrency = 32
max_attempts = 8

[consumers.store]
use = "archive"
routes = ["#"]
dsn = { file = "dsn.txt" }
table = "ci.results"
batch_size = 50

[consumers.files]
use = "archive-files"
routes = ["TaskFinish.#"]
directory = "%s"
"""


def write(tmp_path: Path, text: str) -> ConfigFile:
    path = tmp_path / "fanout.toml"
    path.write_text(text)
    return ConfigFile.read(path)


def test_the_three_built_ins_are_built_from_the_file_with_their_policy_and_options(
    tmp_path: Path,
) -> None:
    (tmp_path / "dsn.txt").write_text(f"postgresql://archiver:{PASSWORD}@db.internal/ci\n")
    config = write(tmp_path, FILE % (TOKEN, tmp_path / "archive"))
    environ = {"BILLING_SECRET": SECRET, "BILLING_OLD_SECRET": OLD}
    with capture_logs() as logs:
        built = {c.consumer.spec.name: c for c in build_configured(config, environ)}
        for configured in built.values():
            configured.announce()
    billing, store, files = built["billing"], built["store"], built["files"]
    assert (billing.use, store.use, files.use) == ("forward", "archive", "archive-files")
    assert billing.consumer.spec.concurrency == 32
    assert billing.consumer.spec.max_attempts == 8
    assert isinstance(billing.options, forward.Options)
    assert billing.options.secrets == [SECRET, OLD]
    assert billing.options.body == "raw"
    assert isinstance(store.options, archive.Options)
    assert store.options.dsn.get_secret_value().endswith(f"{PASSWORD}@db.internal/ci")
    assert store.options.table == "ci.results"
    assert store.consumer.spec.concurrency == 100  # two batches of 50, its default
    assert isinstance(files.options, archive_files.Options)
    assert files.options.directory == tmp_path / "archive"
    shown = repr(logs)
    assert "billing.internal" in shown
    assert "X-Team" in shown
    for secret in (SECRET, OLD, TOKEN, PASSWORD, "url-password-here"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("table", "line"),
    [
        (
            'use = "forward"\nroutes = ["#"]\nurl = "ftp://x/"',
            "consumers.bad.url: URL scheme should be 'http' or 'https'",
        ),
        (
            'use = "forward"\nroutes = ["#"]\nurl = "http://x/"\nsecret = { env = "NOT_WHSEC" }',
            "consumers.bad.secret: a webhook secret must start with 'whsec_'",
        ),
        (
            'use = "forward"\nroutes = ["#"]\nurl = "http://x/"\nbody = "xml"',
            "consumers.bad.body: Input should be 'event' or 'raw'",
        ),
        (
            'use = "archive"\nroutes = ["#"]\ndsn = { env = "DSN" }\ntable = "drop table"',
            "consumers.bad.table: table must be `name` or `schema.name`, each 1-63 lowercase "
            "letters, digits or '_', not starting with a digit",
        ),
        (
            'use = "archive"\nroutes = ["#"]\ndsn = "postgresql://u:p@h/d"',
            'consumers.bad.dsn: a secret cannot be written in the file: use { env = "NAME" } '
            'or { file = "path" }',
        ),
        (
            'use = "archive-files"\nroutes = ["#"]\ndirectory = "d"\ngzip = true',
            "consumers.bad.gzip: unknown key",
        ),
    ],
)
def test_a_bad_option_of_a_built_in_stops_with_one_line_naming_the_key(
    tmp_path: Path, table: str, line: str
) -> None:
    config = write(tmp_path, f"[consumers.bad]\n{table}\n")
    with pytest.raises(ConfigError) as raised:
        build_configured(config, {"NOT_WHSEC": "plain-secret", "DSN": "postgresql://h/d"})
    assert str(raised.value) == f"config {config.path}: {line}"
