"""Parsing is lossless: every value of a generated body, XML or JSON, is reachable from its
event, in a typed field or in the remainder of the model it belongs to, whatever extra fields
the sender adds at any level."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.callbacks.events import CallbackEvent
from shared.callbacks.parser import parse_callback
from shared.callbacks.xmlsafe import xml_to_value
from shared.errors import ParseError
from tests.parser.bodies import SEED_FILES, assert_reachable, to_json, to_xml

EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Names no model field has, so an extra never collides with a typed field.
EXTRA_NAME = st.from_regex(r"Zz[A-Z][a-z]{0,5}", fullmatch=True)
# Text XML 1.0 can carry: no control characters, surrogates or non-characters.
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn")) | st.sampled_from("<>&'\""),
    max_size=10,
)
LEAF = TEXT | st.integers(-(10**6), 10**6)


def _extra_value() -> st.SearchStrategy[Any]:
    # Lists hold leaves or objects, never lists: XML cannot nest repeats directly.
    return st.recursive(
        LEAF,
        lambda inner: (
            st.dictionaries(EXTRA_NAME, inner, min_size=1, max_size=3)
            | st.lists(
                LEAF | st.dictionaries(EXTRA_NAME, LEAF, min_size=1, max_size=2),
                min_size=2,
                max_size=3,
            )
        ),
        max_leaves=5,
    )


EXTRAS = st.dictionaries(EXTRA_NAME, _extra_value(), max_size=2)


@st.composite
def _with_extras(draw: st.DrawFn, fields: dict[str, Any]) -> dict[str, Any]:
    node = {key: value for key, value in fields.items() if value is not None}
    node.update(draw(EXTRAS))
    return node


def _number(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A number written as text or as a JSON value, or left blank."""
    return st.one_of(values, values.map(str), st.just(""))


INT = _number(st.integers(0, 10**9))
FLOAT = _number(st.integers(0, 10**7).map(lambda n: n / 1000))
BOOL = st.sampled_from([True, False, "true", "false"])
TIME = st.sampled_from(
    ["2023-11-25T08:47:39+0800", "2021-09-14 15:00:26+0800", "2022-08-03T18:45:50+08:00", "-"]
)


@st.composite
def _ocr(draw: st.DrawFn) -> dict[str, Any]:
    def point() -> st.SearchStrategy[dict[str, Any]]:
        return st.builds(dict, X=INT, Y=INT).flatmap(_with_extras)

    line = st.fixed_dictionaries(
        {
            "Confidence": INT,
            "DetectedText": TEXT,
            "Polygon": st.lists(point(), min_size=1, max_size=4),
            "ItemPolygon": st.builds(dict, X=INT, Y=INT, Width=INT, Height=INT).flatmap(
                _with_extras
            ),
        }
    ).flatmap(_with_extras)
    detection = draw(
        st.fixed_dictionaries(
            {
                "Angel": FLOAT,
                "Language": TEXT,
                "TextDetections": st.lists(line, min_size=1, max_size=3),
            }
        ).flatmap(_with_extras)
    )
    return {"Detection": detection, "TemplateId": draw(TEXT)}


@st.composite
def _transcode(draw: st.DrawFn) -> dict[str, Any]:
    video = st.fixed_dictionaries(
        {
            "Width": INT,
            "Height": INT,
            "Bitrate": FLOAT,
            "AvgFps": st.just("25/1"),
            "Dar": st.just("9:16"),
        }
    ).flatmap(_with_extras)
    audio = st.fixed_dictionaries(
        {"Bitrate": FLOAT, "CodecTag": st.just("0x6134706d"), "SampleRate": INT}
    ).flatmap(_with_extras)
    stream = st.fixed_dictionaries(
        {
            "Video": st.lists(video, min_size=1, max_size=2),
            "Audio": st.lists(audio, min_size=1, max_size=2),
        }
    ).flatmap(_with_extras)
    info = st.fixed_dictionaries(
        {"Format": st.builds(dict, Bitrate=FLOAT, Size=INT).flatmap(_with_extras), "Stream": stream}
    ).flatmap(_with_extras)
    md5 = st.builds(dict, Md5=TEXT, ObjectName=TEXT).flatmap(_with_extras)
    output_file = st.fixed_dictionaries(
        {
            "Bucket": TEXT,
            "ObjectName": st.lists(TEXT.filter(lambda t: t.strip() != ""), min_size=1, max_size=3),
            "Md5Info": st.lists(md5, min_size=1, max_size=2),
        }
    ).flatmap(_with_extras)
    step = st.fixed_dictionaries(
        {"State": st.sampled_from(["Success", "Failed"]), "IgnoreError": BOOL}
    ).flatmap(_with_extras)
    return {
        "MediaInfo": draw(info),
        "MediaResult": draw(st.builds(dict, OutputFile=output_file).flatmap(_with_extras)),
        "DigitalWatermark": draw(step),
        "UserData": draw(TEXT),
    }


