"""Grouped acks: every handled delivery is acked, whenever it finishes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from aio_pika.abc import AbstractIncomingMessage

from workers.runtime.acks import AckGroup


@dataclass
class SlowChannel:
    """Records acks; each one takes a few turns of the loop, like a socket write."""

    acks: list[tuple[int, bool]] = field(default_factory=list)

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        self.acks.append((tag, multiple))


@dataclass
class Delivery:
    channel: SlowChannel
    delivery_tag: int


def _acked(acks: list[tuple[int, bool]], tags: range) -> set[int]:
    covered: set[int] = set()
    for tag, multiple in acks:
        covered |= set(range(1, tag + 1)) if multiple else {tag}
    return covered & set(tags)


async def test_deliveries_handled_while_a_group_is_being_sent_are_acked_too() -> None:
    channel = SlowChannel()
    group = AckGroup()
    messages = [cast(AbstractIncomingMessage, Delivery(channel, tag)) for tag in range(1, 5)]
    for message in messages:
        group.received(message)

    group.ack(messages[0])
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first group is being sent now
    for message in messages[1:]:
        group.ack(message)
    await group.drain()

    assert _acked(channel.acks, range(1, 5)) == {1, 2, 3, 4}


async def test_an_ack_never_covers_a_delivery_still_in_hand() -> None:
    channel = SlowChannel()
    group = AckGroup()
    messages = [cast(AbstractIncomingMessage, Delivery(channel, tag)) for tag in range(1, 5)]
    for message in messages:
        group.received(message)

    for done in (messages[0], messages[2], messages[3]):  # 2 is still being handled
        group.ack(done)
    await group.drain()

    assert channel.acks == [(1, False), (3, False), (4, False)]
