"""An AsyncAPI 3.0 document of the events exchange, for teams that consume it directly.

A service in any language binds a queue of its own to ``<prefix>.events`` (a topic exchange)
with routing-key patterns and reads the events; this document describes the exchange, the
routing keys, the message headers and properties, and the event's JSON Schema. The message
it describes is the one this deployment's router publishes (the ``event_format`` setting):
framed events (``shared.wire.events``) or one event's JSON.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from yarl import URL

from shared.callbacks.events import OPERATION_MODELS
from shared.callbacks.moderation import MODERATION_EVENTS
from shared.callbacks.schema import event_json_schema
from shared.settings import Settings
from shared.topology import Topology
from shared.wire.events import EVENT_COUNT_HEADER, EVENTS_CONTENT_TYPE
from shared.wire.headers import IDEMPOTENCY_KEY, REQUEST_ID, ROUTING_KEY

__all__ = ["EVENT_HEADERS", "FRAMED_HEADERS", "asyncapi_document"]

#: The headers of an event message of the JSON format (``event_format = "json"``).
EVENT_HEADERS = {
    IDEMPOTENCY_KEY: "The event's idempotency key (also the payload's `idempotency_key`): "
    "the same for every copy of one job's result. Delivery is at least once: drop a key you "
    "already handled.",
    REQUEST_ID: "The id of the HTTP request that carried the callback (the payload's "
    "`envelope.request_id`); one request may hold several events.",
    ROUTING_KEY: "The routing key the event was published with (`<EventName>.<Second>.<Third>`)"
    ", kept when a parked event is replayed.",
}

#: The headers of a framed event message (the default format): the last two only on a
#: message of one event.
FRAMED_HEADERS = {
    ROUTING_KEY: EVENT_HEADERS[ROUTING_KEY],
    EVENT_COUNT_HEADER: "The number of events in the message, all of this routing key.",
    IDEMPOTENCY_KEY: "On a message of one event: " + EVENT_HEADERS[IDEMPOTENCY_KEY],
    REQUEST_ID: "On a message of one event: " + EVENT_HEADERS[REQUEST_ID],
}

_FRAMING = (
    "The events that share a routing key and waited for the broker at the same moment, back "
    "to back; each entry is a 4-byte big-endian length M, M bytes of the event's JSON (the "
    "`CallbackEvent` schema; `envelope.raw_body` left out), a 4-byte big-endian length N "
    "and the raw body, N bytes byte for byte; N = 0xFFFFFFFF instead means the previous "
    "entry's raw body (the jobs of one callback share it). Persistent (delivery mode 2); "
    "message id `<request id>.<job index>` of the first event."
)

_BINDING = "0.3.0"


def _package_version() -> str:
    try:
        return version("callback-fanout")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The document for this deployment (its prefix, its broker's host; no credentials)."""
    topology = Topology(settings.prefix)
    broker = URL(settings.broker_url)
    vhost = broker.path[1:] or "/"
    tags = sorted(t for t in OPERATION_MODELS if t not in MODERATION_EVENTS)
    schema = event_json_schema(ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = schema.pop("$defs", {})
    schemas["CallbackEvent"] = schema
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "callback-fanout events",
            "version": _package_version(),
            "description": (
                "One event per job reported by a Tencent Cloud Infinite (CI) / COS callback, "
                f"published to the topic exchange `{topology.events}`. Bind a queue of your own "
                "to it with routing-key patterns (`*` one word, `#` any). Delivery is at least "
                "once: use `idempotency_key` (header `x-idempotency-key`) to drop duplicates. "
                f"Events no queue is bound to go to `{topology.unrouted}`."
            ),
        },
        "defaultContentType": _content_type(settings),
        "servers": {
            "rabbitmq": {
                "host": f"{broker.host or 'localhost'}:{broker.port or 5672}",
                "protocol": "amqps" if broker.scheme == "amqps" else "amqp",
                "protocolVersion": "0-9-1",
                "description": "The RabbitMQ of this deployment (credentials are your own).",
            }
        },
        "channels": {
            "events": {
                "address": "{eventName}.{second}.{third}",
                "title": topology.events,
                "description": (
                    "Routing keys have three words: `TaskFinish.<Tag>.<State>` "
                    "(`TaskFinish.Transcode.Success`), `WorkflowFinish.<WorkflowName>.<State>`, "
                    "and for moderation `<EventName>.<Label>.<Verdict>` "
                    "(`ReviewImage.Porn.Block`). A character other than a letter, digit, `_` "
                    "or `-` becomes `_`; a missing word is `Unknown`."
                ),
                "parameters": {
                    "eventName": {
                        "description": "The callback's EventName (`TaskFinish` when it has none).",
                        "examples": ["TaskFinish", "WorkflowFinish", *sorted(MODERATION_EVENTS)],
                    },
                    "second": {
                        "description": "The task's Tag (any task type; these have a typed "
                        "`operation`), the workflow's name, or the moderation label.",
                        "examples": [*tags, "Porn", "Normal"],
                    },
                    "third": {
                        "description": "The task's or workflow's State (without one: "
                        "`Success` when Code is `Success`, else `Failed`), or the moderation "
                        "verdict.",
                        "examples": ["Success", "Failed", "Pass", "Block", "Review"],
                    },
                },
                "messages": {"callbackEvent": {"$ref": "#/components/messages/callbackEvent"}},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {
                            "name": topology.events,
                            "type": "topic",
                            "durable": True,
                            "autoDelete": False,
                            "vhost": vhost,
                        },
                        "bindingVersion": _BINDING,
                    }
                },
            }
        },
        "operations": {
            "receiveEvent": {
                "action": "receive",
                "channel": {"$ref": "#/channels/events"},
                "summary": "Bind a queue to the exchange and receive the events it matches.",
                "messages": [{"$ref": "#/channels/events/messages/callbackEvent"}],
                "bindings": {"amqp": {"ack": True, "bindingVersion": _BINDING}},
            }
        },
        "components": {
            "messages": {
                "callbackEvent": _message(settings),
            },
            "schemas": schemas,
        },
    }


def _content_type(settings: Settings) -> str:
    return "application/json" if settings.event_format == "json" else EVENTS_CONTENT_TYPE


def _message(settings: Settings) -> dict[str, Any]:
    """The event message as this deployment's router publishes it."""
    bindings = {"amqp": {"messageType": "CallbackEvent", "bindingVersion": _BINDING}}
    if settings.event_format == "json":
        return {
            "name": "CallbackEvent",
            "title": "One job's result",
            "contentType": "application/json",
            "description": (
                "Persistent (delivery mode 2); message id `<request id>.<index of the "
                "event in the callback>`. The payload's field names are snake_case."
            ),
            "headers": _headers(EVENT_HEADERS, sorted(EVENT_HEADERS)),
            "payload": {"$ref": "#/components/schemas/CallbackEvent"},
            "bindings": bindings,
        }
    return {
        "name": "CallbackEvents",
        "title": "Job results of one routing key, framed",
        "contentType": EVENTS_CONTENT_TYPE,
        "description": _FRAMING,
        "headers": _headers(FRAMED_HEADERS, [ROUTING_KEY, EVENT_COUNT_HEADER]),
        "payload": {
            "type": "string",
            "format": "binary",
            "description": "Entries of `CallbackEvent` JSON and raw bodies (see above).",
        },
        "bindings": bindings,
    }


def _headers(described: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            name: {"type": "integer" if name == EVENT_COUNT_HEADER else "string", "description": t}
            for name, t in described.items()
        },
        "required": required,
    }
