"""From a callback body to events: :func:`parse_callback`.

The bytes decide the format (``<`` XML, ``{`` JSON); the content type is not trusted over
them. The shapes accepted:

- ``TaskFinish``: ``{EventName, JobsDetail}`` with ``JobsDetail`` one job or a list of jobs,
  in XML or JSON, with or without the outer ``Response``; the older body without
  ``EventName`` is a ``TaskFinish``. One event per job.
- ``WorkflowFinish``: ``{EventName, WorkflowExecution}``. One event per run.
- Moderation, Detail style (header ``X-Ci-Content-Version: Detail``):
  ``{EventName: Review*, JobsDetail}``. One event per job.
- Moderation, Simple style: ``{code, message, data: {event, ...}}``, including the
  console's test POST. One event.

Whatever goes wrong, the only exception is :class:`~shared.errors.ParseError`, and no
events are returned: never a part of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_pascal

from shared.callbacks.events import CallbackEvent, Envelope
from shared.callbacks.jsonrepair import load_json
from shared.callbacks.moderation import MODERATION_EVENTS
from shared.callbacks.routing import MISSING
from shared.callbacks.xmlsafe import xml_to_value
from shared.errors import ParseError

__all__ = ["DEFAULT_MAX_BYTES", "TEST_POST_MESSAGE", "parse_callback"]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: The message of the test POST the console sends when a moderation callback URL is set.
TEST_POST_MESSAGE = "Test request when setting callback url"

_LEADING_BLANK = re.compile(r"\s*")

# Fields of a moderation job (Detail style) that stay on the event; the ones that say
# where the object is go to ``input``; everything else is the moderation result.
_MODERATION_EVENT_KEYS = (
    "JobId",
    "State",
    "Code",
    "Message",
    "CreationTime",
    "StartTime",
    "EndTime",
    "QueueId",
    "Tag",
    "SubTag",
    "Progress",
    "Workflow",
)
_MODERATION_INPUT_KEYS = ("BucketId", "Object", "Url", "Region", "CosHeaders")
_SIMPLE_INPUT_KEYS = ("bucket_id", "object", "url", "region", "cos_headers")

# The event's own fields, which only the parser and the event set: by alias and by name.
_SYNTHETIC = (
    "event_name",
    "body_format",
    "content_version",
    "is_test",
    "job_index",
    "job_count",
    "repaired",
    "repairs",
    "response_extra",
    "routing_key",
    "idempotency_key",
    "envelope",
)
_RESERVED = frozenset(_SYNTHETIC) | {to_pascal(name) for name in _SYNTHETIC}


def parse_callback(
    body: bytes,
    *,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    envelope: Envelope | None = None,
) -> list[CallbackEvent]:
    """Parse one callback body into its events (one per job), or raise :class:`ParseError`.

    ``content_type`` and ``headers`` are what the HTTP request said, when known (taken
    from ``envelope`` when not given); every event carries ``envelope``.
    """
    try:
        return _parse(body, content_type, headers, max_bytes, envelope)
    except ParseError:
        raise
    except Exception as exc:  # a bug or an exhausted resource: still a ParseError, never a crash
        raise ParseError(f"cannot parse the body: {type(exc).__name__}: {exc}") from exc


def _parse(
    body: bytes,
    content_type: str | None,
    headers: Mapping[str, str] | None,
    max_bytes: int,
    envelope: Envelope | None,
) -> list[CallbackEvent]:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise ParseError(f"the body must be bytes, not {type(body).__name__}")
    body = bytes(body)
    if len(body) > max_bytes:
        raise ParseError(f"the body is {len(body)} bytes, over the limit of {max_bytes} bytes")
    if envelope is not None:
        headers = headers if headers is not None else envelope.headers
        content_type = content_type if content_type is not None else envelope.content_type
    text = _decode(body)
    leading = _LEADING_BLANK.match(text)
    start = leading.end() if leading else 0
    if start == len(text):
        raise ParseError("the body is empty")
    nul = text.find("\x00")
    if nul >= 0:
        raise ParseError("the body contains a NUL character", _where(text, nul))
    first = text[start]
    repairs: tuple[str, ...] = ()
    if first == "<":
        body_format = "xml"
        _, top = xml_to_value(text)
    elif first in "{[":
        body_format = "json"
        top, repairs = load_json(text)
    else:
        declared = f" (declared {content_type})" if content_type else ""
        raise ParseError(
            f"the body is neither XML nor JSON{declared}: it starts with {first!r}",
            _where(text, start),
        )
    if not isinstance(top, dict):
        raise ParseError(f"the body's top level is a {_kind(top)}, not an object of fields")
    shared = {
        "BodyFormat": body_format,
        "Repaired": bool(repairs),
        "Repairs": list(repairs),
        "Envelope": envelope,
    }
    version = _header(headers, "X-Ci-Content-Version")
    top, outer = _unwrap_response(top)
    prepared = _shape(top, outer, version, shared)
    count = len(prepared)
    events: list[CallbackEvent] = []
    for index, (where, fields) in enumerate(prepared):
        fields["JobIndex"] = index
        fields["JobCount"] = count
        try:
            events.append(CallbackEvent.model_validate(fields))
        except ValidationError as err:
            raise _validation_error(err, where, fields) from None
    return events


def _decode(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        line = body.count(b"\n", 0, err.start) + 1
        column = err.start - (body.rfind(b"\n", 0, err.start) + 1) + 1
        raise ParseError(
            f"the body is not valid UTF-8: {err.reason} (byte 0x{body[err.start]:02x})",
            f"line {line}, column {column} (byte {err.start})",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


# -- shapes -----------------------------------------------------------------------------


def _unwrap_response(top: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"Response": {...}}`` (JSON) to its content, and the other top-level fields."""
    inner = top.get("Response")
    if isinstance(inner, dict) and not _is_callback(top):
        return inner, {key: value for key, value in top.items() if key != "Response"}
    return top, {}


