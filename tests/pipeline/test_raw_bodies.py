"""A batch delivery as the router takes it: each body with the envelope its lone message gives."""

from __future__ import annotations

from types import SimpleNamespace

from aio_pika.message import IncomingMessage
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from shared.wire.envelope import envelope_of
from shared.wire.raw import RawMeta, batch_message
from tests.conftest import SEEDS
from workers.router.rawbodies import raw_bodies, raw_messages

_OPEN = SimpleNamespace(is_closed=False)  # a channel as the message asks it


def _delivered(message: object) -> IncomingMessage:
    body = message.body  # type: ignore[attr-defined]
    header = ContentHeader(body_size=len(body), properties=message.properties)  # type: ignore[attr-defined]
    deliver = Basic.Deliver(consumer_tag="c", delivery_tag=7, exchange="", routing_key="raw")
    return IncomingMessage(
        DeliveredMessage(delivery=deliver, header=header, body=body, channel=_OPEN),  # type: ignore[arg-type]
        no_ack=True,
    )


def test_each_body_of_a_batch_has_the_envelope_its_lone_message_would_give() -> None:
    seeds = [SEEDS / "ocr.1.xml", SEEDS / "digital-watermark.1.json"]
    entries = [
        (
            RawMeta(
                request_id=f"req-{i}",
                received_at=1_764_547_200.123457 + i,
                content_type="application/xml" if i == 0 else "application/json",
                source_address="203.0.113.7" if i == 0 else None,
                headers={"x-ci-content-version": "Simplified"} if i == 0 else {},
                token_name="ci" if i == 1 else None,
            ),
            path.read_bytes(),
        )
        for i, path in enumerate(seeds)
    ]
    delivery = _delivered(batch_message(entries))
    bodies = raw_bodies(delivery)
    lone = raw_messages(delivery)
    assert [b.body for b in bodies] == [body for _, body in entries]
    assert [b.envelope for b in bodies] == [envelope_of(m) for m in lone]
    rebuilt = bodies[0].message()
    assert (rebuilt.body, rebuilt.headers, rebuilt.message_id) == (
        lone[0].body,
        lone[0].headers,
        lone[0].message_id,
    )


def test_a_lone_delivery_is_its_own_body() -> None:
    meta = RawMeta("req-lone", 1_764_547_200.5, "application/xml", "198.51.100.1")
    body = (SEEDS / "ocr.1.xml").read_bytes()
    delivery = _delivered(meta.message(body))
    [only] = raw_bodies(delivery)
    assert only.message() is delivery
    assert only.envelope == envelope_of(delivery)
    assert only.envelope.raw_body == body
