"""`schema`: the JSON Schema of the event, or the AsyncAPI document of the events exchange."""

from __future__ import annotations

import argparse
import json

from callback_fanout.commands import Subcommands
from callback_fanout.flags import add_settings_flags, with_settings
from shared.settings import Settings

__all__ = ["add"]

_TEXT = (
    "print the JSON Schema of the event (the message body consumers receive), or with "
    "--asyncapi an AsyncAPI 3.0 document of the events exchange"
)


def add(sub: Subcommands) -> None:
    schema = sub.add_parser("schema", help=_TEXT, description=_TEXT)
    schema.add_argument(
        "--asyncapi",
        action="store_true",
        help="the AsyncAPI 3.0 document of <prefix>.events: routing keys, headers, payload",
    )
    add_settings_flags(schema, "schema")
    schema.set_defaults(handler=with_settings(_schema))


def _schema(args: argparse.Namespace, settings: Settings) -> int:
    if args.asyncapi:
        from callback_fanout.asyncapi import asyncapi_document

        document = asyncapi_document(settings)
    else:
        from shared.callbacks.schema import event_json_schema

        document = event_json_schema()
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0
