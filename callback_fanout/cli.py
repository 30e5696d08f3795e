"""The ``callback-fanout`` command.

Every setting of :class:`shared.settings.Settings` is a flag (``--max-body-bytes``), generated
from the settings object so the two never disagree; the environment supplies the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic.fields import FieldInfo

from shared.errors import ConfigError, FanoutError, ParseError
from shared.logs import configure_logging, get_logger
from shared.service import Service, run_until_stopped
from shared.settings import ENV_PREFIX, Settings

__all__ = ["main"]

log = get_logger("cli")

#: Flags that read better in the singular on the command line.
_SINGULAR = {"consumers": "consumer"}


def _flag(name: str) -> str:
    return "--" + _SINGULAR.get(name, name).replace("_", "-")


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (also environment variables)")
    for name, info in Settings.model_fields.items():
        _add_flag(group, name, info)


def _add_flag(group: argparse._ArgumentGroup, name: str, info: FieldInfo) -> None:
    env = ENV_PREFIX + name.upper()
    default = info.get_default(call_default_factory=True)
    shown = "***" if name == "amqp_url" else default
    help_text = f"{info.description} [env {env}; default {shown}]"
    origin = typing.get_origin(info.annotation)
    if info.annotation is bool:
        group.add_argument(
            _flag(name),
            dest=name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=help_text,
        )
    elif origin is list:
        group.add_argument(_flag(name), dest=name, action="append", default=None, help=help_text)
    else:
        group.add_argument(_flag(name), dest=name, default=None, help=help_text)


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    return Settings.load(**overrides)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callback-fanout",
        description="Receive Tencent CI / COS callbacks durably and fan them out to consumers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    roles = {
        "run": "the whole system in one process: ingress + router + consumer worker",
        "ingress": "the HTTP ingress alone (stateless; run several behind a load balancer)",
        "router": "a router alone (parse raw bodies, publish events; competing consumers)",
        "worker": "a consumer worker alone (runs the loaded consumers)",
    }
    for command, text in roles.items():
        _add_settings_flags(sub.add_parser(command, help=text, description=text))
    parse = sub.add_parser(
        "parse", help="parse callback files offline and print one JSON event per line"
    )
    parse.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parse.add_argument("--content-type", default=None, help="content type, if known")
    return parser


def _services(command: str, settings: Settings) -> list[Service]:
    from ingress.server import IngressService
    from workers.loader import load_consumers
    from workers.router import RouterService
    from workers.runtime import WorkerService

    def worker() -> Service:
        consumers = load_consumers(settings.consumers, use_entry_points=settings.entry_points)
        return WorkerService(settings, consumers)

    factories: dict[str, list[Callable[[], Service]]] = {
        "run": [worker, lambda: RouterService(settings), lambda: IngressService(settings)],
        "ingress": [lambda: IngressService(settings)],
        "router": [lambda: RouterService(settings)],
        "worker": [worker],
    }
    return [make() for make in factories[command]]


def _parse_files(files: Sequence[Path], content_type: str | None) -> int:
    from shared.parser import parse_callback

    status = 0
    for path in files:
        try:
            events = parse_callback(path.read_bytes(), content_type=content_type)
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
            status = 1
            continue
        except ParseError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            status = 1
            continue
        for event in events:
            print(json.dumps(event.model_dump(mode="json"), ensure_ascii=False))
    return status


def _run(command: str, settings: Settings) -> int:
    configure_logging(settings)
    services = _services(command, settings)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    runner(run_until_stopped(services, asyncio.Event()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "parse":
        return _parse_files(args.files, args.content_type)
    try:
        return _run(args.command, _settings_from(args))
    except FanoutError as exc:
        print(f"callback-fanout: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
