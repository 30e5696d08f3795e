"""Connecting to RabbitMQ: robust connections that say clearly when the broker is away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from shared.errors import BrokerUnavailable
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
) -> AbstractRobustConnection:
    """Connect with automatic reconnection, retrying until the broker answers.

    The first failure is logged as one clear line (URL with the password masked, and how to
    start a broker); later failures are logged at debug level. Returns once connected;
    raises ``asyncio.CancelledError`` if ``stop`` is set first.
    """
    delay = 0.2
    warned = False
    while True:
        try:
            connection = await aio_pika.connect_robust(
                settings.broker_url,
                client_properties={"connection_name": f"callback-fanout {role}"},
            )
        except Exception as exc:  # any failure to connect is retried
            # Not only OSError and AMQPError: a peer that accepts and closes at once makes
            # the client raise StopAsyncIteration or EOFError under uvloop.
            event = "broker unreachable, retrying"
            if not warned:
                log.warning(event, url=settings.masked_broker_url, error=str(exc), hint=_HINT)
                warned = True
            else:
                log.debug(event, url=settings.masked_broker_url, error=str(exc))
        else:
            if warned:
                log.info("broker connected", url=settings.masked_broker_url, role=role)
            return connection
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


async def connect_once(
    settings: Settings, *, role: str, seconds: float = 5.0
) -> aio_pika.abc.AbstractConnection:
    """One plain connection for a command that must answer now (`status`): no retrying.

    Raises :class:`BrokerUnavailable` with the URL (password masked) when the broker does not
    answer within ``seconds``.
    """
    try:
        return await asyncio.wait_for(
            aio_pika.connect(
                settings.broker_url,
                client_properties={"connection_name": f"callback-fanout {role}"},
            ),
            seconds,
        )
    except Exception as exc:  # refused, unreachable, bad credentials, timed out
        detail = mask_url(str(exc)) or type(exc).__name__
        raise BrokerUnavailable(
            f"cannot reach the broker at {settings.masked_broker_url}: {detail}"
        ) from None


async def within(seconds: float, step: Awaitable[object], what: str) -> None:
    """Run one shutdown step against the broker, giving up after ``seconds``.

    A broker that is away must never hang a shutdown: what is unacked is redelivered by the
    broker anyway once the connection is gone.
    """
    try:
        await asyncio.wait_for(step, seconds)
    except (TimeoutError, Exception) as exc:
        log.debug("shutdown step skipped", step=what, error=repr(exc))