@st.composite
def _pic_process(draw: st.DrawFn) -> dict[str, Any]:
    image = st.fixed_dictionaries(
        {"Width": INT, "Height": INT, "Format": TEXT, "Ave": st.just("0xc64847")}
    ).flatmap(_with_extras)
    result = st.fixed_dictionaries(
        {
            "ObjectName": TEXT,
            "OriginalInfo": st.builds(dict, Etag=TEXT, ImageInfo=image).flatmap(_with_extras),
            "ProcessResult": image,
        }
    ).flatmap(_with_extras)
    return {"PicProcessResult": draw(st.lists(result, min_size=1, max_size=2))}


@st.composite
def _inspect(draw: st.DrawFn) -> dict[str, Any]:
    processed = st.fixed_dictionaries(
        {"PicSize": INT, "Suspicious": BOOL, "SuspiciousType": TEXT}
    ).flatmap(_with_extras)
    result = st.fixed_dictionaries(
        {"State": st.sampled_from(["Success", "Failed"]), "ProcessResult": processed}
    ).flatmap(_with_extras)
    return {"ImageInspectResult": draw(st.lists(result, min_size=1, max_size=2))}


@st.composite
def _unknown_task(draw: st.DrawFn) -> dict[str, Any]:
    return {"ZzResult": draw(_extra_value())}


OPERATIONS = {
    "ImageOCR": _ocr,
    "Transcode": _transcode,
    "PicProcess": _pic_process,
    "ImageInspect": _inspect,
    "SpeechRecognition": _unknown_task,
}


@st.composite
def _job(draw: st.DrawFn) -> dict[str, Any]:
    tag = draw(st.sampled_from(sorted(OPERATIONS)))
    operation = draw(OPERATIONS[tag]())
    operation.update(draw(st.fixed_dictionaries({"JobLevel": INT})))
    operation = draw(_with_extras(operation))
    header = st.builds(dict, Key=TEXT, Value=TEXT).flatmap(_with_extras)
    source = draw(
        st.fixed_dictionaries(
            {
                "BucketId": TEXT,
                "Object": TEXT,
                "CosHeaders": st.lists(header, min_size=1, max_size=3),
            }
        ).flatmap(_with_extras)
    )
    job = {
        "Code": draw(st.sampled_from(["Success", "InternalError"])),
        "JobId": draw(st.from_regex(r"j[0-9a-f]{8}", fullmatch=True)),
        "Tag": tag,
        "State": draw(st.sampled_from(["Success", "Failed"])),
        "CreationTime": draw(TIME),
        "Input": source,
        "Operation": operation,
        "Progress": draw(INT),
    }
    if draw(st.booleans()):
        job["Workflow"] = draw(st.builds(dict, RunId=TEXT, WorkflowName=TEXT).flatmap(_with_extras))
    return draw(_with_extras(job))


@st.composite
def task_bodies(draw: st.DrawFn) -> dict[str, Any]:
    jobs = draw(st.lists(_job(), min_size=1, max_size=3))
    tree: dict[str, Any] = {"EventName": "TaskFinish", "JobsDetail": jobs}
    return draw(_with_extras(tree))


def _jobs(tree: dict[str, Any]) -> list[dict[str, Any]]:
    jobs = tree["JobsDetail"]
    return jobs if isinstance(jobs, list) else [jobs]


