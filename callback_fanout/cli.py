"""The ``callback-fanout`` command.

Every setting of :class:`shared.settings.Settings` is a flag (``--max-body-bytes``), generated
from the settings object so the two never disagree; the environment supplies the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pydantic.fields import FieldInfo

from shared.errors import ConfigError, FanoutError, ParseError
from shared.gctuning import tune_collector
from shared.logs import configure_logging, get_logger
from shared.service import Service, run_until_stopped
from shared.settings import ENV_PREFIX, AutoBool, Settings

if TYPE_CHECKING:
    from callback_fanout.parking import ParkedMessage

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
    _add_status_command(sub)
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


_STATUS_TEXT = """\
One row per queue under the prefix: raw; each consumer queue with its delay queues
(retrying) and its dead queue (parked) folded in; unparsed; unrouted. Columns: ready and
unacknowledged messages, consumers attached, retrying, parked, in/out rates, and the
change of the ready count per second over --window seconds.

Exit status: 0 healthy; 1 when something is parked, a queue is missing, the raw queue
has no router or a consumer queue no consumer, a --url role is not ready, or the broker
cannot be reached; 2 for invalid settings.

Consumer queues come from the consumers the workers load (--consumer,
CALLBACK_FANOUT_CONSUMERS, the --config file, the entry points): AMQP cannot list
queues. When the RabbitMQ management API answers (--management-url; auto: the broker's
host, port 15672), every consumer queue under the prefix is shown, with unacknowledged
counts and in/out rates (published and acknowledged per second, as the management plugin
measures them). Without it, `unacked`, `in/s` and `out/s` show "-": an AMQP queue
declaration reports only ready messages and consumers.

