"""What can be checked of the Docker deployment without Docker: it parses, it is complete,
its commands and settings exist, and it holds no secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from callback_fanout.cli import _build_parser
from shared.settings import ENV_PREFIX, Settings
from tests.support.metric_contract import CONTRACT, registered, sample_names
from tests.support.promql import (
    DATASOURCES,
    PROMETHEUS_CONFIG,
    alert_rules,
    dashboard,
    dashboard_expressions,
    metric_names,
)

ROOT = Path(__file__).parent.parent
APP_SERVICES = ("ingress", "router", "worker", "console")
#: The ingress replicas: a compose service each, so that each has a spool volume of its own.
INGRESS_SERVICES = ("ingress", "ingress-2")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_runs_rabbitmq_a_balanced_ingress_pair_a_router_and_two_workers() -> None:
    services = compose()["services"]
    assert set(services) >= {"rabbitmq", "lb", *APP_SERVICES, "prometheus", "grafana"}
    assert [name for name in services if name.startswith("ingress")] == list(INGRESS_SERVICES)
    assert set(services["lb"]["depends_on"]) == set(INGRESS_SERVICES)
    assert services["worker"]["deploy"]["replicas"] == 2
    assert "management" in services["rabbitmq"]["image"]
    assert services["rabbitmq"]["volumes"]
    for name, service in services.items():
        if name == "declare":  # runs once, before the router
            assert service["restart"] == "no"
            assert service["healthcheck"] == {"disable": True}
            continue
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
            if variable.startswith("OTEL_"):  # OpenTelemetry's own (docs/tracing.md)
                continue
            assert variable in known, f"{name}: {variable} is not a setting"
    assert "CALLBACK_FANOUT_CONSUMERS" in services["worker"]["environment"]


def test_the_router_starts_once_declare_bound_the_workers_consumers_queues() -> None:
    services = compose()["services"]
    declare = services["declare"]
    assert _build_parser().parse_args(declare["command"]).command == "declare"
    worker_env, declare_env = services["worker"]["environment"], declare["environment"]
    for variable in (
        "CALLBACK_FANOUT_CONSUMERS",
        "CALLBACK_FANOUT_PREFIX",
        "CALLBACK_FANOUT_CONFIG",
    ):
        assert declare_env[variable] == worker_env[variable], variable  # the same consumers
    waits = services["router"]["depends_on"]
    assert waits["declare"] == {"condition": "service_completed_successfully"}
    assert waits["rabbitmq"] == {"condition": "service_healthy"}


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


def test_every_ingress_replica_spools_on_a_volume_of_its_own_behind_the_balancer() -> None:
    loaded = compose()
    services = loaded["services"]
    parser = _build_parser()
    volumes = []
    for name in INGRESS_SERVICES:
        service = services[name]
        assert parser.parse_args(service["command"]).command == "ingress", name
        assert "replicas" not in service.get("deploy", {}), name  # one container: one volume
        spool_dir = service["environment"]["CALLBACK_FANOUT_SPOOL_DIR"]
        assert spool_dir.startswith("/"), name
        mounted = {
            m[2]: m[1] for v in service["volumes"] if (m := re.fullmatch(r"(.+):(/[^:]*)(:ro)?", v))
        }
        assert mounted[spool_dir] in loaded["volumes"], name  # a named volume, kept
        volumes.append(mounted[spool_dir])
        assert service["environment"]["CALLBACK_FANOUT_TOKEN_FILE"].startswith("/run/secrets/")
        assert service["healthcheck"]["test"], name
    assert len(set(volumes)) == len(INGRESS_SERVICES)  # a volume of its own each
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.findall(r"server\s+(ingress[\w-]*):8080", nginx) == list(INGRESS_SERVICES)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-o fanout -g fanout /var/spool/callback-fanout" in dockerfile  # writable by the app


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


def _host(target: str) -> str:
    return target.rsplit(":", 1)[0]


def test_every_service_a_service_names_exists_and_every_image_is_pinned() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        if "build" not in service:
            image = service["image"]
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: {image} has no tag"
            assert not image.endswith(":latest"), f"{name}: {image} is not pinned"
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert set(re.findall(r"server\s+([a-z][\w-]*):\d+", nginx)) <= set(services)
    source = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    assert _host(urlsplit(source["url"]).netloc) == "prometheus"


def test_prometheus_scrapes_every_replica_admin_port_and_rabbitmq_queue_depths() -> None:
    services = compose()["services"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (console,) = jobs["callback-fanout-console"]["dns_sd_configs"]  # its own port
    assert (console["names"], console["port"]) == (["console"], 8088)
    for role in ("ingress", "router", "worker"):
        (discovery,) = jobs[f"callback-fanout-{role}"]["dns_sd_configs"]  # one A record a replica
        assert discovery["names"] == (list(INGRESS_SERVICES) if role == "ingress" else [role])
        assert discovery["type"] == "A"
        admin_port = services[role]["environment"]["CALLBACK_FANOUT_HEALTH_PORT"]
        assert discovery["port"] == int(admin_port), role
    nodes = [name for name, service in services.items() if service.get("hostname") == name]
    assert "rabbitmq" in nodes
    for job in ("rabbitmq", "rabbitmq-queues"):
        (discovery,) = jobs[job]["dns_sd_configs"]  # every node, those of the cluster profile too
        assert sorted(discovery["names"]) == sorted(nodes)
        assert (discovery["type"], discovery["port"]) == ("A", 15692)
    assert jobs["rabbitmq-queues"]["metrics_path"] == "/metrics/detailed"
    families = jobs["rabbitmq-queues"]["params"]["family"]
    assert families == ["queue_coarse_metrics", "queue_consumer_count"]
    assert config["rule_files"] == ["alerts.yml"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    plugins_file = "./deploy/rabbitmq/enabled_plugins"
    for node in nodes:
        assert f"{plugins_file}:/etc/rabbitmq/enabled_plugins:ro" in services[node]["volumes"]
    assert "rabbitmq_prometheus" in (ROOT / plugins_file).read_text()


def test_grafana_provisions_the_data_source_and_the_dashboard_uses_only_it() -> None:
    grafana = compose()["services"]["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro" in grafana["volumes"]
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    used = {"type": source["type"], "uid": source["uid"]}
    board = dashboard()
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == used, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == used, panel["title"]
    assert all(v["datasource"] == used for v in board["templating"]["list"])


def test_the_dashboard_and_the_alerts_read_only_metrics_the_code_exports() -> None:
    assert registered() == CONTRACT  # the names, as the code registers them
    exported = sample_names(registered())
    on_dashboard = metric_names(dashboard_expressions())
    in_alerts = metric_names([rule["expr"] for rule in alert_rules().values()])
    assert on_dashboard | in_alerts <= exported, sorted((on_dashboard | in_alerts) - exported)
    shown = {name for name in CONTRACT if sample_names({name: CONTRACT[name]}) & on_dashboard}
    assert shown == set(CONTRACT), f"not on the dashboard: {sorted(set(CONTRACT) - shown)}"


def test_every_role_exports_its_traces_to_the_tracing_backend_under_its_own_name() -> None:
    services = compose()["services"]
    assert services["jaeger"]["image"].startswith("jaegertracing/all-in-one:")
    names = set()
    for name in ("ingress", "ingress-2", "router", "worker"):
        environment = services[name]["environment"]
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318", name
        assert environment["OTEL_TRACES_SAMPLER"].startswith("parentbased_"), name
        names.add(environment["OTEL_SERVICE_NAME"])
    assert names == {
        "callback-fanout-ingress",
        "callback-fanout-router",
        "callback-fanout-worker",
    }
    assert "{trace_id}" in services["worker"]["environment"]["CALLBACK_FANOUT_TRACING_UI_URL"]


def test_the_console_is_published_on_loopback_behind_tokens_from_a_secret() -> None:
    console = compose()["services"]["console"]
    assert console["ports"] == ["127.0.0.1:8088:8088"]
    environment = console["environment"]
    secret = environment["CALLBACK_FANOUT_CONSOLE_TOKEN_FILE"]  # a Docker secret, a file
    assert secret == "/run/secrets/fanout_console_tokens"
    assert console["secrets"] == ["fanout_console_tokens"]
    assert compose()["secrets"]["fanout_console_tokens"] == {"environment": "FANOUT_CONSOLE_TOKENS"}
    urls = environment["CALLBACK_FANOUT_CONSOLE_ROLE_URLS"].split(",")
    assert urls == [f"http://{name}:8081" for name in ("ingress", "ingress-2", "router", "worker")]