def _check_task_events(tree: dict[str, Any], events: list[CallbackEvent]) -> None:
    jobs = _jobs(tree)
    assert len(events) == len(jobs)
    for job, event in zip(jobs, events, strict=True):
        assert_reachable(job, event.model_dump(by_alias=True))
        assert event.routing_key == f"TaskFinish.{job['Tag']}.{job['State']}"
    for key, value in tree.items():
        if key not in ("EventName", "JobsDetail"):
            for event in events:
                assert_reachable(value, event.response_extra[key], key)


@EXAMPLES
@given(tree=task_bodies(), single=st.booleans(), wrap=st.booleans(), prolog=st.booleans())
def test_task_bodies_lose_no_value_in_xml_or_json(
    tree: dict[str, Any], single: bool, wrap: bool, prolog: bool
) -> None:
    if single:
        tree["JobsDetail"] = tree["JobsDetail"][0]
    from_xml = parse_callback(to_xml(tree, prolog=prolog))
    from_json = parse_callback(to_json(tree, wrap=wrap))
    _check_task_events(tree, from_xml)
    _check_task_events(tree, from_json)
    for xml_event, json_event in zip(from_xml, from_json, strict=True):
        assert xml_event.routing_key == json_event.routing_key
        assert xml_event.idempotency_key == json_event.idempotency_key
        assert CallbackEvent.model_validate_json(xml_event.model_dump_json()) == xml_event
        assert CallbackEvent.model_validate_json(json_event.model_dump_json()) == json_event


@st.composite
def workflow_bodies(draw: st.DrawFn) -> dict[str, Any]:
    task = st.fixed_dictionaries(
        {
            "Type": st.sampled_from(["Transcode", "Snapshot"]),
            "JobId": TEXT,
            "State": st.sampled_from(["Success", "Failed"]),
            "EndTime": TIME,
        }
    ).flatmap(_with_extras)
    header = st.builds(dict, Key=TEXT, Value=TEXT).flatmap(_with_extras)
    run = st.fixed_dictionaries(
        {
            "WorkflowName": TEXT,
            "RunId": st.from_regex(r"i[0-9a-f]{8}", fullmatch=True),
            "State": st.sampled_from(["Success", "Failed"]),
            "CreateTime": TIME,
            "CosHeaders": st.lists(header, min_size=1, max_size=2),
            "Tasks": st.lists(task, min_size=1, max_size=3),
        }
    ).flatmap(_with_extras)
    return draw(_with_extras({"EventName": "WorkflowFinish", "WorkflowExecution": draw(run)}))


@EXAMPLES
@given(tree=workflow_bodies())
def test_workflow_bodies_lose_no_value_in_xml_or_json(tree: dict[str, Any]) -> None:
    for body in (to_xml(tree), to_json(tree)):
        [event] = parse_callback(body)
        assert_reachable(
            tree["WorkflowExecution"], event.model_dump(by_alias=True)["WorkflowExecution"]
        )
        assert event.routing_key.startswith("WorkflowFinish.")
        assert event.routing_key.endswith("." + tree["WorkflowExecution"]["State"])


_HIT = st.fixed_dictionaries({"HitFlag": st.sampled_from([0, 1]), "Score": INT, "Label": TEXT})


@st.composite
def moderation_bodies(draw: st.DrawFn) -> dict[str, Any]:
    section = st.fixed_dictionaries(
        {
            "Url": TEXT,
            "Text": TEXT,
            "Label": TEXT,
            "Result": st.sampled_from([0, 1, 2]),
            "PornInfo": _HIT,
        }
    ).flatmap(_with_extras)
    job = st.fixed_dictionaries(
        {
            "JobId": st.from_regex(r"s[0-9a-f]{8}", fullmatch=True),
            "State": st.just("Success"),
            "CreationTime": TIME,
            "Object": TEXT,
            "BucketId": TEXT,
            "Label": TEXT,
            "Result": st.sampled_from([0, 1, 2]),
            "PornInfo": _HIT.flatmap(_with_extras),
            "Section": st.lists(section, min_size=1, max_size=2),
            "CosHeaders": st.dictionaries(
                st.from_regex(r"x-cos-meta-[a-z]{1,5}", fullmatch=True),
                TEXT,
                min_size=1,
                max_size=2,
            ),
        }
    ).flatmap(_with_extras)
    return {
        "EventName": draw(st.sampled_from(["ReviewAudio", "ReviewText"])),
        "JobsDetail": draw(job),
    }


