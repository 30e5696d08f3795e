"""The vendor's three JSON mistakes are repaired by rule and marked; nothing else is guessed."""

from __future__ import annotations

import json

import pytest

from shared.callbacks.jsonrepair import MAX_REPAIRS, load_json
from shared.callbacks.operations import ImageOCROperation, PicProcessOperation, TranslationOperation
from shared.callbacks.parser import parse_callback
from shared.errors import ParseError
from tests.parser.bodies import CALLBACKS, parse_file, some


def test_valid_json_is_read_strictly_with_no_repair() -> None:
    value, repairs = load_json('{"a": [1, 2.5, "x", true, null]}')
    assert value == {"a": [1, 2.5, "x", True, None]}
    assert repairs == ()


def test_trailing_commas_before_closing_brackets_are_removed() -> None:
    value, repairs = load_json('{"a": [1, 2,],\n "b": {"c": 3,},\n}')
    assert value == {"a": [1, 2], "b": {"c": 3}}
    assert repairs == (
        "removed a trailing comma at line 1, column 12",
        "removed a trailing comma at line 2, column 14",
        "removed a trailing comma at line 2, column 16",
    )


def test_missing_comma_before_a_key_on_the_next_line_is_inserted() -> None:
    value, repairs = load_json('{"a": "x"\n "b": 2\n "c": {"d": true}\n "e": [1]}')
    assert value == {"a": "x", "b": 2, "c": {"d": True}, "e": [1]}
    assert repairs == (
        "inserted a missing comma at line 1, column 10",
        "inserted a missing comma at line 2, column 8",
        "inserted a missing comma at line 3, column 18",
    )


def test_over_escaped_quotes_become_escaped_quotes_inside_the_string() -> None:
    value, repairs = load_json('{"Etag": "\\\\"abc\\\\"", "n": 1}')
    assert value == {"Etag": '"abc"', "n": 1}
    assert [r.split(" at ")[0] for r in repairs] == [
        "made an over-escaped quote an escaped quote"
    ] * 2


def test_a_string_that_really_ends_in_a_backslash_is_left_alone() -> None:
    value, repairs = load_json('{"path": "C:\\\\", "n": 1}')
    assert value == {"path": "C:\\", "n": 1}
    assert repairs == ()


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1 "b": 2}',  # missing comma on the same line: not the vendor's mistake
        '{"a": [1 2]}',  # missing comma between array items
        '{"a": 1,, "b": 2}',
        "[,]",
        '{"a": tru}',
        "{'a': 1}",
        '{"a": 1} trailing',
        '{"a": "unterminated}',
        "",
    ],
)
def test_other_malformed_json_is_refused_with_a_position(text: str) -> None:
    with pytest.raises(ParseError) as raised:
        load_json(text)
    assert raised.value.reason.startswith("invalid JSON: ")
    assert (raised.value.location or "").startswith("line ")


def test_unbalanced_brackets_are_refused_naming_both_brackets() -> None:
    with pytest.raises(ParseError) as raised:
        parse_file(CALLBACKS / "unbalanced-brackets.json")
    assert "brackets do not balance: '}' at line 8, column 1" in raised.value.reason
    assert "closes '[' opened at line 3, column 17" in raised.value.reason
    assert raised.value.location == "line 8, column 1"


def test_repairs_stop_at_the_limit() -> None:
    text = "{" + ",\n".join(f'"k{i}": [{i},]' for i in range(MAX_REPAIRS + 1)) + "}"
    with pytest.raises(ParseError, match=f"still invalid after {MAX_REPAIRS} repairs"):
        load_json(text)


def test_a_key_repeated_in_one_object_keeps_every_value() -> None:
    value, _ = load_json('{"ObjectName": "a.jpg", "Bucket": "b", "ObjectName": "c.jpg"}')
    assert value == {"ObjectName": ["a.jpg", "c.jpg"], "Bucket": "b"}


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("repair-trailing-comma.json", "removed a trailing comma"),
        ("repair-missing-comma.json", "inserted a missing comma"),
        ("repair-over-escaped-quote.json", "made an over-escaped quote an escaped quote"),
    ],
)
def test_each_repaired_fixture_marks_its_events_with_the_rule_applied(name: str, rule: str) -> None:
    [event] = parse_file(CALLBACKS / name)
    assert event.repaired
    assert event.repairs
    assert all(r.startswith(rule + " at line ") for r in event.repairs)


def test_repaired_fixtures_read_the_values_the_vendor_meant() -> None:
    [trailing] = parse_file(CALLBACKS / "repair-trailing-comma.json")
    assert isinstance(trailing.operation, TranslationOperation)
    assert some(trailing.operation.translation).lang == "ko"
    [missing] = parse_file(CALLBACKS / "repair-missing-comma.json")
    assert isinstance(missing.operation, ImageOCROperation)
    [line] = some(missing.operation.detection).text_detections
    assert (line.confidence, line.detected_text) == (88, "Open 9 to 5")
    assert [(p.x, p.y) for p in line.polygon] == [(1, 2), (30, 2)]
    [quoted] = parse_file(CALLBACKS / "repair-over-escaped-quote.json")
    assert isinstance(quoted.operation, PicProcessOperation)
    original = some(quoted.operation.pic_process_result[0].original_info)
    assert original.etag == '"0123456789abcdef0123456789abcdef"'


def test_repair_is_deterministic() -> None:
    body = (CALLBACKS / "repair-missing-comma.json").read_bytes()
    first = parse_callback(body)
    second = parse_callback(body)
    assert first == second
    assert first[0].idempotency_key == second[0].idempotency_key


def test_a_repaired_body_reads_like_its_corrected_form() -> None:
    broken = (CALLBACKS / "repair-trailing-comma.json").read_text()
    fixed, _ = load_json(broken)
    [from_broken] = parse_callback(broken.encode())
    [from_fixed] = parse_callback(json.dumps(fixed).encode())
    assert from_broken.routing_key == from_fixed.routing_key
    assert from_broken.operation == from_fixed.operation
    assert from_broken.idempotency_key == from_fixed.idempotency_key
    assert (from_broken.repaired, from_fixed.repaired) == (True, False)
