"""`replay --consumer NAME --since T`: re-deliver archived events to one consumer
(``callback_fanout.replaying``), with a dry run, a confirmation and a progress bar."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from callback_fanout.commands import Subcommands
from callback_fanout.flags import add_settings_flags, with_settings
from callback_fanout.pacing import rate_flag
from callback_fanout.when import parse_time
from shared.settings import ENV_PREFIX, Settings

if TYPE_CHECKING:
    from rich.table import Table

    from callback_fanout.archived import ArchiveTable
    from callback_fanout.replaying import ReplayPlan, ReplayProgress

__all__ = ["add", "parse_time", "run_replay"]

#: The archive DSN when no configuration file names one (a secret: not shown in --help).
ARCHIVE_DSN_ENV = f"{ENV_PREFIX}ARCHIVE_DSN"

_TEXT = (
    "re-deliver archived events (the `archive` built-in's table) received in a time window to "
    "one consumer's queue, no other consumer's; each carries x-replay and the consumer's "
    "dedupe lets it through. Run again after an interrupt, it sends only what it had not "
    "sent (a checkpoint file per command as written; --restart forgets it)."
)


def add(sub: Subcommands) -> None:
    # `--consumer` here is the consumer's name, not the worker's consumers setting.
    cmd = sub.add_parser(
        "replay",
        help="re-deliver archived events to one consumer",
        description=_TEXT,
        conflict_handler="resolve",
    )
    add_settings_flags(cmd, "replay")
    cmd.epilog = (
        "Settings only other commands read are accepted and ignored (their flags: "
        "`callback-fanout run --help`); --consumer here names the consumer to replay to."
    )
    what = cmd.add_argument_group("what to replay")
    what.add_argument(
        "--consumer", dest="consumer_name", required=True, metavar="NAME", help="the consumer"
    )
    what.add_argument(
        "--since",
        required=True,
        metavar="T",
        help="received at or after T: ISO 8601 (`2026-12-05T10:00`, `2026-12-05 10:00+08:00`; "
        "without an offset: UTC) or that long ago (`90m`, `2h`, `1d`)",
    )
    what.add_argument("--until", metavar="T", help="received before T (default: now)")
    what.add_argument("--routing-key", metavar="PATTERN", help="only events whose key matches")
    what.add_argument("--job-id", metavar="ID", help="only events of this job")
    how = cmd.add_argument_group("how")
    how.add_argument(
        "--rate",
        type=rate_flag,
        metavar="N",
        help="at most N events a second (default: as fast as the broker confirms)",
    )
    how.add_argument(
        "--dry-run", action="store_true", help="print the count and the first events, send none"
    )
    how.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    how.add_argument(
        "--restart",
        action="store_true",
        help="forget this command's checkpoint: send the whole window again",
    )
    how.add_argument(
        "--checkpoints",
        type=Path,
        metavar="DIR",
        help="where checkpoints are kept (default: $XDG_STATE_HOME/callback-fanout/replay, "
        "else ~/.local/state/callback-fanout/replay)",
    )
    source = cmd.add_argument_group(
        'the archive (default: the configuration file\'s consumer of use = "archive")'
    )
    source.add_argument(
        "--archive", metavar="NAME", help="which archive consumer of the configuration file"
    )
    source.add_argument(
        "--archive-dsn",
        metavar="DSN",
        help=f"the archive's PostgreSQL DSN instead (a secret: better as {ARCHIVE_DSN_ENV})",
    )
    source.add_argument(
        "--archive-table",
        metavar="TABLE",
        default="callback_events",
        help="its table, with --archive-dsn (default: callback_events)",
    )
    cmd.set_defaults(handler=with_settings(_replay))


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(run_replay(args, settings))


async def run_replay(
    args: argparse.Namespace, settings: Settings, out: TextIO | None = None
) -> int:
    """Plan, confirm and carry out the replay; the exit status (130 when stopped)."""
    from callback_fanout.archived import Window
    from callback_fanout.replaying import (
        FileCheckpoints,
        ReplayRequest,
        default_checkpoint_dir,
        plan_replay,
        replay,
    )
    from shared.amqp import connect
    from shared.topology import Topology

    out = out or sys.stdout
    now = datetime.now(UTC)
    window = Window(
        since=parse_time(args.since, now),
        until=parse_time(args.until, now) if args.until else None,
        routing_key=args.routing_key,
        job_id=args.job_id,
    )
    request = ReplayRequest(args.consumer_name, window, args.since, args.until)
    checkpoints = FileCheckpoints(args.checkpoints or default_checkpoint_dir())
    connection = await connect(settings, role="replay")
    try:
        async with _archive_of(args, settings) as archive:
            topology = Topology(settings.prefix, settings.quorum_initial_group_size)
            plan = await plan_replay(
                connection, topology, archive, request, checkpoints, restart=args.restart
            )
            _print_plan(plan, out, asked=args.yes and not args.dry_run)
            if args.dry_run or plan.pending == 0:
                return 0
            if not args.yes and not _confirmed(plan):
                print("replay cancelled", file=sys.stderr)
                return 1
            if args.restart:
                checkpoints.forget(plan.key)
            with _stop_on_signals() as stop, _progress_bar(plan, out) as show:
                done = await replay(
                    connection,
                    archive,
                    plan,
                    checkpoints,
                    rate=args.rate,
                    progress=show,
                    stop=stop,
                )
            _print_done(plan, done, out)
            return 130 if done.stopped else 0
    finally:
        await connection.close()


def _archive_of(args: argparse.Namespace, settings: Settings) -> ArchiveTable:
    """The archive table: --archive-dsn (or its variable), else the configuration file's."""
    from callback_fanout.archived import ArchiveTable

    dsn = args.archive_dsn or os.environ.get(ARCHIVE_DSN_ENV)
    if dsn:
        return ArchiveTable(dsn, args.archive_table)
    from callback_fanout.sources import archive_table

    hint = f"or give --archive-dsn (or {ARCHIVE_DSN_ENV})"
    return archive_table(settings, args.archive, hint=hint)