_INPUT_KEYS = {"BucketId", "Object", "Url", "Region", "CosHeaders"}
_EVENT_KEYS = {"JobId", "State", "Code", "Message", "CreationTime"}


@EXAMPLES
@given(tree=moderation_bodies())
def test_moderation_bodies_lose_no_value(tree: dict[str, Any]) -> None:
    job = tree["JobsDetail"]
    [event] = parse_callback(to_json(tree))
    dumped = event.model_dump(by_alias=True)
    headers = {h["Key"]: h["Value"] for h in dumped["Input"]["CosHeaders"]}
    for key, value in job.items():
        if key == "CosHeaders":
            assert headers == value
        elif key in _INPUT_KEYS:
            assert_reachable(value, dumped["Input"][key], key)
        elif key in _EVENT_KEYS:
            assert_reachable(value, dumped[key], key)
        else:
            assert_reachable(value, dumped["Operation"][key], key)
    assert event.routing_key.split(".")[2] == {0: "Pass", 1: "Block", 2: "Review"}[job["Result"]]


@EXAMPLES
@given(tree=task_bodies())
def test_both_xml_readers_give_the_same_values(tree: dict[str, Any]) -> None:
    text = to_xml(tree).decode()
    assert xml_to_value(text) == xml_to_value(text, fast=False)


_XML_EXTRAS = st.lists(
    st.sampled_from(
        [
            '<Zz a="1">text</Zz>',
            '<Zz b="2"/>',
            "<Zz>mixed <Y>1</Y> tail</Zz>",
            "<Zz><![CDATA[<not markup> & more]]></Zz>",
            "<!-- a comment --><Zz>after</Zz>",
            "<Zz>a &amp; b &#x4e2d;</Zz>",
            "<?pi data?><Zz>x</Zz>",
        ]
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(parts=_XML_EXTRAS)
def test_attributes_mixed_text_cdata_and_comments_read_alike_on_both_paths(
    parts: list[str],
) -> None:
    text = "<Response><JobsDetail><JobId>j1</JobId>" + "".join(parts) + "</JobsDetail></Response>"
    assert xml_to_value(text) == xml_to_value(text, fast=False)
    [event] = parse_callback(text.encode())
    assert event.job_id == "j1"
    assert "Zz" in (event.model_extra or {})


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_arbitrary_or_mangled_bodies_give_events_or_a_parse_error_nothing_else(
    data: st.DataObject,
) -> None:
    seed = data.draw(st.sampled_from(SEED_FILES))
    body = bytearray(seed.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            body[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del body[at : at + data.draw(st.integers(1, 40))]
        else:
            body[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    if data.draw(st.booleans()):
        body = bytearray(data.draw(st.binary(max_size=64)))
    try:
        events = parse_callback(bytes(body))
    except ParseError as error:
        reasons = [error.reason]
        events = []
    else:
        reasons = []
    assert all(reasons)
    for event in events:
        assert len(event.routing_key.split(".")) == 3


def test_the_reachability_check_refuses_a_flipped_or_misspelled_value() -> None:
    """The check above can fail: a boolean flipped on the way, in either spelling, is lost."""
    assert_reachable({"Flag": True}, {"Flag": "true"})
    assert_reachable({"Flag": False}, {"Flag": False})
    assert_reachable({"Flag": "true"}, {"Flag": True})
    for expected, actual in [
        (True, "false"),
        (False, "true"),
        (True, False),
        ("false", True),
        (True, "yes"),
        ("7", "8"),
    ]:
        try:
            assert_reachable({"Flag": expected}, {"Flag": actual})
        except AssertionError:
            continue
        raise AssertionError(f"{expected!r} became {actual!r} and the check let it pass")
