"""Hostile bodies through the running system: the ingress takes them (it never parses), the
router refuses each with a parse error, parks it byte for byte with its reason in
``<prefix>.unparsed``, and goes on routing the next callback."""

from __future__ import annotations

import re

import pytest

from tests.security.conftest import OCR_JSON, StartIngress, new_secret
from tests.support.broker import BrokerClient
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

_LAUGHS = b"".join(
    b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1)) * 10 if i else b"lol") for i in range(10)
)

#: name -> (body, content type, what the reason must mention)
HOSTILE: dict[str, tuple[bytes, str, str]] = {
    "dtd": (
        b'<?xml version="1.0"?><!DOCTYPE Response [<!ELEMENT Response ANY>]>'
        b"<Response><EventName>TaskFinish</EventName></Response>",
        "application/xml",
        r"dtd|doctype|document type",
    ),
    "entity-expansion": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [' + _LAUGHS + b"]><lolz>&lol9;</lolz>",
        "application/xml",
        r"dtd|doctype|document type|entit",
    ),
    "external-entity": (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<Response><EventName>&x;</EventName></Response>",
        "application/xml",
        r"dtd|doctype|document type|entit",
    ),
    "external-dtd": (
        b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">'
        b"<Response><EventName>TaskFinish</EventName></Response>",
        "application/xml",
        r"dtd|doctype|document type",
    ),
    "deep-xml": (b"<a>" * 100_000 + b"</a>" * 100_000, "application/xml", r"nest|deep"),
    "deep-json-arrays": (b"[" * 100_000 + b"]" * 100_000, "application/json", r"nest|deep"),
    "deep-json-objects": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json", "nest"),
    "huge-float": (
        b'{"EventName":"TaskFinish","JobsDetail":{"JobId":"j1","State":"Success",'
        b'"Tag":"ImageOCR","Progress":1e999999}}',
        "application/json",
        r"number|range",
    ),
    "huge-integer": (
        b'{"EventName":"TaskFinish","JobsDetail":{"JobId":"j1","State":"Success",'
        b'"Tag":"ImageOCR","Progress":' + b"9" * 100_000 + b"}}",
        "application/json",
        r"number|digit|long",
    ),
    "invalid-utf8-json": (
        b'{"EventName":"Task\xff\xfeFinish","JobsDetail":{"JobId":"j1"}}',
        "application/json",
        r"utf-?8",
    ),
    "invalid-utf8-xml": (
        b"<Response><EventName>Task\xc3\x28Finish</EventName></Response>",
        "application/xml",
        r"utf-?8",
    ),
    "nul-json": (
        b'{"EventName":"TaskFinish","JobsDetail":{"JobId":"j\x001"}}',
        "application/json",
        r"nul|\\x00|control",
    ),
    "nul-xml": (
        b"<Response><EventName>Task\x00Finish</EventName></Response>",
        "application/xml",
        r"nul|\\x00|control",
    ),
}


async def test_every_hostile_body_is_parked_with_its_reason_and_the_router_goes_on(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    everything = Recorder("everything", ["#"])
    ingress = await start_ingress([everything], full=True, tokens=[f"ci={secret}"])
    path = f"/callbacks/{secret}"

    request_ids: dict[str, str] = {}
    for name, (body, content_type, _) in HOSTILE.items():
        reply = await ingress.post(path, body, content_type=content_type)
        assert reply.status == 200, name  # the ingress never parses
        request_ids[reply.headers["X-Request-Id"]] = name
    assert (await ingress.post(path, OCR_JSON)).status == 200

    async def all_parked() -> bool:
        return await broker.count(broker.topology.unparsed) == len(HOSTILE)

    await eventually(all_parked, timeout=60)
    await eventually(lambda: len(everything.events) == 1)
    assert everything.events[0].job_id == "j-security-1"
    assert everything.events[0].envelope is not None
    assert everything.events[0].envelope.token_name == "ci"

    parked = await broker.take_all(broker.topology.unparsed)
    by_name = {request_ids[str(m.message_id)]: m for m in parked}
    assert sorted(by_name) == sorted(HOSTILE)
    for name, (body, content_type, mentions) in HOSTILE.items():
        message = by_name[name]
        reason = str((message.headers or {})["x-parse-error"])
        assert message.body == body, name
        assert message.content_type == content_type, name
        assert (message.headers or {})["x-token-name"] == "ci", name
        assert not reason.startswith("parser crashed"), (name, reason)  # refused, not a bug
        assert re.search(mentions, reason, re.IGNORECASE), (name, reason)
    assert await broker.count(broker.topology.raw) == 0
