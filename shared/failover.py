"""A robust AMQP connection that moves to the next broker node when its node is lost.

aio-pika's :class:`~aio_pika.RobustConnection` reconnects and then restores every channel
(QoS, publisher confirms), declaration, binding and consumer on the new transport, but it
always dials the one URL it was given: a client of a node that died waits for that node,
while the rest of the cluster is healthy. aio-pika calls ``_on_connection_close`` both when
an open connection drops and when an attempt to connect fails, and dials ``self.url`` on each
attempt, so this subclass turns to the next URL there; everything else (restoration, backoff,
callbacks) stays aio-pika's. Between the nodes of one round it waits only ``NODE_PAUSE``; after
a whole round of failures, aio-pika's ``reconnect_interval``.

Each transport it opens asks for ``heartbeat`` seconds (unless the URL names its own) and
reports to ``alarm`` when the broker blocks it (``shared.alarms``); a silent one is given up
within two heartbeats and the next node tried.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from aio_pika import RobustConnection
from yarl import URL

from shared.alarms import BrokerAlarm, hear
from shared.logs import get_logger
from shared.settings import mask_url

__all__ = ["NODE_PAUSE", "FailoverConnection", "shuffled"]

log = get_logger("amqp")

#: Seconds between two attempts on different nodes of the same round.
NODE_PAUSE = 0.2


def shuffled(urls: Sequence[str], rng: random.Random | None = None) -> list[str]:
    """``urls`` in a random order, so that the replicas of a role spread over the nodes."""
    order = list(urls)
    (rng or random.Random()).shuffle(order)
    return order


class FailoverConnection(RobustConnection):
    """A :class:`RobustConnection` over several URLs, tried in turn (the given order)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        alarm: BrokerAlarm | None = None,
        heartbeat: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not urls:
            raise ValueError("at least one broker URL is needed")
        self._given = list(urls)  # as given: what the logs show
        self._urls = [_with_heartbeat(URL(u), heartbeat) for u in urls]
        self.alarm = alarm if alarm is not None else BrokerAlarm()
        self._current = 0
        self._failed_in_round = 0
        self._base_interval: float
        super().__init__(self._urls[0], **kwargs)  # sets reconnect_interval

    def __str__(self) -> str:
        """The URL in use as given (without the heartbeat added), password masked."""
        url = URL(self._given[self._current])
        return str(url.with_password("******") if url.password else url)

    @property
    def current_url(self) -> str:
        """The URL of the node this connection uses (or tries next), password masked."""
        return mask_url(self._given[self._current])

    @property
    def reconnect_interval(self) -> float:
        """A short pause before the next node, aio-pika's interval after a round of failures.

        With one URL, always aio-pika's interval, as with a plain robust connection.
        """
        if len(self._urls) > 1 and self._failed_in_round % len(self._urls) != 0:
            return NODE_PAUSE
        if len(self._urls) > 1 and self._failed_in_round == 0:
            return NODE_PAUSE  # connected: be ready at once for the next loss
        return self._base_interval

    @reconnect_interval.setter
    def reconnect_interval(self, value: float) -> None:
        self._base_interval = value

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not (self._close_called or self.is_closed) and len(self._urls) > 1:
            lost = self.current_url
            self._failed_in_round += 1
            self._current = (self._current + 1) % len(self._urls)
            self.url = self._urls[self._current]
            log.info("broker node lost, trying the next", lost=lost, next=self.current_url)
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        self.alarm.unblock()  # a new transport: not blocked until the broker says so
        transport = self.transport
        if transport is not None:
            aiormq = transport.connection
            hear(aiormq, self.alarm, float(getattr(aiormq, "heartbeat_timeout", 0)))
        await super()._on_connected()
        self._failed_in_round = 0
        if self.connection_attempt > 1:
            log.info("broker reconnected", url=self.current_url)


def _with_heartbeat(url: URL, heartbeat: int | None) -> URL:
    """``url`` asking for ``heartbeat`` seconds, unless it names its own (or none is given)."""
    if heartbeat is None or "heartbeat" in url.query:
        return url
    return url.update_query(heartbeat=str(heartbeat))
