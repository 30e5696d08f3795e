"""`callback-fanout schema`: the event's JSON Schema and the AsyncAPI document of the exchange,
checked against real events from the parser."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from callback_fanout.cli import main
from shared.callbacks.events import OPERATION_MODELS, CallbackEvent
from shared.callbacks.moderation import MODERATION_EVENTS
from shared.errors import ParseError
from shared.wire.events import (
    EVENTS_CONTENT_TYPE,
    encode,
    entries_of,
    event_message,
    json_message,
)
from tests.conftest import SEEDS
from workers.testing import make_event, parse_body, seed, seed_names

CALLBACKS = Path(__file__).parent / "fixtures" / "callbacks"
#: The fixtures that do not parse, on purpose; every other one must.
UNPARSABLE = {"unbalanced-brackets.json"}


def _printed(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["schema", *argv]) == 0
    out = capsys.readouterr().out
    document: dict[str, Any] = json.loads(out)
    assert yaml.safe_load(out) == document  # JSON is YAML: either kind of tool reads it
    return document


def _real_events() -> Iterator[tuple[str, CallbackEvent]]:
    for name in seed_names():
        for event in parse_body(seed(name)):
            yield name, event
    for path in sorted(CALLBACKS.iterdir()):  # every other shape
        if path.name in UNPARSABLE:
            with pytest.raises(ParseError):
                parse_body(path.read_bytes())
            continue
        for event in parse_body(path.read_bytes()):
            yield path.name, event


def _wire(event: CallbackEvent) -> Any:
    """The event's JSON as a consumer queue receives it in a framed message (raw body beside)."""
    message = event_message(event)
    [entry] = entries_of(message.content_type, message.body)
    return json.loads(entry.doc)


def _wire_json(event: CallbackEvent) -> Any:
    """The event as a message of the JSON format carries it (raw body inside, base64)."""
    return json.loads(json_message(event, event.model_dump_json().encode()).body)


def test_the_json_schema_validates_every_event_the_parser_makes_of_the_seeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = _printed(capsys)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    events = list(_real_events())
    assert {name for name, _ in events} >= set(seed_names())
    assert len(events) > 30
    for name, event in events:
        errors = [e.message for e in validator.iter_errors(_wire(event))]
        assert errors == [], name
    for tag in [*OPERATION_MODELS, "SomeFutureTask"]:
        if tag not in MODERATION_EVENTS:
            assert validator.is_valid(_wire(make_event(tag=tag, state="Failed"))), tag


def test_the_json_schema_uses_the_field_names_on_the_wire_and_rejects_wrong_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = _printed(capsys)
    validator = jsonschema.Draft202012Validator(schema)
    good = _wire(parse_body((SEEDS / "ocr.1.xml").read_bytes())[0])
    assert set(good) <= set(schema["properties"])  # snake_case, as published
    assert {"job_id", "routing_key", "idempotency_key", "envelope"} <= set(schema["properties"])
    assert "JobId" not in schema["properties"]
    wrong_count = {**good, "job_count": "many"}
    assert not validator.is_valid(wrong_count)
    wrong_detection = {**good, "operation": {**good["operation"], "detection": "text"}}
    assert not validator.is_valid(wrong_detection)  # the typed OCR model, chosen by its kind
    no_envelope_body = {**good, "envelope": {"request_id": "r1"}}
    assert not validator.is_valid(no_envelope_body)


def _resolving_validator(document: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for the document's payload schema, its references resolved in the document."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:asyncapi", resource)
    return jsonschema.Draft202012Validator(
        {"$ref": "urn:asyncapi#/components/schemas/CallbackEvent"}, registry=registry
    )


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _lookup(document: dict[str, Any], ref: str) -> object:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_asyncapi_document_describes_the_exchange_its_keys_headers_and_payload(
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = _printed(
        capsys,
        "--asyncapi",
        *("--prefix", "acme", "--amqp-url", "amqp://fanout:pw-s3cret@rabbit.internal:5673/prod"),
    )
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"]
    assert document["info"]["version"]
    assert document["servers"]["rabbitmq"]["host"] == "rabbit.internal:5673"
    assert document["servers"]["rabbitmq"]["protocol"] == "amqp"
    assert "pw-s3cret" not in json.dumps(document)
    channel = document["channels"]["events"]
    assert channel["address"] == "{eventName}.{second}.{third}"
    assert channel["bindings"]["amqp"]["is"] == "routingKey"
    assert channel["bindings"]["amqp"]["exchange"] == {
        "name": "acme.events",
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "prod",
    }
    assert set(channel["parameters"]) == {"eventName", "second", "third"}
    tags = set(channel["parameters"]["second"]["examples"])
    assert {t for t in OPERATION_MODELS if t not in MODERATION_EVENTS} <= tags
    assert {"TaskFinish", "WorkflowFinish", *MODERATION_EVENTS} <= set(
        channel["parameters"]["eventName"]["examples"]
    )
    [operation] = document["operations"].values()
    assert operation["action"] == "receive"
    assert operation["channel"] == {"$ref": "#/channels/events"}
    for ref in set(_refs(document)):
        assert _lookup(document, ref) is not None, ref  # every reference resolves in the file

    message = document["components"]["messages"]["callbackEvent"]
    real = event_message(make_event())
    assert set(message["headers"]["properties"]) == set(real.headers)
    assert set(message["headers"]["required"]) == {"x-routing-key", "x-event-count"}
    assert message["contentType"] == real.content_type == EVENTS_CONTENT_TYPE
    assert message["payload"]["format"] == "binary"
    validator = _resolving_validator(document)
    for name, event in _real_events():
        assert [e.message for e in validator.iter_errors(_wire(event))] == [], name


def test_the_asyncapi_document_of_a_json_deployment_describes_one_event_per_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = _printed(capsys, "--asyncapi", "--event-format", "json")
    message = document["components"]["messages"]["callbackEvent"]
    event = make_event()
    real = json_message(event, event.model_dump_json().encode())
    assert set(message["headers"]["properties"]) == set(real.headers)
    assert message["contentType"] == real.content_type == "application/json"
    assert message["payload"] == {"$ref": "#/components/schemas/CallbackEvent"}
    validator = _resolving_validator(document)
    for name, event in _real_events():
        assert [e.message for e in validator.iter_errors(_wire_json(event))] == [], name
        inside = base64.urlsafe_b64decode(_wire_json(event)["envelope"]["raw_body"])
        assert inside == encode(event).raw  # the same bytes a framed message carries beside


def test_the_asyncapi_document_defaults_to_the_default_prefix_and_local_broker(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CALLBACK_FANOUT_PREFIX", "CALLBACK_FANOUT_AMQP_URL", "CALLBACK_FANOUT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    document = _printed(capsys, "--asyncapi")
    binding = document["channels"]["events"]["bindings"]["amqp"]["exchange"]
    assert (binding["name"], binding["vhost"]) == ("callbacks.events", "/")
    assert document["servers"]["rabbitmq"]["host"] == "localhost:5672"
