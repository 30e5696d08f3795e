"""Grouped acks, frame by frame: what is sent, with ``multiple`` or not, and what never is."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

import pytest
from aio_pika.abc import AbstractIncomingMessage
from structlog.testing import capture_logs

from workers.runtime.acks import AckGroup


@dataclass
class Channel:
    """Records every ``basic.ack`` it is asked to send."""

    acks: list[tuple[int, bool]] = field(default_factory=list)
    broken: bool = False

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        if self.broken:
            raise ConnectionError("channel closed")
        self.acks.append((tag, multiple))


@dataclass
class Message:
    channel: Channel
    delivery_tag: int | None


def delivered(group: AckGroup, channel: Channel, *tags: int) -> list[AbstractIncomingMessage]:
    messages = [cast(AbstractIncomingMessage, Message(channel, tag)) for tag in tags]
    for message in messages:
        group.received(message)
    return messages


async def acked(group: AckGroup, *messages: AbstractIncomingMessage) -> None:
    for message in messages:
        group.ack(message)
    await group.drain()


@pytest.mark.parametrize(
    ("size", "frames"),
    [(1, [(1, False)]), (2, [(2, True)]), (3, [(3, True)]), (5, [(5, True)])],
)
async def test_a_group_handled_in_one_turn_is_one_ack_multiple_when_it_covers_several(
    size: int, frames: list[tuple[int, bool]]
) -> None:
    channel = Channel()
    group = AckGroup()
    messages = delivered(group, channel, *range(1, size + 1))

    await acked(group, *messages)

    assert channel.acks == frames


async def test_deliveries_above_one_still_in_hand_are_acked_one_by_one() -> None:
    channel = Channel()
    group = AckGroup()
    one, two, three, four = delivered(group, channel, 1, 2, 3, 4)

    await acked(group, one, two, four)  # 3 is still being handled

    assert channel.acks == [(2, True), (4, False)]
    await acked(group, three)
    assert channel.acks == [(2, True), (4, False), (3, False)]


async def test_nothing_is_acked_before_the_turn_of_the_loop_ends() -> None:
    channel = Channel()
    group = AckGroup()
    [message] = delivered(group, channel, 1)

    group.ack(message)
    assert channel.acks == []
    await group.drain()
    assert channel.acks == [(1, False)]


async def test_a_delivery_handed_back_is_no_longer_in_hand() -> None:
    channel = Channel()
    group = AckGroup()
    one, two, three = delivered(group, channel, 1, 2, 3)

    group.settled(one)  # rejected or put back outside the group
    await acked(group, two, three)

    assert channel.acks == [(3, True)]


async def test_no_ack_is_ever_sent_for_a_delivery_already_handed_back() -> None:
    channel = Channel()
    group = AckGroup()
    one, two = delivered(group, channel, 1, 2)

    group.settled(one)
    await acked(group, one)

    assert channel.acks == []
    await acked(group, two)
    assert channel.acks == [(2, False)]


async def test_no_ack_is_sent_for_a_delivery_of_a_channel_gone_since() -> None:
    old, new = Channel(), Channel()
    group = AckGroup()
    [stale] = delivered(group, old, 1)
    [fresh] = delivered(group, new, 1)  # the channel was opened again: tags start over

    await acked(group, stale)
    assert old.acks == new.acks == []

    await acked(group, fresh)
    assert new.acks == [(1, False)]
    assert old.acks == []


async def test_what_was_in_hand_on_an_old_channel_is_forgotten_when_it_reopens() -> None:
    old, new = Channel(), Channel()
    group = AckGroup()
    delivered(group, old, 1)  # never finished: the broker redelivers it
    five, six = delivered(group, new, 5, 6)

    await acked(group, five, six)

    assert new.acks == [(6, True)]  # the old tag 1 holds nothing back


async def test_acks_waiting_when_the_channel_reopens_are_never_sent_on_the_new_one() -> None:
    old, new = Channel(), Channel()
    group = AckGroup()
    [stale] = delivered(group, old, 1)
    group.ack(stale)  # waits for the end of this turn
    [fresh] = delivered(group, new, 2)

    await acked(group, fresh)

    assert old.acks == []
    assert new.acks == [(2, False)]


async def test_a_settled_delivery_of_an_old_channel_leaves_the_new_one_alone() -> None:
    old, new = Channel(), Channel()
    group = AckGroup()
    [stale] = delivered(group, old, 1)
    one, two, three = delivered(group, new, 1, 2, 3)

    group.settled(stale)  # same tag, other channel: the new tag 1 is still in hand
    await acked(group, two, three)

    assert new.acks == [(2, False), (3, False)]
    await acked(group, one)
    assert new.acks == [(2, False), (3, False), (1, False)]


async def test_a_delivery_without_a_tag_is_never_acked() -> None:
    channel = Channel()
    group = AckGroup()
    [untagged] = delivered(group, channel, None)  # type: ignore[arg-type]
    [tagged] = delivered(group, channel, 1)

    group.settled(untagged)
    await acked(group, untagged, tagged)

    assert channel.acks == [(1, False)]


async def test_acks_the_channel_refuses_are_logged_and_later_ones_still_sent() -> None:
    channel = Channel(broken=True)
    group = AckGroup()
    one, two = delivered(group, channel, 1, 2)

    with capture_logs() as logs:
        await acked(group, one)
    assert channel.acks == []
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("acks not sent, the broker will redeliver", "warning")
    ]
    assert "channel closed" in logs[0]["error"]

    channel.broken = False
    await acked(group, two)
    assert channel.acks == [(2, False)]


async def test_deliveries_handled_while_a_group_is_sent_go_in_the_next_frame() -> None:
    channel = Channel()
    group = AckGroup()
    messages = delivered(group, channel, 1, 2, 3)

    group.ack(messages[0])
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first group's frame is sent
    assert channel.acks == [(1, False)]
    group.ack(messages[1])
    group.ack(messages[2])
    await group.drain()

    assert channel.acks == [(1, False), (3, True)]


async def test_drain_with_nothing_waiting_returns_at_once() -> None:
    group = AckGroup()

    await asyncio.wait_for(group.drain(), 1)
