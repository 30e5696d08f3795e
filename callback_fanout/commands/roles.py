"""`run`, `ingress`, `router`, `worker`: the roles, alone or all in one process."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from callback_fanout.commands import Subcommands
from callback_fanout.flags import add_settings_flags, with_settings
from shared import otel
from shared.gctuning import tune_collector
from shared.service import Service, run_until_stopped
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.metrics import Metrics
    from shared.service import RoleService

__all__ = ["DEFAULT_RUN_SPOOL", "add", "services"]

#: Where `run` spools bodies while the broker is away, unless --spool-dir says otherwise.
DEFAULT_RUN_SPOOL = Path("spool")

_TEXTS = {
    "run": "the whole system in one process: ingress + router + consumer worker",
    "ingress": "the HTTP ingress alone (stateless; run several behind a load balancer)",
    "router": "a router alone (parse raw bodies, publish events; competing consumers)",
    "worker": "a consumer worker alone (runs the loaded consumers)",
}

#: The roles each command runs, in the order they start (they stop in reverse): in `run`
#: the consumers are ready before the router, and the router before callbacks come in; the
#: router consumes the raw queue only once the worker has bound its consumers' queues.
_ROLES = {
    "run": ("worker", "router", "ingress"),
    "ingress": ("ingress",),
    "router": ("router",),
    "worker": ("worker",),
}


def add(sub: Subcommands) -> None:
    for command, text in _TEXTS.items():
        parser = sub.add_parser(command, help=text, description=text)
        add_settings_flags(parser, command)
        parser.set_defaults(handler=with_settings(_run))


def _build(
    role: str, settings: Settings, metrics: Metrics | None, *, before: RoleService | None
) -> RoleService:
    """One role; ``before`` is the role started just before it in this process (`run`)."""
    if role == "ingress":
        from ingress.server import IngressService

        return IngressService(settings, metrics)
    if role == "router":
        from workers.router.service import RouterService

        # In `run`, route only once the worker's consumer queues are declared and bound.
        after = before.wait_started if before is not None and before.name == "worker" else None
        return RouterService(settings, metrics, routes_after=after)
    from workers.loader import consumers_of
    from workers.runtime.worker import WorkerService

    return WorkerService(settings, consumers_of(settings, os.environ), metrics)


def services(command: str, settings: Settings) -> list[Service]:
    """The services ``command`` runs, in the order they start: its roles, then their admin
    port (with --health-port)."""
    from shared.metrics import Metrics

    # One registry for the process: its admin port serves every role's metrics.
    metrics = Metrics() if settings.metrics else None
    if command == "run" and settings.spool_dir is None:
        # One process holds everything: keep what the broker cannot take now on local disk.
        settings = settings.model_copy(update={"spool_dir": DEFAULT_RUN_SPOOL})
    roles: list[RoleService] = []
    for role in _ROLES[command]:
        roles.append(_build(role, settings, metrics, before=roles[-1] if roles else None))
    if settings.health_port is None:
        return list(roles)
    from shared.health import HealthService

    return [*roles, HealthService(settings.host, settings.health_port, roles, metrics)]


def _run(args: argparse.Namespace, settings: Settings) -> int:
    otel.configure()  # traces when the OTEL_* variables ask for them (shared.otel)
    started = services(args.command, settings)
    tune_collector()
    runner: Callable[..., int]
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    return runner(run_until_stopped(started, asyncio.Event()))
