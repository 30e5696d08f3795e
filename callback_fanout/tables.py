"""Output for people and for programs: a table at a terminal, JSON when piped.

Commands that describe the system (`status`, `parked list`, `parked show`) print a readable
table when stdout is a terminal, and machine-readable lines when it is not (or with
``--json``), so that the same command serves an operator and a script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from callback_fanout.consumers import ConsumerView
from callback_fanout.parking import ParkedMessage
from callback_fanout.readiness import RoleReadiness
from callback_fanout.status import QueueRow, SystemStatus
from shared.wire.headers import ATTEMPTS

__all__ = [
    "console_for",
    "consumers_table",
    "is_terminal",
    "parked_counts_table",
    "parked_messages_table",
    "role_answer",
    "row_state",
    "short_name",
    "status_view",
    "wants_json",
]

_PROBLEM = "bold red"
_PARKED = "bold yellow"


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def wants_json(flag: bool, stream: TextIO) -> bool:
    """JSON when asked for, or when ``stream`` is not a terminal (a pipe, a file)."""
    return flag or not is_terminal(stream)


def console_for(stream: TextIO) -> Console:
    return Console(file=stream, highlight=False)


def _table(title: str | None = None) -> Table:
    """The house style: a header rule, no borders, one space between columns."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0),
        show_edge=False,
    )


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}" if value else "0"


def _change(value: float | None) -> str:
    return "-" if value is None else f"{value:+,.1f}" if value else "0"


def row_state(row: QueueRow) -> tuple[str, str]:
    """A status row's state and how loud it is: ``ok``, ``held`` (paused, half-open),
    ``parked`` (only parked messages) or ``problem``. The terminal and the console both
    show this."""
    held = row.hold if row.hold in ("paused", "half-open") else None
    if not row.problems:
        return (held, "held") if held else ("ok", "ok")
    level = "parked" if all(p.endswith("parked") for p in row.problems) else "problem"
    return ", ".join(row.problems).upper(), level


_LEVEL_STYLES = {"ok": "green", "held": _PARKED, "parked": _PARKED, "problem": _PROBLEM}


def _state(row: QueueRow) -> Text:
    text, level = row_state(row)
    return Text(text, style=_LEVEL_STYLES[level])


def short_name(row: QueueRow, prefix: str) -> str:
    """The queue's name without the prefix the title shows."""
    return row.queue.removeprefix(f"{prefix}.")


def status_view(status: SystemStatus) -> RenderableType:
    """The status as one screen: the queue table, the roles' readiness, the notes."""
    checked = status.checked_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    verdict = (
        Text("healthy", style="bold green")
        if status.healthy
        else Text("NOT HEALTHY", style=_PROBLEM)
    )
    heading = Text.assemble(
        f"callback-fanout status · prefix {status.prefix} · {checked} · ", verdict
    )
    table = _table()
    table.add_column("queue", no_wrap=True)
    for header in ("ready", "unacked", "consumers", "retrying", "parked", "in/s", "out/s", "Δ/s"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for row in status.rows:
        style = None
        if row.problems:
            style = _PARKED if row.kind == "parking" else _PROBLEM
        table.add_row(
            short_name(row, status.prefix),
            _number(row.ready),
            _number(row.unacked),
            _number(row.consumers),
            _number(row.retrying),
            _number(row.parked),
            _rate(row.in_per_s),
            _rate(row.out_per_s),
            _change(row.ready_change_per_s),
            _state(row),
            style=style,
        )
    legend = (
        "retrying: in the consumer's delay queues · parked: in its dead queue · "
        "Δ/s: change of ready"
    )
    parts: list[RenderableType] = [heading, table, Text(legend, style="dim")]
    if status.roles:
        roles = _table("roles (/readyz)")
        for header in ("url", "ready", "answer"):
            roles.add_column(header)
        for role in status.roles:
            answer = role_answer(role)
            ready = Text("ready", "green") if role.ready else Text("NOT READY", _PROBLEM)
            roles.add_row(role.url, ready, answer)
        parts.append(roles)
    parts.extend(Text(note, style="dim") for note in status.notes)
    return Group(*parts)


def role_answer(role: RoleReadiness) -> str:
    """``200 ready``; ``503 not ready: broker=false``; or why nothing answered."""
    if role.status is None:
        return str(role.detail)
    detail = role.detail
    if not isinstance(detail, dict):
        return f"{role.status} {detail}"
    failing = [f"{key}=false" for key, value in detail.items() if value is False]
    said = str(detail.get("status", ""))
    blocked = [f"{name}: broker blocked ({why})" for name, why in role.blocked.items()]
    if (role.ready or not failing) and not blocked:
        return f"{role.status} {said}"
    return f"{role.status} {said}: {', '.join((failing if not role.ready else []) + blocked)}"


def parked_counts_table(counts: Mapping[str, int]) -> Table:
    table = _table()
    table.add_column("queue")
    table.add_column("parked", justify="right")
    for queue, count in counts.items():
        table.add_row(queue, f"{count:,}", style=_PARKED if count else None)
    return table


def _age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "-"
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parked_messages_table(
    queue: str, messages: Sequence[ParkedMessage], now: datetime | None = None
) -> Table:
    now = now or datetime.now(UTC)
    table = _table(f"{queue}: {len(messages)} shown")
    for header in ("age", "attempts", "routing key", "job id", "reason"):
        table.add_column(header, justify="right" if header in ("age", "attempts") else "left")
    for parked in messages:
        attempts = parked.headers.get(ATTEMPTS)
        table.add_row(
            _age(parked.since, now),
            "-" if attempts is None else str(attempts),
            parked.routing_key or "-",
            parked.job_id or "-",
            parked.reason.strip().splitlines()[0] if parked.reason.strip() else "-",
        )
    return table


_HOLDS = {"running": "green", "paused": _PARKED, "no worker": _PROBLEM}


def consumers_table(views: Sequence[ConsumerView], now: datetime | None = None) -> Table:
    """`consumers list`: one row per consumer, its hold first."""
    now = now or datetime.now(UTC)
    table = _table()
    table.add_column("consumer", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for header in ("ready", "consumers", "workers"):
        table.add_column(header, justify="right", no_wrap=True)
    for header in ("rate limit", "breakers", "paused"):
        table.add_column(header, no_wrap=True)
    for view in views:
        rate = "-" if view.rate_limit is None else f"{view.rate_limit:g}/s {view.rate_scope}"
        breakers = ", ".join(f"{n} {state}" for state, n in sorted(view.breakers.items()))
        paused = "-"
        if view.state == "paused":
            until = "until resumed"
            if view.paused_until is not None:
                left = datetime.fromtimestamp(view.paused_until, UTC)
                until = f"{_age(now, left)} left"
            paused = f"by {view.paused_by}, {until}"
        table.add_row(
            view.name,
            Text(view.state, style=_HOLDS.get(view.state, _PROBLEM)),
            _number(view.ready),
            _number(view.consumers),
            str(view.workers),
            rate,
            breakers or "-",
            paused,
        )
    return table
