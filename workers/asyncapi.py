"""An AsyncAPI 3.0 document of the events exchange, for teams that consume it directly.

A service in any language binds a queue of its own to ``<prefix>.events`` (a topic exchange)
with routing-key patterns and reads the event JSON; this document describes the exchange, the
routing keys, the message headers and properties, and the payload's JSON Schema.
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

__all__ = ["EVENT_HEADERS", "asyncapi_document"]

#: The headers of every event message on the exchange.
EVENT_HEADERS = {
    "x-idempotency-key": "The event's idempotency key (also the payload's `idempotency_key`): "
    "the same for every copy of one job's result. Delivery is at least once: drop a key you "
    "already handled.",
    "x-request-id": "The id of the HTTP request that carried the callback (the payload's "
    "`envelope.request_id`); one request may hold several events.",
    "x-routing-key": "The routing key the event was published with (`<EventName>.<Second>.<Third>`)"
    ", kept when a parked event is replayed.",
}

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
        "defaultContentType": "application/json",
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
                "callbackEvent": {
                    "name": "CallbackEvent",
                    "title": "One job's result",
                    "contentType": "application/json",
                    "description": (
                        "Persistent (delivery mode 2); message id `<request id>.<index of the "
                        "event in the callback>`. The payload's field names are snake_case."
                    ),
                    "headers": {
                        "type": "object",
                        "properties": {
                            name: {"type": "string", "description": text}
                            for name, text in EVENT_HEADERS.items()
                        },
                        "required": sorted(EVENT_HEADERS),
                    },
                    "payload": {"$ref": "#/components/schemas/CallbackEvent"},
                    "bindings": {
                        "amqp": {"messageType": "CallbackEvent", "bindingVersion": _BINDING}
                    },
                }
            },
            "schemas": schemas,
        },
    }