def _print_plan(plan: ReplayPlan, out: TextIO, *, asked: bool) -> None:
    """What the replay sends; ``asked``: it goes ahead without a question (--yes)."""
    from callback_fanout.tables import console_for, is_terminal

    verb = "replaying" if asked else "would replay"
    earlier = f", {plan.done:,} sent by an earlier run of this command" if plan.done else ""
    print(
        f"{verb} {plan.pending:,} events to {plan.queue} ({plan.total:,} in the window{earlier})",
        file=out,
    )
    print(f"  archive  {plan.archive}", file=out)
    print(f"  window   {plan.window.describe()}", file=out)
    if plan.first and is_terminal(out):
        console_for(out).print(_first_table(plan))
    elif plan.first:  # piped: the rows as JSON lines, whole
        for row in plan.first:
            print(json.dumps(row.as_dict()), file=out)
    elif plan.total:
        print("nothing left to replay (--restart sends the window again)", file=out)
    else:
        print("no archived event in the window", file=out)


def _first_table(plan: ReplayPlan) -> Table:
    """The first events a replay sends, as the other commands' tables look."""
    from rich import box
    from rich.table import Table

    shown = len(plan.first)
    title = f"the first {shown} of {plan.pending:,}" if shown < plan.pending else None
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        show_edge=False,
    )
    for column in ("ROW", "RECEIVED", "ROUTING KEY", "JOB", "REQUEST"):
        table.add_column(column, no_wrap=True)
    for row in plan.first:
        received = row.received_at.strftime("%Y-%m-%d %H:%M:%S") if row.received_at else "-"
        table.add_row(
            str(row.id), received, row.routing_key, row.job_id or "-", row.request_id or "-"
        )
    return table


def _confirmed(plan: ReplayPlan) -> bool:
    if not sys.stdin.isatty():
        print("refusing to replay without --yes (no terminal to ask)", file=sys.stderr)
        return False
    answer = input(f"replay {plan.pending:,} events to {plan.queue}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[asyncio.Event]:
    """An event set by Ctrl-C or SIGTERM: the replay ends after the event in flight."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@contextlib.contextmanager
def _progress_bar(
    plan: ReplayPlan, out: TextIO
) -> Iterator[Callable[[ReplayProgress], None] | None]:
    """A progress bar at a terminal (rich); nothing when piped."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from callback_fanout.tables import console_for, is_terminal

    if not is_terminal(out):
        yield None
        return
    columns = (
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    # Shown from the first event sent to the last: the replay's log lines go before and after.
    bar = Progress(*columns, console=console_for(out))
    task = bar.add_task("replay", total=plan.pending)

    def show(done: ReplayProgress) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done.sent + done.refused)
        if done.stopped or done.finished:
            bar.stop()

    try:
        yield show
    finally:
        bar.stop()


def _print_done(plan: ReplayPlan, done: ReplayProgress, out: TextIO) -> None:
    refused = (
        f" ({done.refused} rows not sent: they do not validate as events)" if done.refused else ""
    )
    if done.stopped:
        print(
            f"stopped after {done.sent:,} of {plan.pending:,} events to {plan.queue}{refused}: "
            "run the same command again to send the rest",
            file=out,
        )
    else:
        print(f"replayed {done.sent:,} events to {plan.queue}{refused}", file=out)