def _is_callback(top: dict[str, Any]) -> bool:
    return any(key in top for key in ("EventName", "JobsDetail", "WorkflowExecution", "data"))


class _Shaping:
    """What every event of one body gets besides its own fields."""

    __slots__ = ("event_name", "extra", "own", "shared", "version")

    def __init__(
        self, event_name: str, version: str | None, shared: dict[str, Any], extra: dict[str, Any]
    ) -> None:
        self.event_name = event_name
        self.version = version
        self.shared = shared
        self.extra = extra
        self.own: dict[str, Any] = {
            "EventName": event_name,
            "ContentVersion": version,
            "ResponseExtra": extra,
            "RoutingKey": "",  # derived by the event from its fields
            "IdempotencyKey": "",
            **shared,
        }

    def finish(
        self, fields: dict[str, Any], where: str, *, is_test: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """Add what the event model sets itself. A body cannot set it: a field of the body
        named so (by alias or by name) is refused unless it says the same."""
        own = self.own
        clash = fields.keys() & _RESERVED
        for key in clash:
            if key not in own or fields[key] != own[key]:
                raise ParseError(f"{where} has a field {key} that the event sets itself", where)
        fields.update(own)
        fields["IsTest"] = is_test
        return where, fields


def _shape(
    top: dict[str, Any], outer: dict[str, Any], version: str | None, shared: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    data = top.get("data")
    if isinstance(data, dict) and "event" in data:
        return [_simple_moderation(top, data, version=version, shared=shared, outer=outer)]
    event_name = _event_name(top)
    if "WorkflowExecution" in top:
        how = _Shaping(
            event_name or "WorkflowFinish",
            version,
            shared,
            _extra(top, ("EventName", "WorkflowExecution"), outer),
        )
        return [_workflow(run, where, how) for where, run in _entries(top, "WorkflowExecution")]
    if "JobsDetail" in top:
        name = event_name or "TaskFinish"
        extra = _extra(top, ("EventName", "JobsDetail"), outer)
        jobs = _entries(top, "JobsDetail")
        if name in MODERATION_EVENTS:
            how = _Shaping(name, version or "Detail", shared, extra)
            return [_detail_moderation(job, where, how) for where, job in jobs]
        how = _Shaping(name, version, shared, extra)
        return [_task(job, where, how) for where, job in jobs]
    keys = ", ".join(sorted(top)[:8]) or "none"
    raise ParseError(
        f"not a callback: no JobsDetail, WorkflowExecution or data.event (top-level fields: {keys})"
    )


def _event_name(top: dict[str, Any]) -> str | None:
    name = top.get("EventName")
    if name is None:
        return None
    if not isinstance(name, str):
        raise ParseError(f"EventName is a {_kind(name)}, not a name", "EventName")
    return name.strip() or None


def _entries(top: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    value = top[key]
    items = value if isinstance(value, list) else [value]
    if not items or all(_blank(item) for item in items):
        raise ParseError(f"{key} holds no job", key)
    entries: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if isinstance(value, list) else key
        if not isinstance(item, dict):
            raise ParseError(f"{where} is a {_kind(item)}, not an object of fields", where)
        entries.append((where, item))
    return entries


def _extra(top: dict[str, Any], known: tuple[str, ...], outer: dict[str, Any]) -> dict[str, Any]:
    extra = {key: value for key, value in top.items() if key not in known}
    extra.update(outer)
    return extra


def _task(job: dict[str, Any], where: str, how: _Shaping) -> tuple[str, dict[str, Any]]:
    fields = dict(job)
    operation = fields.get("Operation")
    if type(operation) is dict:
        tag = fields.get("Tag")
        kind = tag.strip() if type(tag) is str and tag.strip() else MISSING
        fields["Operation"] = _with(operation, "Kind", kind, f"{where}.Operation")
    return how.finish(fields, where)


def _workflow(run: dict[str, Any], where: str, how: _Shaping) -> tuple[str, dict[str, Any]]:
    fields: dict[str, Any] = {
        "WorkflowExecution": run,
        "State": run.get("State"),
        "CreationTime": run.get("CreateTime"),
        "Workflow": {k: run[k] for k in ("RunId", "WorkflowId", "WorkflowName") if k in run},
        "Input": {k: run[k] for k in ("BucketId", "Object", "CosHeaders") if k in run},
    }
    return how.finish(fields, where)


def _detail_moderation(
    job: dict[str, Any], where: str, how: _Shaping
) -> tuple[str, dict[str, Any]]:
    fields = {key: job[key] for key in _MODERATION_EVENT_KEYS if key in job}
    moved: tuple[str, ...]
    if "Input" in job:
        moved = ("Input",)
        fields["Input"] = job["Input"]
    else:
        moved = _MODERATION_INPUT_KEYS
        fields["Input"] = {key: job[key] for key in moved if key in job}
    result = {
        key: value
        for key, value in job.items()
        if key not in _MODERATION_EVENT_KEYS and key not in moved
    }
    fields["Operation"] = _with(result, "Kind", how.event_name, f"{where}.Operation")
    return how.finish(fields, where, is_test=_is_test_message(job.get("Message")))


def _simple_moderation(
    top: dict[str, Any],
    data: dict[str, Any],
    *,
    version: str | None,
    shared: dict[str, Any],
    outer: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    event = data.get("event")
    if not isinstance(event, str) or not event.strip():
        raise ParseError(f"data.event is a {_kind(event)}, not an event name", "data.event")
    event_name = event.strip()
    result = {
        key: value
        for key, value in data.items()
        if key != "event" and key not in _SIMPLE_INPUT_KEYS
    }
    if "forbidden_status" in result and "forbid_state" not in result:
        result["forbid_state"] = result.pop("forbidden_status")
    fields: dict[str, Any] = {
        "Code": top.get("code"),
        "Message": top.get("message"),
        "Input": {key: data[key] for key in _SIMPLE_INPUT_KEYS if key in data},
        "Operation": _with(result, "Kind", event_name, "data"),
    }
    extra = _extra(top, ("code", "message", "data"), outer)
    how = _Shaping(event_name, version or "Simple", shared, extra)
    return how.finish(fields, "data", is_test=_is_test_message(top.get("message")))


def _with(obj: dict[str, Any], key: str, value: str, where: str) -> dict[str, Any]:
    if key in obj or key.lower() in obj:
        raise ParseError(f"{where} has a field {key} that the event sets itself", where)
    copy = dict(obj)
    copy[key] = value
    return copy


def _is_test_message(message: Any) -> bool:
    return isinstance(message, str) and message.strip().lower() == TEST_POST_MESSAGE.lower()


# -- helpers ----------------------------------------------------------------------------


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return str(value).strip() or None
    return None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _kind(value: Any) -> str:
    return {
        dict: "object",
        list: "list",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _validation_error(err: ValidationError, where: str, fields: dict[str, Any]) -> ParseError:
    """The most specific of pydantic's errors, located by the body's own field names.

    Union types report one error per alternative; the one that got deepest into the body
    is the one that names the real problem.
    """
    best: tuple[int, str, str] | None = None
    for error in err.errors(include_url=False):
        depth, path = _body_path(error["loc"], fields)
        shown = repr(error.get("input"))
        if len(shown) > 80:
            shown = shown[:77] + "..."
        if best is None or depth > best[0]:
            best = (depth, f"{error['msg']}: {shown}", path)
    assert best is not None  # a ValidationError has at least one error
    _, reason, path = best
    return ParseError(reason, where + path)


def _body_path(loc: tuple[int | str, ...], fields: dict[str, Any]) -> tuple[int, str]:
    """Follow ``loc`` through the body's values, skipping pydantic's own labels."""
    node: Any = fields
    path = ""
    depth = 0
    for part in loc:
        if type(node) is dict and part in node:
            node = node[part]
            path += f".{part}"
            depth += 1
        elif type(node) is list and type(part) is int and 0 <= part < len(node):
            node = node[part]
            path += f"[{part}]"
            depth += 1
    return depth, path