A table at a terminal; one JSON document per line when piped or with --json."""


def _add_status_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "status",
        help="every queue under the prefix at a glance; exit 1 when something needs a look",
        description=_STATUS_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="JSON even at a terminal")
    status.add_argument(
        "--watch",
        nargs="?",
        type=_positive_seconds,
        const=5.0,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (default 5) until interrupted",
    )
    status.add_argument(
        "--window",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between the two readings rates come from (0: no rates; default 1)",
    )
    status.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="URL",
        help="a role's admin port (http://host:port) whose /readyz to include (repeatable)",
    )
    _add_settings_flags(status)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more: {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("seconds must be more than 0")
    return value


async def _status(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    from callback_fanout.management import management_for
    from callback_fanout.readiness import check_readiness, readyz_url
    from callback_fanout.status import ConsumerRef, collect
    from callback_fanout.tables import console_for, status_view, wants_json
    from shared.amqp import connect_once
    from shared.topology import Topology
    from workers.loader import consumers_of
    from workers.runtime.retry import RetryPolicy

    out = out or sys.stdout
    urls = [readyz_url(url) for url in args.url]
    refs = [
        ConsumerRef(c.spec.name, RetryPolicy.for_consumer(c.spec, settings).delays)
        for c in consumers_of(settings, os.environ)  # as the workers find them
    ]
    as_json = wants_json(args.json, out)
    console = console_for(out)
    connection = await connect_once(settings, role="status")
    last = 1
    try:
        while True:
            roles, status = await asyncio.gather(
                check_readiness(urls),
                collect(
                    connection,
                    Topology(settings.prefix, settings.quorum_initial_group_size),
                    refs,
                    management=management_for(settings),
                    window=args.window,
                ),
            )
            status = dataclasses.replace(status, roles=tuple(roles))
            last = status.exit_status
            if as_json:
                print(json.dumps(status.as_dict(), ensure_ascii=False), file=out, flush=True)
            else:
                if args.watch is not None:
                    console.clear()
                console.print(status_view(status))
            if args.watch is None:
                return last
            await asyncio.sleep(max(0.0, args.watch - args.window))
    except asyncio.CancelledError:  # Ctrl-C during --watch: the last verdict
        return last
    finally:
        await connection.close()


def _add_parked_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parked = sub.add_parser(
        "parked",
        help="operate the parking queues: list, show, replay, purge",
        description="QUEUE is `unparsed`, `unrouted`, a consumer name (its dead queue) "
        "or a full queue name.",
    )
    actions = parked.add_subparsers(dest="action", required=True, metavar="ACTION")
    texts = {
        "list": "message counts of every parking queue (a table at a terminal; "
        "`COUNT  QUEUE` lines when piped; JSON lines with --json)",
        "show": "print parked messages without removing them (a table at a terminal; "
        "JSON lines when piped or with --json)",
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
        if action in ("list", "show"):
            cmd.add_argument("--json", action="store_true", help="JSON lines even at a terminal")
        if action == "show":
            cmd.add_argument("--limit", type=int, default=20, help="at most this many")
            cmd.add_argument("--body", action="store_true", help="include the bodies")
        if action == "replay":
            cmd.add_argument("--dry-run", action="store_true", help="count, change nothing")
        if action == "purge":
            cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        _add_settings_flags(cmd)


async def _parked(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    from callback_fanout.parking import MessageFilter, Parking
    from shared.amqp import connect
    from shared.topology import Topology

    out = out or sys.stdout
    connection = await connect(settings, role="parked")
    try:
        parking = Parking(connection, Topology(settings.prefix, settings.quorum_initial_group_size))
        if args.action == "list":
            counts = await parking.counts(_consumer_names(settings))
            _print_counts(counts, out, as_json=args.json)
            return 0
        queue = parking.resolve(args.queue)
        where = MessageFilter(args.routing_key, args.job_id, args.reason)
        if args.action == "show":
            shown = await parking.show(queue, where, args.limit)
            _print_parked(queue, shown, out, as_json=args.json, with_body=args.body)
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


def _print_counts(counts: dict[str, int], out: TextIO, *, as_json: bool) -> None:
    from callback_fanout.tables import console_for, is_terminal, parked_counts_table

    if as_json:
        for queue, count in counts.items():
            print(json.dumps({"queue": queue, "parked": count}), file=out)
    elif is_terminal(out):
        console_for(out).print(parked_counts_table(counts))
    else:  # the format scripts have read since 0.1
        for queue, count in counts.items():
            print(f"{count:>10}  {queue}", file=out)


def _print_parked(
    queue: str, shown: Sequence[ParkedMessage], out: TextIO, *, as_json: bool, with_body: bool
) -> None:
    from callback_fanout.tables import console_for, parked_messages_table, wants_json

    if wants_json(as_json, out):
        for parked in shown:
            line = json.dumps(parked.as_dict(with_body=with_body), ensure_ascii=False)
            print(line, file=out)
        return
    console = console_for(out)
    console.print(parked_messages_table(queue, shown))
    if with_body:
        for parked in shown:
            console.rule(f"{parked.message.message_id or '(no message id)'}")
            console.print(parked.body_text(), markup=False)


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
    from shared.metrics import Metrics
    from workers.loader import consumers_of
    from workers.router.service import RouterService
    from workers.runtime.worker import WorkerService

    # One registry for the process: its admin port serves every role's metrics.
    metrics = Metrics() if settings.metrics else None

    def worker() -> Service:
        return WorkerService(settings, consumers_of(settings, os.environ), metrics)

    if command == "run" and settings.spool_dir is None:
        # One process holds everything: keep what the broker cannot take now on local disk.
        settings = settings.model_copy(update={"spool_dir": DEFAULT_RUN_SPOOL})
    factories: dict[str, list[Callable[[], Service]]] = {
        "run": [
            worker,
            lambda: RouterService(settings, metrics),
            lambda: IngressService(settings, metrics),
        ],
        "ingress": [lambda: IngressService(settings, metrics)],
        "router": [lambda: RouterService(settings, metrics)],
        "worker": [worker],
    }
    services = [make() for make in factories[command]]
    if settings.health_port is not None:
        from shared.health import HealthService

        roles = [
            s for s in services if isinstance(s, IngressService | RouterService | WorkerService)
        ]
        services.append(HealthService(settings.host, settings.health_port, roles, metrics))
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
        from callback_fanout.asyncapi import asyncapi_document

        document = asyncapi_document(settings)
    else:
        from shared.callbacks.schema import event_json_schema

        document = event_json_schema()
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def _run(command: str, settings: Settings) -> int:
    services = _services(command, settings)
    tune_collector()
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
        if args.command == "status":
            return asyncio.run(_status(args, settings))
        return _run(args.command, settings)
    except FanoutError as exc:
        print(f"callback-fanout: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
