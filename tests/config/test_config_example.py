"""The configuration example that compose.yaml mounts is valid, and mounted where it is read."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from shared.settings import Settings
from workers.loader import consumers_of

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "deploy" / "fanout.example.toml"


def test_compose_mounts_the_example_where_every_app_service_reads_its_config() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name in ("ingress", "ingress-2", "router", "worker"):
        target = services[name]["environment"]["CALLBACK_FANOUT_CONFIG"]
        # source:target:mode (the source holds a colon of its own); a named volume has no mode
        mounts = [v.rsplit(":", 2) for v in services[name]["volumes"]]
        [(source, mode)] = [(m[0], m[2]) for m in mounts if len(m) == 3 and m[1] == target]
        default = re.fullmatch(r"\$\{FANOUT_CONFIG:-(.+)\}", source)
        assert default is not None, source
        assert (ROOT / default.group(1)).resolve() == EXAMPLE.resolve()
        assert mode == "ro"


def test_the_example_loads_its_settings_and_consumers_next_to_the_compose_defaults() -> None:
    settings = Settings.load(config=EXAMPLE, consumers=["log"], entry_points=False)
    assert settings.shutdown_grace == 30.0
    consumers = consumers_of(settings, {})
    assert sorted(c.spec.name for c in consumers) == ["failures", "log"]
    [failures] = [c for c in consumers if c.spec.name == "failures"]
    assert failures.spec.routes == ("TaskFinish.*.Failed", "WorkflowFinish.*.Failed")
    assert failures.spec.concurrency == 4


def test_the_examples_commented_out_are_valid_toml_with_secrets_from_files() -> None:
    lines = EXAMPLE.read_text().splitlines()
    uncommented = "\n".join(
        line.removeprefix("# ") for line in lines if re.match(r"# (\[consumers\.|\w+ = )", line)
    )
    consumers = tomllib.loads(uncommented)["consumers"]
    assert {"billing", "archive"} <= set(consumers)
    assert consumers["billing"]["secret"] == {"file": "/run/secrets/billing_webhook_secret"}
    assert consumers["archive"]["dsn"] == {"file": "/run/secrets/archive_dsn"}
