"""The JSON Schema of an event as consumers receive it, for code in other languages.

It describes the message body the router publishes (``CallbackEvent.model_dump_json()``):
snake_case field names (the vendor's names are aliases the model accepts on input only),
datetimes as RFC 3339 strings, ``envelope.raw_body`` as URL-safe base64. The operation is
one of the typed models, chosen by its ``kind`` (the task's ``Tag`` or the moderation event's
name), or the generic model for any other kind.
"""

from __future__ import annotations

from typing import Any

from shared.callbacks.events import OPERATION_MODELS, CallbackEvent

__all__ = ["SCHEMA_DIALECT", "event_json_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def event_json_schema(ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """The event's JSON Schema (draft 2020-12); ``ref_template`` places its definitions."""
    schema = CallbackEvent.model_json_schema(
        by_alias=False, mode="serialization", ref_template=ref_template
    )
    definitions: dict[str, Any] = schema.get("$defs", {})
    known = sorted(OPERATION_MODELS)
    for definition in definitions.values():
        kind = definition.get("properties", {}).get("kind")
        if kind is None:
            continue
        # The kind picks the model: a constant for each typed one, any other for the generic.
        if definition["title"] == "GenericOperation":
            kind["not"] = {"enum": known}
        else:
            kind["const"] = kind["default"]
        definition.setdefault("required", [])
        if "kind" not in definition["required"]:
            definition["required"].append("kind")
    return {"$schema": SCHEMA_DIALECT, **schema}
