"""Hostile bodies are refused fast with a ParseError: no expansion, no fetch, bounded work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from shared.callbacks.parser import parse_callback
from shared.callbacks.xmlsafe import xml_to_value
from shared.errors import ParseError

JOB = b"<JobsDetail><JobId>j1</JobId><State>Success</State></JobsDetail>"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Response><JobsDetail><JobId>&lol9;</JobId></JobsDetail></Response>"""


def _refused(body: bytes, **kwargs: int) -> ParseError:
    started = time.perf_counter()
    with pytest.raises(ParseError) as raised:
        parse_callback(body, **kwargs)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 1.0, "refusing took too long"
    return raised.value


class _Counting(BaseHTTPRequestHandler):
    requests: list[str] = []  # noqa: RUF012 - shared by the server's handler instances

    def do_GET(self) -> None:
        self.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<!ENTITY leak 'fetched'>")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    _Counting.requests = []
    server = HTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", _Counting.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_document_type_declaration_is_refused() -> None:
    body = b'<?xml version="1.0"?><!DOCTYPE Response [<!ELEMENT Response ANY>]><Response>'
    error = _refused(body + JOB + b"</Response>")
    assert "DTD" in error.reason
    assert (error.location or "").startswith("line 1, column ")


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    error = _refused(BILLION_LAUGHS)
    assert "DTD" in error.reason


def test_external_file_entity_is_refused_and_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
        "<Response><JobsDetail><JobId>&x;</JobId></JobsDetail></Response>"
    ).encode()
    error = _refused(body)
    assert "TOP-SECRET" not in str(error)


def test_external_http_entities_are_refused_and_never_fetched(
    http_server: tuple[str, list[str]],
) -> None:
    base, requests = http_server
    general = (
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "{base}/general">]>'
        "<Response><JobsDetail><JobId>&x;</JobId></JobsDetail></Response>"
    )
    parameter = (
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{base}/parameter"> %p;]>'
        "<Response><JobsDetail><JobId>&leak;</JobId></JobsDetail></Response>"
    )
    external_dtd = f'<!DOCTYPE Response SYSTEM "{base}/dtd"><Response>{JOB.decode()}</Response>'
    for body in (general, parameter, external_dtd):
        _refused(body.encode())
    time.sleep(0.05)
    assert requests == []


def test_an_undeclared_entity_is_refused() -> None:
    error = _refused(b"<Response><JobsDetail><JobId>&x;</JobId></JobsDetail></Response>")
    assert "undefined entity" in error.reason
    assert error.location == "line 1, column 30"


@pytest.mark.parametrize("depth", [65, 100_000])
def test_xml_nested_deeper_than_the_limit_is_refused(depth: int) -> None:
    body = b"<Response>" + b"<a>" * depth + b"x" + b"</a>" * depth + b"</Response>"
    error = _refused(body)
    assert "deeper than 64" in error.reason


def test_xml_at_the_depth_limit_is_accepted() -> None:
    inner = b"<a>" * 61 + b"x" + b"</a>" * 61
    [event] = parse_callback(
        b"<Response><JobsDetail><Deep>" + inner + b"</Deep></JobsDetail></Response>"
    )
    assert event.model_extra is not None
    assert "Deep" in event.model_extra


@pytest.mark.parametrize("depth", [65, 100_000])
def test_json_nested_deeper_than_the_limit_is_refused(depth: int) -> None:
    body = b'{"JobsDetail": {"JobId": "j1", "Deep": ' + b"[" * depth + b"]" * depth + b"}}"
    error = _refused(body)
    assert "deeper than 64" in error.reason


def test_too_many_tags_are_refused() -> None:
    body = b"<Response>" + b"<a/>" * 600_000 + b"</Response>"
    error = _refused(body, max_bytes=10_000_000)
    assert "over the limit of 500000" in error.reason


def test_a_body_over_the_size_limit_is_refused_without_reading_it() -> None:
    body = b"<Response>" + b" " * 2_000_000 + JOB + b"</Response>"
    error = _refused(body, max_bytes=1_000_000)
    assert "over the limit of 1000000 bytes" in error.reason
    [event] = parse_callback(body, max_bytes=3_000_000)
    assert event.job_id == "j1"


