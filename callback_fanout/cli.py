"""The ``callback-fanout`` command.

Every setting of :class:`shared.settings.Settings` is a flag (``--max-body-bytes``), generated
from the settings object so the two never disagree; the environment supplies the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic.fields import FieldInfo

from shared.errors import ConfigError, FanoutError, ParseError
from shared.logs import configure_logging, get_logger
from shared.service import Service, run_until_stopped
from shared.settings import ENV_PREFIX, AutoBool, Settings

__all__ = ["main"]

log = get_logger("cli")

#: Where `run` spools bodies while the broker is away, unless --spool-dir says otherwise.
DEFAULT_RUN_SPOOL = Path("spool")

#: Flags that read better in the singular on the command line.
_SINGULAR = {"consumers": "consumer", "tokens": "token"}


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
    if info.annotation == AutoBool:
        # --log-json (true), --log-json auto|true|false, --no-log-json (false)
        group.add_argument(
            _flag(name),
            dest=name,
            nargs="?",
            const="true",
            default=None,
            choices=("auto", "true", "false"),
            metavar="auto|true|false",
            help=help_text,
        )
        group.add_argument(
            "--no-" + _flag(name)[2:],
            dest=name,
            action="store_const",
            const="false",
            help=f"the same as {_flag(name)} false",
        )
    elif info.annotation is bool:
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
    _add_parked_commands(sub)
    parse = sub.add_parser(
        "parse", help="parse callback files offline and print one JSON event per line"
    )
    parse.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parse.add_argument("--content-type", default=None, help="content type, if known")
    schema_text = (
        "print the JSON Schema of the event (the message body consumers receive), or with "
        "--asyncapi an AsyncAPI 3.0 document of the events exchange"
    )
    schema = sub.add_parser("schema", help=schema_text, description=schema_text)
    schema.add_argument(
        "--asyncapi",
        action="store_true",
        help="the AsyncAPI 3.0 document of <prefix>.events: routing keys, headers, payload",
    )
    _add_settings_flags(schema)
    return parser


def _add_parked_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parked = sub.add_parser(
        "parked",
        help="operate the parking queues: list, show, replay, purge",
        description="QUEUE is `unparsed`, `unrouted`, a consumer name (its dead queue) "
        "or a full queue name.",
    )
    actions = parked.add_subparsers(dest="action", required=True, metavar="ACTION")
    texts = {
        "list": "message counts of every parking queue",
        "show": "print parked messages (JSON lines) without removing them",
        "replay": "send parked messages back (unparsed: to the router; unrouted: to the events "
        "exchange; dead: to the consumer's queue), attempts reset",
        "purge": "delete parked messages (asks for confirmation unless --yes)",
    }
    for action, text in texts.items():
        cmd = actions.add_parser(action, help=text, description=text)
        if action != "list":
            cmd.add_argument("queue", metavar="QUEUE")
            cmd.add_argument("--routing-key", help="only messages whose routing key matches")
            cmd.add_argument("--job-id", help="only events of this job")
            cmd.add_argument("--reason", help="only messages whose reason contains this text")
        if action == "show":
            cmd.add_argument("--limit", type=int, default=20, help="at most this many")
            cmd.add_argument("--body", action="store_true", help="include the bodies")
        if action == "replay":
            cmd.add_argument("--dry-run", action="store_true", help="count, change nothing")
        if action == "purge":
            cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        _add_settings_flags(cmd)


async def _parked(args: argparse.Namespace, settings: Settings) -> int:
    from shared.amqp import connect
    from shared.topology import Topology
    from workers.parking import MessageFilter, Parking

    connection = await connect(settings, role="parked")
    try:
        parking = Parking(connection, Topology(settings.prefix))
        if args.action == "list":
            names = _consumer_names(settings)
            for queue, count in (await parking.counts(names)).items():
                print(f"{count:>10}  {queue}")
            return 0
        queue = parking.resolve(args.queue)
        where = MessageFilter(args.routing_key, args.job_id, args.reason)
        if args.action == "show":
            for parked in await parking.show(queue, where, args.limit):
                print(json.dumps(parked.as_dict(with_body=args.body), ensure_ascii=False))
            return 0
        if args.action == "replay":
            count = await parking.replay(queue, where, dry_run=args.dry_run)
            print(f"{'would replay' if args.dry_run else 'replayed'} {count} from {queue}")
            return 0
        if not args.yes and not _confirmed(queue):
            print("purge cancelled", file=sys.stderr)
            return 1
        print(f"purged {await parking.purge(queue, where)} from {queue}")
        return 0
    finally:
        await connection.close()


def _confirmed(queue: str) -> bool:
    if not sys.stdin.isatty():
        print("refusing to purge without --yes (no terminal to ask)", file=sys.stderr)
        return False
    return input(f"type the queue name to purge it ({queue}): ").strip() == queue


def _consumer_names(settings: Settings) -> list[str]:
    from workers.loader import consumers_of

    return [c.spec.name for c in consumers_of(settings, os.environ)]


def _services(command: str, settings: Settings) -> list[Service]:
    from ingress.server import IngressService
    from workers.loader import consumers_of
    from workers.router import RouterService
    from workers.runtime import WorkerService

    def worker() -> Service:
        return WorkerService(settings, consumers_of(settings, os.environ))

    if command == "run" and settings.spool_dir is None:
        # One process holds everything: keep what the broker cannot take now on local disk.
        settings = settings.model_copy(update={"spool_dir": DEFAULT_RUN_SPOOL})
    factories: dict[str, list[Callable[[], Service]]] = {
        "run": [worker, lambda: RouterService(settings), lambda: IngressService(settings)],
        "ingress": [lambda: IngressService(settings)],
        "router": [lambda: RouterService(settings)],
        "worker": [worker],
    }
    services = [make() for make in factories[command]]
    if command in ("router", "worker") and settings.health_port is not None:
        from shared.health import HealthService

        roles = [s for s in services if isinstance(s, RouterService | WorkerService)]
        services.append(HealthService(settings.host, settings.health_port, roles))
    return services


def _parse_files(files: Sequence[Path], content_type: str | None) -> int:
    from shared.callbacks.parser import parse_callback

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


def _schema(settings: Settings, *, asyncapi: bool) -> int:
    if asyncapi:
        from workers.asyncapi import asyncapi_document

        document = asyncapi_document(settings)
    else:
        from shared.callbacks.schema import event_json_schema

        document = event_json_schema()
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def _run(command: str, settings: Settings) -> int:
    services = _services(command, settings)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    return runner(run_until_stopped(services, asyncio.Event()))


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "parse":
        return _parse_files(args.files, args.content_type)
    try:
        settings = _settings_from(args)
        configure_logging(settings)
        if args.command == "parked":
            return asyncio.run(_parked(args, settings))
        if args.command == "schema":
            return _schema(settings, asyncapi=args.asyncapi)
        return _run(args.command, settings)
    except FanoutError as exc:
        print(f"callback-fanout: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
