"""Fuzzing the parser: whatever the bytes, ``parse_callback`` returns events or raises the
project's :class:`ParseError`, and a parse error is a deliberate refusal, not a crash that
the parser's last-resort handler dressed up.

The suite runs a bounded, derandomized number of cases (seconds). A longer, random run::

    FUZZ_EXAMPLES=200000 python -m pytest tests/security/test_parser_fuzz.py -p no:cacheprovider
"""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.callbacks.events import CallbackEvent
from shared.callbacks.parser import parse_callback
from shared.errors import ParseError

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # no timing assertions; pytest's timeout bounds the run
    derandomize="FUZZ_EXAMPLES" not in os.environ,  # the suite sees the same cases each run
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: The vendor's field names, so generated documents reach deep into the parser.
KEYS = [
    "Response", "EventName", "JobsDetail", "JobId", "State", "Tag", "Code", "Message",
    "CreationTime", "StartTime", "EndTime", "QueueId", "Input", "BucketId", "Object",
    "Region", "Url", "CosHeaders", "Key", "Value", "Operation", "MediaInfo", "MediaResult",
    "Output", "Workflow", "WorkflowExecution", "RunId", "Tasks", "Progress", "SubTag",
    "ImageOcrResult", "TextDetections", "PicProcess", "Translation", "DigitalWatermark",
    "code", "message", "data", "event", "Label", "Result", "Score", "TaskFinish",
    "WorkflowFinish", "ReviewImage", "Success", "Failed",
]  # fmt: skip
EVENT_NAMES = ["TaskFinish", "WorkflowFinish", "ReviewImage", "ReviewVideo", "Other", ""]
TAGS = ["ImageOCR", "ImageInspect", "PicProcess", "Translation", "DigitalWatermark", "X"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(KEYS + EVENT_NAMES + TAGS + ["2024-01-02T03:04:05+0800", "1", "true"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=6),
    ),
    max_leaves=40,
)


@st.composite
def callbacks(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-shaped callbacks with arbitrary values in the corners."""
    job: dict[str, Any] = draw(st.dictionaries(st.sampled_from(KEYS), documents, max_size=8))
    for key, values in (
        ("JobId", st.text(max_size=12)),
        ("State", st.sampled_from(["Success", "Failed", "", "Running"])),
        ("Tag", st.sampled_from(TAGS)),
    ):
        if draw(st.booleans()):
            job[key] = draw(values)
    body: dict[str, Any] = {"EventName": draw(st.sampled_from(EVENT_NAMES))}
    body["JobsDetail"] = draw(st.sampled_from([job, [job], [job, job]]))
    return {"Response": body} if draw(st.booleans()) else body


def _xml(value: Any, name: str = "Response") -> str:
    if isinstance(value, dict):
        inner = "".join(_xml(v, k if k.isidentifier() else "X") for k, v in value.items())
    elif isinstance(value, list):
        return "".join(_xml(v, name) for v in value) or f"<{name}/>"
    else:
        inner = "" if value is None else _escape(str(value))
    return f"<{name}>{inner}</{name}>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def encoded(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A generated callback as JSON or XML bytes, perhaps damaged, with a content type."""
    document = draw(st.one_of(callbacks(), documents))
    as_xml = draw(st.booleans())
    if as_xml:
        root = document if isinstance(document, dict) and len(document) == 1 else {"R": document}
        [(name, inner)] = root.items()
        text = _xml(inner, name if name.isidentifier() else "R")
    else:
        text = json.dumps(document, ensure_ascii=draw(st.booleans()), allow_nan=False)
    body = text.encode()
    damage = draw(st.sampled_from(["none", "truncate", "insert", "flip", "dtd", "bom"]))
    if body and damage == "truncate":
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif damage == "insert":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    elif body and damage == "flip":
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
    elif damage == "dtd":
        body = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]>' + body
    elif damage == "bom":
        body = b"\xef\xbb\xbf" + body
    content_type = draw(
        st.sampled_from([None, "application/json", "application/xml", "text/plain"])
    )
    return body, content_type


def _outcome(
    body: bytes, content_type: str | None, headers: dict[str, str] | None
) -> list[CallbackEvent] | ParseError:
    """The events, or the parse error; any other exception propagates and fails the test."""
    try:
        return parse_callback(body, content_type=content_type, headers=headers)
    except ParseError as exc:
        return exc


def _check(body: bytes, content_type: str | None, headers: dict[str, str] | None = None) -> None:
    outcome = _outcome(body, content_type, headers)
    if isinstance(outcome, ParseError):
        assert outcome.reason, "a parse error says what is wrong"
        # The parser's last resort turns any other exception into a ParseError chained to
        # it; reaching it means a crash the parser did not foresee.
        cause = outcome.__cause__
        assert cause is None or isinstance(cause, ParseError), (
            f"parser crashed on {body[:200]!r}: {cause!r}"
        )
        return
    assert outcome, "a parsed callback has at least one event"
    for event in outcome:
        assert isinstance(event, CallbackEvent)
        assert event.routing_key.count(".") >= 2


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from([None, "application/json", "application/xml"]))
def test_arbitrary_bytes_only_ever_raise_a_parse_error(
    body: bytes, content_type: str | None
) -> None:
    _check(body, content_type)


@FUZZ
@given(encoded())
def test_generated_and_damaged_callbacks_only_ever_raise_a_parse_error(
    case: tuple[bytes, str | None],
) -> None:
    body, content_type = case
    _check(body, content_type)


@FUZZ
@given(
    encoded(),
    st.dictionaries(
        st.sampled_from(["X-Ci-Content-Version", "Content-Type", "User-Agent", "X-Other"]),
        st.sampled_from(["Detail", "Simple", "application/json", "", "\x00", "é"]),
        max_size=3,
    ),
)
def test_request_headers_never_turn_a_body_into_a_crash(
    case: tuple[bytes, str | None], headers: dict[str, str]
) -> None:
    body, content_type = case
    _check(body, content_type, headers)


def test_a_gzip_body_that_reached_the_parser_is_a_parse_error() -> None:
    """Compressed bytes are decoded at the ingress; raw gzip here is just bad input."""
    _check(gzip.compress(b'{"EventName":"TaskFinish"}'), "application/json")
