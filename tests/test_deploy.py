"""What can be checked of the Docker deployment without Docker: it parses, it is complete,
its commands and settings exist, and it holds no secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from callback_fanout.cli import _build_parser
from shared.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).parent.parent
APP_SERVICES = ("ingress", "router", "worker")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_runs_rabbitmq_a_balanced_ingress_pair_a_router_and_two_workers() -> None:
    services = compose()["services"]
    assert set(services) >= {"rabbitmq", "lb", *APP_SERVICES}
    assert services["ingress"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] == 2
    assert "management" in services["rabbitmq"]["image"]
    assert services["rabbitmq"]["volumes"]
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), name


def test_every_app_service_runs_an_existing_command_with_existing_settings() -> None:
    services = compose()["services"]
    parser = _build_parser()
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for name in APP_SERVICES:
        command = services[name]["command"]
        assert parser.parse_args(command).command == name
        for variable in services[name]["environment"]:
            assert variable in known, f"{name}: {variable} is not a setting"
    assert "CALLBACK_FANOUT_CONSUMERS" in services["worker"]["environment"]


def test_compose_holds_no_secret_and_no_guest_broker_user() -> None:
    url = compose()["services"]["router"]["environment"]["CALLBACK_FANOUT_AMQP_URL"]
    assert re.fullmatch(r"amqp://\$\{RABBITMQ_USER[^}]*\}:\$\{RABBITMQ_PASSWORD[^}]*\}@.+", url)
    broker_env = compose()["services"]["rabbitmq"]["environment"]
    assert broker_env["RABBITMQ_DEFAULT_USER"].startswith("${RABBITMQ_USER:?")  # required
    assert broker_env["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_PASSWORD:?")
    ingress = compose()["services"]["ingress"]
    assert ingress["environment"]["CALLBACK_FANOUT_TOKEN_FILE"].startswith("/run/secrets/")
    assert compose()["secrets"]["fanout_tokens"] == {"environment": "FANOUT_TOKENS"}


def test_the_image_runs_the_command_and_ships_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["callback-fanout"]' in dockerfile
    for package in ("shared", "ingress", "workers", "callback_fanout"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "USER " in dockerfile  # not root
