"""The event message per seed: its size and its cost, framed against the JSON format.

For each seed, in this process: the callback's size; the message of one event as the JSON
format sends it (raw body inside in base64) and as the framed format does (raw body
beside); the framed bytes per event when ten callbacks of that seed share a message; and
the CPU to encode an event (router) and to read it back into a ``CallbackEvent`` (worker),
in each format; and, beside the framed read, the CPU to decode the event's JSON alone into
plain dicts and lists (``json.loads``: what any reading of the event pays, validated or not).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.pipeline.runner import Bench

__all__ = ["message_lines", "run_messages"]

_SHARED = 10  # callbacks of one seed in one framed message


def _cpu_us(fn: Callable[[], object], seconds: float = 0.3) -> float:
    for _ in range(20):
        fn()
    done = 0
    start = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(20):
            fn()
        done += 20
    return 1e6 * (time.process_time() - start) / done


def run_messages(bench: Bench) -> None:
    from shared.callbacks.events import CallbackEvent, Envelope
    from shared.callbacks.parser import parse_callback
    from shared.wire.events import encode, entries_of, event_message, events_message, json_message
    from workers.testing import seed, seed_names

    print("messages: event message size and cost per seed", flush=True)
    rows: list[dict[str, Any]] = []
    for name in seed_names():
        body = seed(name)
        kind = "application/json" if name.endswith(".json") else "application/xml"
        envelopes = [
            Envelope(
                request_id=f"{i:032x}",
                received_at=datetime.now(UTC),
                source_address="203.0.113.7",
                content_type=kind,
                raw_body=body,
            )
            for i in range(_SHARED)
        ]
        # Ten different callbacks (bodies that differ), as under load: no body shared.
        events = [
            parse_callback(b, content_type=kind, envelope=e.model_copy(update={"raw_body": b}))[0]
            for e, b in zip(envelopes, (body + b"\n" * i for i in range(_SHARED)), strict=True)
        ]
        event = events[0]
        as_json = json_message(event, event.model_dump_json().encode())
        framed = event_message(event)
        shared = events_message(event.routing_key, [encode(e) for e in events], event)
        [entry] = entries_of(framed.content_type, framed.body)
        assert entry.event() == event
        json_body, framed_body, framed_type = as_json.body, framed.body, framed.content_type

        def read_framed(data: bytes = framed_body, kind: str | None = framed_type) -> object:
            return entries_of(kind, data)[0].event()

        def read_json(data: bytes = json_body) -> object:
            return CallbackEvent.model_validate_json(data)

        rows.append(
            {
                "seed": name,
                "body": len(body),
                "json": len(json_body),
                "framed": len(framed_body),
                "framed_shared": len(shared.body) / _SHARED,
                "encode_json_us": _cpu_us(partial(event.model_dump_json)),
                "encode_framed_us": _cpu_us(partial(encode, event)),
                "read_json_us": _cpu_us(read_json),
                "read_framed_us": _cpu_us(read_framed),
                "decode_only_us": _cpu_us(partial(json.loads, entry.doc)),
            }
        )
    bench.results["messages"] = rows


def message_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("messages")
    if not rows:
        return []
    lines = [
        "",
        "Event message per seed (bytes; CPU us per event to encode in the router and to read "
        "back into a `CallbackEvent` in the worker), JSON format against framed:",
        "",
        "| seed | body B | JSON B | framed B | framed B/event, 10 callbacks in one | "
        "encode JSON us | encode framed us | read JSON us | read framed us | "
        "JSON decode alone us |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['body']:,} | {r['json']:,} | {r['framed']:,} | "
            f"{r['framed_shared']:,.0f} | {r['encode_json_us']:.1f} | "
            f"{r['encode_framed_us']:.1f} | {r['read_json_us']:.1f} | {r['read_framed_us']:.1f} | "
            f"{_decode_cell(r)} |"
        )
    return lines


def _decode_cell(row: dict[str, Any]) -> str:
    decode = row.get("decode_only_us")  # absent from runs saved before it was measured
    return "-" if decode is None else f"{decode:.1f}"