def test_invalid_utf8_is_refused_with_its_place() -> None:
    error = _refused(b"<Response>\n<JobsDetail><JobId>\xff\xfe</JobId></JobsDetail></Response>")
    assert "not valid UTF-8" in error.reason
    assert error.location == "line 2, column 20 (byte 30)"


@pytest.mark.parametrize(
    "body",
    [
        b"<Response><JobsDetail><JobId>j\x001</JobId></JobsDetail></Response>",
        b'{"JobsDetail": {"JobId": "j\x001"}}',
        b'{"JobsDetail": {"JobId": "j1"}}\x00',
    ],
)
def test_nul_characters_are_refused(body: bytes) -> None:
    error = _refused(body)
    assert "NUL" in error.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"JobsDetail": {"Progress": ' + b"9" * 100_000 + b"}}", "too long"),
        (b'{"JobsDetail": {"Extra": ' + b"9" * 41 + b"}}", "too long"),
        (b'{"JobsDetail": {"Progress": 1e999}}', "out of range"),
        (b'{"JobsDetail": {"Progress": -Infinity}}', "not a JSON value"),
        (b'{"JobsDetail": {"Progress": NaN}}', "not a JSON value"),
        (
            b"<Response><JobsDetail><Progress>"
            + b"9" * 100_000
            + b"</Progress></JobsDetail></Response>",
            "integer",
        ),
        (
            b"<Response><JobsDetail><Progress>"
            + b"9" * 20
            + b"</Progress></JobsDetail></Response>",
            "less than or equal",
        ),
        (
            b"<Response><JobsDetail><Tag>Transcode</Tag><Operation><MediaInfo><Format>"
            b"<Bitrate>1e999</Bitrate></Format></MediaInfo></Operation></JobsDetail></Response>",
            "finite",
        ),
    ],
)
def test_huge_numbers_are_refused(body: bytes, reason: str) -> None:
    error = _refused(body)
    assert reason in error.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b" \n\t", "empty"),
        (b"JobsDetail=1", "neither XML nor JSON"),
        (b"[1, 2]", "top level is a list"),
        (b'"TaskFinish"', "neither XML nor JSON"),
        (b"<Response>just text</Response>", "top level is a string"),
        (b'{"EventName": "TaskFinish"}', "not a callback"),
        (b'{"EventName": 7, "JobsDetail": {}}', "EventName is a number"),
        (b'{"JobsDetail": []}', "holds no job"),
        (b"<Response><JobsDetail/></Response>", "holds no job"),
        (b'{"JobsDetail": ["j1"]}', "not an object of fields"),
        (b"<Response><JobsDetail><JobId>j1</JobId></Response>", "mismatched tag"),
    ],
)
def test_bodies_that_are_not_callbacks_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    error = _refused(body)
    assert reason in error.reason


def test_one_bad_job_refuses_the_whole_body_never_a_part() -> None:
    body = b'{"JobsDetail": [{"JobId": "good"}, {"JobId": "bad", "Progress": "lots"}]}'
    error = _refused(body)
    assert error.location == "JobsDetail[1].Progress"


@pytest.mark.parametrize(
    "field",
    [
        '"RoutingKey": "Forged.Route.Success"',
        '"routing_key": "x"',
        '"IsTest": true',
        '"JobIndex": 3',
    ],
)
def test_a_body_cannot_set_what_the_event_sets_itself(field: str) -> None:
    body = f'{{"EventName": "TaskFinish", "JobsDetail": {{"JobId": "j1", {field}}}}}'.encode()
    error = _refused(body)
    assert "that the event sets itself" in error.reason


def test_a_job_may_repeat_the_event_name_it_belongs_to() -> None:
    body = b'{"EventName": "TaskFinish", "JobsDetail": {"JobId": "j1", "EventName": "TaskFinish"}}'
    [event] = parse_callback(body)
    assert event.event_name == "TaskFinish"


def test_expat_path_refuses_what_the_fast_path_cannot_read() -> None:
    with pytest.raises(ParseError) as raised:
        xml_to_value("<Response><a>1</a><b></Response>")
    assert raised.value.reason == "invalid XML: mismatched tag"
    assert (raised.value.location or "").startswith("line 1, column ")
