"""`trace ID`: what happened to a job, from reception to where it is now
(:mod:`callback_fanout.tracing` finds it; this module prints it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from callback_fanout.commands import Subcommands
from callback_fanout.flags import add_settings_flags, with_settings
from shared.settings import Settings

if TYPE_CHECKING:
    from rich.console import RenderableType

    from callback_fanout.tracing import Trace

__all__ = ["add", "run_trace"]

_TEXT = """\
ID is a job id, a request id or an idempotency key. For every event it names, in time
order: received (time, request id, source address, token name: from the `archive`
consumer's table when one is configured, else from the delivery history), routed (its
routing key), every attempt of every consumer with its outcome, error and handler time
(the delivery history, --history-dsn), and where the event is now: handled, waiting in a
consumer's queue, retrying, or parked (the parking queues are read, a bounded window of
each, and the `parked show` command to look at it is given). Without a history it tells
what the archive and the parking queues know, and says what it cannot.

A table at a terminal; one JSON object per step and line when piped or with --json (notes
on stderr). Exit status: 0 found; 1 nothing found (or the broker cannot be reached and
nothing else knows the ID); 2 invalid settings."""


def add(sub: Subcommands) -> None:
    cmd = sub.add_parser(
        "trace",
        help="the whole story of a job: received, routed, each consumer's attempts, where it "
        "is now; exit 1 when nothing is found",
        description=_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("id", metavar="ID", help="a job id, request id or idempotency key")
    cmd.add_argument("--json", action="store_true", help="JSON lines even at a terminal")
    cmd.add_argument(
        "--window",
        type=int,
        default=500,
        metavar="N",
        help="messages read at most from each parking queue (default 500)",
    )
    add_settings_flags(cmd, "trace")
    cmd.set_defaults(handler=with_settings(_trace))


def _trace(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(run_trace(args, settings))


async def run_trace(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    """Trace ``args.id`` and print it to ``out``; 0 when found, 1 when not."""
    from callback_fanout.tracing import trace
    from shared.amqp import connect_once
    from shared.errors import FanoutError
    from shared.topology import Topology

    out = out or sys.stdout
    from callback_fanout.sources import archive_sources, consumer_routes

    consumers, archives = consumer_routes(settings), archive_sources(settings)
    topology = Topology(settings.prefix, settings.quorum_initial_group_size)
    notes: list[str] = []
    try:
        connection = await connect_once(settings, role="trace")
    except FanoutError as exc:
        connection = None
        notes.append(f"{exc}: the parking queues were not looked in")
    try:
        dsn = settings.history_dsn.get_secret_value() if settings.history_dsn else None
        found = await trace(
            args.id,
            prefix=settings.prefix,
            consumers=consumers,
            history_dsn=dsn,
            archives=archives,
            connection=connection,
            topology=topology,
            window=args.window,
            tracing_ui_url=settings.tracing_ui_url,
        )
    finally:
        if connection is not None:
            await connection.close()
    if connection is None:
        found.notes = [n for n in found.notes if "not looked in" not in n] + notes
    _print(found, out, as_json=args.json)
    return 0 if found.found else 1


def _print(found: Trace, out: TextIO, *, as_json: bool) -> None:
    from callback_fanout.tables import console_for, wants_json

    if wants_json(as_json, out):
        for step in found.steps():
            print(json.dumps(step, ensure_ascii=False), file=out)
        for note in found.notes:
            print(f"note: {note}", file=sys.stderr)
        if not found.found:
            print(f"nothing found for {found.id}", file=sys.stderr)
        return
    console = console_for(out)
    for part in trace_view(found):
        console.print(part)


def trace_view(found: Trace) -> list[RenderableType]:
    """The trace as a terminal shows it: a table per event, then the notes."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    if not found.found:
        parts.append(Text(f"nothing found for {found.id}", style="bold red"))
    for event in found.events:
        title = f"job {event.job_id or '-'} · key {event.idempotency_key or '-'}"
        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            padding=(0, 1, 0, 0),
            show_edge=False,
        )
        for header in ("time (UTC)", "step", "consumer", "try", "outcome", "detail"):
            table.add_column(header, justify="right" if header == "try" else "left")
        steps = event.steps()
        for step in steps:
            table.add_row(*_row(step), style=_STYLES.get(_outcome(step)))
        parts.append(table)
        parts.extend(Text(f"look: {s['look']}") for s in steps if s.get("look"))
    parts.extend(Text(f"note: {note}", style="dim") for note in found.notes)
    return parts


_STYLES = {"parked": "bold yellow", "retried": "yellow", "timed_out": "yellow", "handled": "green"}


def _outcome(step: dict[str, Any]) -> str:
    return str(step.get("outcome") or step.get("state") or "")


def _row(step: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    at = step.get("at")
    when = datetime.fromisoformat(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if at else ""
    kind = step["step"]
    if kind == "received":
        said = [
            f"request {step['request_id'] or '-'}",
            f"from {step['source_address'] or '-'}",
            f"token {step['token_name'] or '-'}",
            f"({step['from']})",
        ]
        return when, kind, "", "", "", " · ".join(said)
    if kind == "routed":
        return when, kind, "", "", "", str(step["routing_key"])
    if kind == "attempt":
        took = step["handler_seconds"]
        said = [f"{took * 1000:.3g} ms" if took is not None else ""]
        if step["error"]:
            said.append(str(step["error"]).splitlines()[0])
        detail = " · ".join(s for s in said if s)
        return when, kind, step["consumer"], str(step["attempt"]), step["outcome"], detail
    if kind == "traced":
        return when, kind, "", "", "", str(step["url"] or f"trace {step['trace_id']}")
    said = [step["queue"] or "", step["detail"] or ""]
    return when, "now", step["consumer"], "", step["state"], " · ".join(s for s in said if s)
