"""The event model as a contract: JSON round trip, envelope, routing and idempotency keys."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.callbacks.events import CallbackEvent, Envelope
from shared.callbacks.parser import parse_callback
from shared.callbacks.routing import MAX_WORD_BYTES, routing_key, routing_word
from tests.parser.bodies import CALLBACKS, SEED_FILES, SEEDS, parse_file

ALL_BODIES = SEED_FILES + sorted(
    p for p in CALLBACKS.glob("*.*") if p.name != "unbalanced-brackets.json"
)
ROUTING_WORD = re.compile(r"^[^\s.*#]+$")


def _envelope(body: bytes) -> Envelope:
    return Envelope(
        request_id="req-1",
        received_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        source_address="203.0.113.7",
        content_type="application/json",
        headers={"X-Ci-Content-Version": "Detail", "User-Agent": "ci-callback"},
        token_name="primary",
        raw_body=body,
    )


@pytest.mark.parametrize("path", ALL_BODIES, ids=lambda p: p.name)
def test_every_event_survives_a_json_round_trip(path: Path) -> None:
    body = path.read_bytes()
    for event in parse_callback(body, envelope=_envelope(body)):
        assert CallbackEvent.model_validate_json(event.model_dump_json()) == event
        assert CallbackEvent.model_validate(event.model_dump()) == event


@pytest.mark.parametrize("path", ALL_BODIES, ids=lambda p: p.name)
def test_every_routing_key_has_three_safe_words(path: Path) -> None:
    for event in parse_file(path):
        words = event.routing_key.split(".")
        assert len(words) == 3
        assert all(ROUTING_WORD.match(word) for word in words), event.routing_key
        assert words[0] == event.event_name


def test_dumped_event_has_snake_case_top_level_keys_for_the_command_line() -> None:
    [event] = parse_file(SEEDS / "ocr.1.xml")
    dumped = event.model_dump(mode="json")
    assert {"event_name", "tag", "state", "job_id", "routing_key", "idempotency_key"} <= set(dumped)
    assert dumped["routing_key"] == "TaskFinish.ImageOCR.Success"
    assert dumped["creation_time"] == "2023-11-25T08:47:39+08:00"
    assert dumped["operation"]["kind"] == "ImageOCR"
    assert dumped["envelope"] is None
    assert json.loads(json.dumps(dumped)) == dumped


def test_vendor_names_are_aliases_for_dumping_the_body_shape() -> None:
    [event] = parse_file(SEEDS / "ocr.1.xml")
    by_alias = event.model_dump(by_alias=True)
    detection = by_alias["Operation"]["Detection"]
    assert detection["TextDetections"][0]["Polygon"][1] == {"X": 215, "Y": 24}
    assert by_alias["JobId"] == "a3c193f288b2c11eeb60f39de2f86f409"


def test_every_event_carries_the_envelope_and_the_raw_body_as_base64() -> None:
    body = (CALLBACKS / "jobs-array.json").read_bytes()
    envelope = _envelope(body)
    events = parse_callback(body, envelope=envelope)
    assert len(events) == 3
    assert all(event.envelope == envelope for event in events)
    dumped = events[0].model_dump(mode="json")["envelope"]
    assert base64.b64decode(dumped["raw_body"]) == body
    assert dumped["received_at"] == "2024-01-02T03:04:05Z"
    assert dumped["token_name"] == "primary"
    assert events[0].content_version == "Detail"  # taken from the envelope's headers


def test_envelope_round_trips_through_json_byte_for_byte() -> None:
    body = b"\x00\xff<not a callback>"
    envelope = _envelope(body)
    assert Envelope.model_validate_json(envelope.model_dump_json()) == envelope
    with pytest.raises(ValueError, match="frozen"):
        envelope.request_id = "other"  # type: ignore[misc]


def test_events_are_immutable() -> None:
    [event] = parse_file(SEEDS / "translation.1.xml")
    with pytest.raises(ValueError, match="frozen"):
        event.state = "Failed"  # type: ignore[misc]


def test_an_event_validates_from_vendor_names_or_snake_case_names() -> None:
    by_vendor = CallbackEvent.model_validate(
        {"EventName": "TaskFinish", "JobId": "j1", "Tag": "Transcode", "State": "Failed"}
    )
    by_name = CallbackEvent.model_validate(
        {"event_name": "TaskFinish", "job_id": "j1", "tag": "Transcode", "state": "Failed"}
    )
    assert by_vendor == by_name
    assert by_vendor.routing_key == "TaskFinish.Transcode.Failed"


# -- routing keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "word"),
    [
        ("ImageOCR", "ImageOCR"),
        ("a.b", "a_b"),
        ("*", "_"),
        ("#", "_"),
        ("two words", "two_words"),
        ("  padded\t", "padded"),
        ("", "Unknown"),
        ("   ", "Unknown"),
        (None, "Unknown"),
        ("工作流-1", "工作流-1"),
    ],
)
def test_routing_words_are_sanitised_for_topic_matching(value: str | None, word: str) -> None:
    assert routing_word(value) == word


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text()), min_size=3, max_size=3))
def test_any_values_make_a_valid_three_word_key(values: list[str | None]) -> None:
    key = routing_key(*values)
    words = key.split(".")
    assert len(words) == 3
    assert all(ROUTING_WORD.match(word) for word in words)
    assert all(len(word.encode()) <= MAX_WORD_BYTES for word in words)
    assert len(key.encode()) <= 255


def test_state_falls_back_to_the_code_when_a_task_reports_none() -> None:
    failed = CallbackEvent.model_validate({"Tag": "Snapshot", "Code": "NoSuchKey"})
    assert failed.routing_key == "TaskFinish.Snapshot.Failed"
    unknown = CallbackEvent.model_validate({"Tag": "Snapshot"})
    assert unknown.routing_key == "TaskFinish.Snapshot.Unknown"


def test_workflow_without_a_name_routes_on_its_id() -> None:
    body = (
        b"<Response><EventName>WorkflowFinish</EventName><WorkflowExecution>"
        b"<WorkflowId>w123</WorkflowId><RunId>r1</RunId><State>Success</State>"
        b"</WorkflowExecution></Response>"
    )
    [event] = parse_callback(body)
    assert event.routing_key == "WorkflowFinish.w123.Success"


# -- idempotency keys -------------------------------------------------------------------


def test_the_same_result_delivered_twice_has_the_same_idempotency_key() -> None:
    body = (SEEDS / "digital-watermark.1.xml").read_bytes()
    [first] = parse_callback(body, envelope=_envelope(body))
    [again] = parse_callback(body)
    assert first.idempotency_key == again.idempotency_key
    assert re.fullmatch(r"[0-9a-f]{64}", first.idempotency_key)


def test_the_same_result_in_xml_and_in_json_has_the_same_idempotency_key() -> None:
    [from_xml] = parse_file(SEEDS / "translation.1.xml")
    [from_json] = parse_file(SEEDS / "translation.1.json")
    assert from_xml.idempotency_key == from_json.idempotency_key


def test_a_job_reported_failed_then_successful_has_two_idempotency_keys() -> None:
    failed = b'{"JobsDetail": {"JobId": "j1", "Tag": "Transcode", "State": "Failed", "Code": "E1"}}'
    success = b'{"JobsDetail": {"JobId": "j1", "Tag": "Transcode", "State": "Success"}}'
    [first] = parse_callback(failed)
    [second] = parse_callback(success)
    assert first.idempotency_key != second.idempotency_key


def test_different_jobs_and_different_verdicts_have_different_idempotency_keys() -> None:
    def key(body: dict[str, object]) -> str:
        [event] = parse_callback(json.dumps(body).encode())
        return event.idempotency_key

    review, run = "ReviewImage", "WorkflowFinish"
    keys = {
        key({"JobsDetail": {"JobId": "j1", "Tag": "Transcode", "State": "Success"}}),
        key({"JobsDetail": {"JobId": "j2", "Tag": "Transcode", "State": "Success"}}),
        key({"EventName": review, "JobsDetail": {"JobId": "s1", "Result": 0}}),
        key({"EventName": review, "JobsDetail": {"JobId": "s1", "Result": 1}}),
        key({"EventName": review, "JobsDetail": {"JobId": "s1", "Result": 1, "ForbidState": 1}}),
        key({"EventName": run, "WorkflowExecution": {"RunId": "r1", "State": "Failed"}}),
        key({"EventName": run, "WorkflowExecution": {"RunId": "r1", "State": "Success"}}),
    }
    assert len(keys) == 7


def test_a_job_without_an_id_is_keyed_by_its_content() -> None:
    def key(body: bytes) -> str:
        [event] = parse_callback(body)
        return event.idempotency_key

    first = key(b'{"JobsDetail": {"Tag": "Transcode", "State": "Success", "Zz": "1"}}')
    same = key(b'{"JobsDetail": {"State": "Success", "Zz": "1", "Tag": "Transcode"}}')
    other = key(b'{"JobsDetail": {"Tag": "Transcode", "State": "Success", "Zz": "2"}}')
    assert first == same != other
