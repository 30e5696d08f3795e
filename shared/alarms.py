"""What a broker connection hears besides the work: an alarm that blocks it, or silence.

**Alarms.** While a memory or disk alarm is on, RabbitMQ blocks every connection that
publishes: it sends ``connection.blocked`` (with the reason) and stops reading from the
socket until the alarm clears (``connection.unblocked``). A publish then waits, unconfirmed,
for as long as the alarm lasts. A :class:`BrokerAlarm` holds what the role's connection was
told, so that the role acts at once: the ingress spools or answers 503 instead of waiting
for its confirm timeout; routers and workers hold new deliveries until it clears.

**Silence.** A broker that stops answering without closing the connection (a frozen proxy,
a partition) is noticed only by the heartbeats: the client gives up on a connection from
which nothing (no frame, no heartbeat) came for one and a half heartbeat timeouts, checked
every half timeout, so within two timeouts; the robust connection then moves on.

aiormq handles ``connection.blocked``/``unblocked`` itself (it logs them) and offers no
callback for them, and fixes the silence allowed at three timeouts and more; :func:`hear`
wraps its two handlers and sets that allowance on each new transport. Both are attributes
of the aiormq connection object, looked up at each use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shared.logs import get_logger

__all__ = ["SILENCE_ALLOWED", "BrokerAlarm", "hear"]

log = get_logger("amqp")

#: Heartbeat timeouts of silence after which a connection is given up.
SILENCE_ALLOWED = 1.5

_BLOCKED = "_Connection__handle_connection_blocked"
_UNBLOCKED = "_Connection__handle_connection_unblocked"
_GRACE = "_Connection__heartbeat_grace_timeout"

Listener = Callable[[str | None], None]


class BrokerAlarm:
    """Whether the broker blocks the role's connection, and why; shared by its reconnects.

    ``listen`` registers a function called with the reason when the connection is blocked
    and with None when it is let go (or replaced by a new, unblocked one). ``release``, when
    the role stops, lets whoever waits in :meth:`cleared` go without the alarm clearing.
    """

    def __init__(self, role: str = "") -> None:
        self.role = role
        self.reason: str | None = None
        self._since = 0.0
        self._clear = asyncio.Event()
        self._clear.set()
        self._released = asyncio.Event()
        self._listeners: list[Listener] = []

    @property
    def blocked(self) -> bool:
        return self.reason is not None

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def cleared(self) -> bool:
        """Wait until the connection is not blocked (True, at once when it is not), or until
        :meth:`release` (False: the role stops, what waited is to be handed back)."""
        if self._clear.is_set():
            return True
        if self._released.is_set():
            return False
        waits = [asyncio.ensure_future(e.wait()) for e in (self._clear, self._released)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        return self._clear.is_set()

    def release(self) -> None:
        """The role stops: nothing waits for the alarm to clear any longer."""
        self._released.set()

    def block(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason or "blocked"
        self._since = time.monotonic()
        self._clear.clear()
        log.warning("broker blocked the connection", role=self.role, reason=self.reason)
        self._tell()

    def unblock(self) -> None:
        if self.reason is None:
            return
        self.reason = None
        self._clear.set()
        held = round(time.monotonic() - self._since, 3)
        log.warning("broker unblocked the connection", role=self.role, seconds=held)
        self._tell()

    def _tell(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self.reason)
            except Exception:
                log.exception("broker alarm listener failed", role=self.role)


def hear(transport: Any, alarm: BrokerAlarm, heartbeat: float) -> bool:
    """Tell ``alarm`` what the aiormq connection ``transport`` hears; allow it
    :data:`SILENCE_ALLOWED` heartbeat timeouts of silence (none when ``heartbeat`` is 0).

    False (and a warning) when this aiormq no longer has the handlers: alarms then go
    unheard, the connection still works.
    """
    blocked = getattr(transport, _BLOCKED, None)
    unblocked = getattr(transport, _UNBLOCKED, None)
    if blocked is None or unblocked is None or not hasattr(transport, _GRACE):
        log.warning("broker alarms cannot be heard on this aiormq version", role=alarm.role)
        return False

    async def on_blocked(frame: Any) -> None:
        alarm.block(str(getattr(frame, "reason", "") or ""))
        await _call(blocked, frame)

    async def on_unblocked(frame: Any) -> None:
        alarm.unblock()
        await _call(unblocked, frame)

    setattr(transport, _BLOCKED, on_blocked)
    setattr(transport, _UNBLOCKED, on_unblocked)
    if heartbeat > 0:
        setattr(transport, _GRACE, SILENCE_ALLOWED * heartbeat)
    return True


async def _call(handler: Callable[[Any], Awaitable[None]], frame: Any) -> None:
    await handler(frame)
