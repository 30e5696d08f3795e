"""`status --url`: a role whose broker connection an alarm blocks is a problem, named and shown.

The admin ``/readyz`` answers are written here as a role gives them (the live answer of a
blocked role is checked in ``tests/edges/test_broker_alarm.py``, on a real memory alarm).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from callback_fanout.readiness import RoleReadiness
from callback_fanout.status import SystemStatus
from callback_fanout.tables import status_view

URL = "http://127.0.0.1:9100/readyz"


def _answer(ingress: dict[str, Any], router: dict[str, Any]) -> RoleReadiness:
    ready = ingress["ready"] and router["ready"]
    detail = {
        "status": "ready" if ready else "not ready",
        "ingress": ingress["ready"],
        "router": router["ready"],
        "roles": {"ingress": ingress, "router": router},
    }
    return RoleReadiness(URL, ready, 200 if ready else 503, detail)


def _facts(*, ready: bool = True, blocked: str | None = None) -> dict[str, Any]:
    return {"ready": ready, "broker": True, "broker_blocked": blocked}


def _status(*roles: RoleReadiness) -> SystemStatus:
    return SystemStatus("p", datetime.now(UTC), 0.0, None, (), roles=roles)


def _shown(status: SystemStatus) -> str:
    out = io.StringIO()
    Console(file=out, width=200, highlight=False).print(status_view(status))
    return out.getvalue()


def test_a_blocked_role_is_a_problem_with_the_brokers_reason_and_exit_1() -> None:
    answer = _answer(_facts(blocked="low on memory"), _facts())

    status = _status(answer)

    assert answer.blocked == {"ingress": "low on memory"}
    assert status.problems == [f"{URL}: broker blocks the ingress connection (low on memory)"]
    assert status.exit_status == 1
    assert "ingress: broker blocked (low on memory)" in _shown(status)


def test_a_blocked_role_that_is_not_ready_shows_both() -> None:
    answer = _answer(_facts(ready=False, blocked="low on disk"), _facts())

    shown = _shown(_status(answer))

    assert "503 not ready: ingress=false, ingress: broker blocked (low on disk)" in shown


def test_roles_not_blocked_are_no_problem_and_shown_as_ready() -> None:
    status = _status(_answer(_facts(), _facts()))

    assert status.roles[0].blocked == {}
    assert status.problems == []
    assert status.exit_status == 0
    assert "200 ready" in _shown(status)
    assert "blocked" not in _shown(status)


def test_an_answer_without_role_facts_is_never_blocked() -> None:
    assert RoleReadiness(URL, False, None, "no answer: cannot connect").blocked == {}
    assert RoleReadiness(URL, True, 200, {"ready": True}).blocked == {}
