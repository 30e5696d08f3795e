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
    urls = compose()["services"]["router"]["environment"]["CALLBACK_FANOUT_AMQP_URL"]
    for url in urls.split(","):
        assert re.fullmatch(r"amqp://\$\{RABBITMQ_USER[^}]*\}:\$\{RABBITMQ_PASSWORD[^}]*\}@.+", url)
    broker_env = compose()["services"]["rabbitmq"]["environment"]
    assert broker_env["RABBITMQ_DEFAULT_USER"].startswith("${RABBITMQ_USER:?")  # required
    assert broker_env["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_PASSWORD:?")
    ingress = compose()["services"]["ingress"]
    assert ingress["environment"]["CALLBACK_FANOUT_TOKEN_FILE"].startswith("/run/secrets/")
    assert compose()["secrets"]["fanout_tokens"] == {"environment": "FANOUT_TOKENS"}
    assert compose()["secrets"]["rabbitmq_cookie"] == {"environment": "RABBITMQ_COOKIE"}


NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")


def test_the_cluster_profile_adds_two_nodes_that_join_the_first_by_configuration() -> None:
    services = compose()["services"]
    assert "profiles" not in services["rabbitmq"]  # the default deployment keeps its node
    conf = (ROOT / "deploy" / "rabbitmq-cluster.conf").read_text()
    assert "cluster_formation.peer_discovery_backend = classic_config" in conf
    for node in NODES:
        service = services[node]
        assert service["hostname"] == node
        assert f"= rabbit@{node}\n" in conf
        assert service["secrets"] == ["rabbitmq_cookie"]  # one cookie, from a secret
        assert "/run/secrets/rabbitmq_cookie" in " ".join(service["entrypoint"])
        assert service["healthcheck"]["test"]
        assert "pause_minority" in service["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    volumes = [v.split(":")[0] for n in NODES for v in services[n]["volumes"] if "-data" in v]
    assert len(set(volumes)) == 3  # a volume of its own each
    for node in NODES[1:]:
        assert services[node]["profiles"] == ["cluster"]
        assert any(
            v.endswith(":/etc/rabbitmq/conf.d/20-cluster.conf:ro")
            for v in services[node]["volumes"]
        )


def test_every_role_is_given_the_three_nodes() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        urls = services[name]["environment"]["CALLBACK_FANOUT_AMQP_URL"]
        filled = urls.replace("${RABBITMQ_USER:?set RABBITMQ_USER}", "u").replace(
            "${RABBITMQ_PASSWORD:?set RABBITMQ_PASSWORD}", "p"
        )
        filled = filled.replace("${RABBITMQ_USER}", "u").replace("${RABBITMQ_PASSWORD}", "p")
        settings = Settings.load(amqp_url=filled)
        hosts = [url.split("@")[1].split(":")[0] for url in settings.broker_urls]
        assert hosts == list(NODES), name
        for node in NODES[1:]:  # waits for the extra nodes only when they are started
            assert services[name]["depends_on"][node] == {
                "condition": "service_healthy",
                "required": False,
            }


def test_the_image_runs_the_command_and_ships_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["callback-fanout"]' in dockerfile
    for package in ("shared", "ingress", "workers", "callback_fanout"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "USER " in dockerfile  # not root
