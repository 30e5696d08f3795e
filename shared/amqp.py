"""Connecting to RabbitMQ: robust connections that say clearly when the broker is away.

With several broker URLs (the nodes of a cluster) each process takes them in its own random
order, starts on the first that answers, and moves to the next when its node is lost
(:class:`shared.failover.FailoverConnection`), or silent for two heartbeats: an attempt to
connect gives up after two heartbeats too, so that a node that accepts the TCP connection
and answers nothing never holds a role.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import aio_pika

from shared.alarms import BrokerAlarm
from shared.errors import BrokerUnavailable
from shared.failover import FailoverConnection, shuffled
from shared.logs import get_logger
from shared.settings import Settings, mask_url

__all__ = ["connect", "connect_once", "within"]

log = get_logger("amqp")

_HINT = (
    "start one with `rabbitmq-server -detached` (or `docker compose up rabbitmq`), "
    "or point --amqp-url / CALLBACK_FANOUT_AMQP_URL at yours"
)


async def connect(
    settings: Settings,
    *,
    role: str,
    stop: asyncio.Event | None = None,
    max_backoff: float = 5.0,
    alarm: BrokerAlarm | None = None,
) -> FailoverConnection:
    """Connect with automatic reconnection, retrying until a broker answers.

    The URLs are tried in a random order of this process's own, one after the other. The first
    failure is logged as one clear line (URLs with the passwords masked, and how to start a
    broker); later failures are logged at debug level. Returns once connected; raises
    ``asyncio.CancelledError`` if ``stop`` is set first. ``alarm`` hears when the broker
    blocks the connection (``shared.alarms``).
    """
    urls = shuffled(settings.broker_urls)
    delay = 0.2
    warned = False
    attempt = 0
    while True:
        start = attempt % len(urls)
        attempt += 1
        connection = FailoverConnection(
            urls[start:] + urls[:start],
            client_properties={"connection_name": f"callback-fanout {role}"},
            alarm=alarm,
            heartbeat=settings.heartbeat,
        )
        try:
            await connection.connect(timeout=_attempt_timeout(settings))
        except Exception as exc:  # any failure to connect is retried
            # Not only OSError and AMQPError: a peer that accepts and closes at once makes
            # the client raise StopAsyncIteration or EOFError under uvloop.
            # One line when a whole round of nodes failed; a dead node of several is usual.
            event = "broker unreachable, retrying"
            if not warned and attempt % len(urls) == 0:
                log.warning(event, url=settings.masked_broker_url, error=str(exc), hint=_HINT)
                warned = True
            else:
                log.debug(event, url=connection.current_url, error=str(exc))
        else:
            log.log(
                logging.INFO if warned else logging.DEBUG,
                "broker connected",
                url=connection.current_url,
                role=role,
            )
            return connection
        await within(1.0, connection.close(), "close failed connection")
        if attempt % len(urls) != 0:
            continue  # the next node at once; the backoff is per round
        if stop is not None:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
            else:
                raise asyncio.CancelledError
        else:
            await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff)


def _attempt_timeout(settings: Settings) -> float | None:
    """Seconds one attempt to connect may take: two heartbeats (none without heartbeats)."""
    return 2.0 * settings.heartbeat if settings.heartbeat > 0 else None


async def connect_once(
    settings: Settings, *, role: str, seconds: float = 5.0
) -> aio_pika.abc.AbstractConnection:
    """One plain connection for a command that must answer now (`status`): no retrying.

    With several URLs, each is tried once, in this process's random order, ``seconds`` at
    most each. Raises :class:`BrokerUnavailable` with the URLs (passwords masked) when none
    answers.
    """
    detail = ""
    for url in shuffled(settings.broker_urls):
        try:
            return await asyncio.wait_for(
                aio_pika.connect(
                    url, client_properties={"connection_name": f"callback-fanout {role}"}
                ),
                seconds,
            )
        except Exception as exc:  # refused, unreachable, bad credentials, timed out
            detail = mask_url(str(exc)) or type(exc).__name__
    raise BrokerUnavailable(f"cannot reach the broker at {settings.masked_broker_url}: {detail}")


async def within(seconds: float, step: Awaitable[object], what: str) -> None:
    """Run one shutdown step against the broker, giving up after ``seconds``.

    A broker that is away must never hang a shutdown: what is unacked is redelivered by the
    broker anyway once the connection is gone.
    """
    try:
        await asyncio.wait_for(step, seconds)
    except (TimeoutError, Exception) as exc:
        log.debug("shutdown step skipped", step=what, error=repr(exc))
