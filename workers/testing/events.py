"""Events for tests: through the real parser, as the router would publish them.

:func:`make_event` writes the callback the sender would send for a job of any task type in
any state, with the results such a job reports (the files written, the input's media info,
the text detected, ...), and parses it: a handler's success path runs on it as on a real
callback. The values are the kit's own; the shapes are the vendor's.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.callbacks.events import CallbackEvent, Envelope
from shared.callbacks.operations import MEDIA_TAGS
from shared.callbacks.parser import parse_callback

__all__ = ["make_event", "parse_body"]

_requests = itertools.count(1)

BUCKET = "examplebucket-1250000000"
REGION = "ap-chongqing"
#: What each media task type writes: (file extension, how many files).
_MEDIA_OUTPUTS: dict[str, tuple[str, int]] = {
    "Transcode": ("mp4", 1),
    "Snapshot": ("jpg", 3),
    "Animation": ("gif", 1),
    "Concat": ("mp4", 1),
    "Segment": ("ts", 3),
    "SmartCover": ("jpg", 3),
    "VideoMontage": ("mp4", 1),
    "VoiceSeparate": ("mp3", 2),
    "SDRtoHDR": ("mp4", 1),
    "SuperResolution": ("mp4", 1),
    "VideoProcess": ("mp4", 1),
    "StreamExtract": ("mp4", 2),
    "Tts": ("mp3", 1),
    "NoiseReduction": ("mp3", 1),
    "DigitalWatermark": ("mp4", 1),
    "QualityEstimate": ("", 0),
    "MediaInfo": ("", 0),
}


def parse_body(body: bytes, *, content_type: str | None = None) -> list[CallbackEvent]:
    """The events the router makes of ``body``, with the envelope it would give them.

    Raises :class:`~shared.errors.ParseError` for a body the router would park as unparsed.
    """
    envelope = Envelope(
        request_id=f"test-{next(_requests)}",
        received_at=datetime.now(UTC),
        content_type=content_type,
        raw_body=body,
    )
    return parse_callback(body, content_type=content_type, envelope=envelope)


def make_event(
    tag: str = "Transcode",
    state: str = "Success",
    *,
    code: str | None = None,
    message: str | None = None,
    job_id: str | None = None,
    operation: Mapping[str, Any] | None = None,
    input: Mapping[str, Any] | None = None,
    **job: Any,
) -> CallbackEvent:
    """A valid task event (``TaskFinish.<tag>.<state>``) for any task type and state.

    It is built as the vendor would send it (a JSON callback, the vendor's key names) and
    parsed by the real parser, so it is what a consumer receives. A successful job reports
    what its task type produces: a media job the input's ``MediaInfo`` and the files it wrote
    (``MediaResult.OutputFile``: a Snapshot writes three images), ``ImageOCR`` its text
    detections, ``PicProcess`` the image before and after, ``ImageInspect`` its verdict,
    ``Translation`` and ``ExtractDigitalWatermark`` theirs; a failed job reports its template
    and output location only. ``code`` defaults to ``Success`` for a successful state and
    ``InternalError`` otherwise; ``job_id`` to a new unique id (so two events differ, and their
    idempotency keys too). ``operation`` and ``input`` replace the vendor's ``Operation`` and
    ``Input`` objects (``{"MediaResult": ...}``); any other keyword is another key of the job
    (``QueueId="p1"``).
    """
    now = datetime.now(UTC).replace(microsecond=0)
    job_id = job_id or "j" + uuid.uuid4().hex
    succeeded = state == "Success"
    job_input = dict(input) if input is not None else _input(tag)
    detail: dict[str, Any] = {
        "Code": code if code is not None else ("Success" if succeeded else "InternalError"),
        "Message": message if message is not None else ("" if succeeded else "failed"),
        "JobId": job_id,
        "State": state,
        "Tag": tag,
        "QueueId": "p" + "0" * 32,
        "CreationTime": (now - timedelta(seconds=2)).isoformat(),
        "StartTime": (now - timedelta(seconds=1)).isoformat(),
        "EndTime": now.isoformat(),
        "Input": job_input,
        "Operation": dict(operation)
        if operation is not None
        else _operation(tag, succeeded, job_id, str(job_input.get("Object", "input/example"))),
        **job,
    }
    body = json.dumps({"EventName": "TaskFinish", "JobsDetail": [detail]}).encode()
    [event] = parse_body(body, content_type="application/json")
    return event


# -- what each task type reports ----------------------------------------------------------


def _input(tag: str) -> dict[str, Any]:
    name = "holiday.jpg" if tag in _IMAGE_TAGS else "lecture.docx" if tag == "Translation" else ""
    return {"BucketId": BUCKET, "Object": f"input/{name or 'holiday.mp4'}", "Region": REGION}


def _operation(tag: str, succeeded: bool, job_id: str, source: str) -> dict[str, Any]:
    """The ``Operation`` of a job of ``tag``: what it was told, and what it produced."""
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    told: dict[str, Any] = {
        "TemplateId": "t0" + uuid.uuid5(uuid.NAMESPACE_DNS, tag).hex[:30],
        "TemplateName": f"{tag.lower()}-default",
        "UserData": f"order-{job_id[-6:]}",
    }
    results = _RESULTS.get(tag, _media_results if tag in MEDIA_TAGS else _no_results)
    if tag in MEDIA_TAGS or tag not in _RESULTS:
        told["Output"] = {"Bucket": BUCKET, "Region": REGION, "Object": f"output/{stem}/"}
    return {**told, **results(tag, stem)} if succeeded else told


def _no_results(tag: str, stem: str) -> dict[str, Any]:
    return {}


def _media_results(tag: str, stem: str) -> dict[str, Any]:
    extension, count = _MEDIA_OUTPUTS.get(tag, ("mp4", 1))
    prefix = f"output/{stem}/{tag.lower()}-"
    names = [f"{index}.{extension}" for index in range(count)]
    reported: dict[str, Any] = {"MediaInfo": _MEDIA_INFO}
    if names:
        reported["MediaResult"] = {
            "OutputFile": {
                "Bucket": BUCKET,
                "Region": REGION,
                "ObjectPrefix": prefix,
                "ObjectName": names,
                "Md5Info": [
                    {"ObjectName": prefix + name, "Md5": uuid.uuid5(uuid.NAMESPACE_URL, name).hex}
                    for name in names
                ],
            }
        }
    if tag == "DigitalWatermark":
        reported["DigitalWatermark"] = {
            "Type": "Text",
            "Message": "kit-watermark",
            "Version": "V1",
            "State": "Success",
        }
    elif tag == "QualityEstimate":
        reported["QualityEstimate"] = {"Score": "87.5"}
    return reported


_MEDIA_INFO: dict[str, Any] = {
    "Format": {
        "Bitrate": "1523.4",
        "Duration": "42.5",
        "FormatName": "mov,mp4,m4a,3gp,3g2,mj2",
        "FormatLongName": "QuickTime / MOV",
        "NumProgram": "0",
        "NumStream": "2",
        "Size": "8093184",
        "StartTime": "0.000000",
    },
    "Stream": {
        "Video": {
            "Index": "0",
            "CodecName": "h264",
            "CodecLongName": "H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10",
            "CodecTag": "0x31637661",
            "CodecTagString": "avc1",
            "Width": "1920",
            "Height": "1080",
            "Fps": "25/1",
            "AvgFps": "25/1",
            "Dar": "16:9",
            "Sar": "1:1",
            "Bitrate": "1390.6",
            "Duration": "42.48",
            "NumFrames": "1062",
            "PixFormat": "yuv420p",
            "Profile": "High",
            "Level": "40",
            "Rotation": "0",
            "StartTime": "0.000000",
            "Timebase": "1/12800",
        },
        "Audio": {
            "Index": "1",
            "CodecName": "aac",
            "CodecLongName": "AAC (Advanced Audio Coding)",
            "CodecTag": "0x6134706d",
            "CodecTagString": "mp4a",
            "Channel": "2",
            "ChannelLayout": "stereo",
            "SampleRate": "48000",
            "SampleFmt": "fltp",
            "Bitrate": "128.0",
            "Duration": "42.5",
            "StartTime": "0.000000",
            "Timebase": "1/48000",
        },
        "Subtitle": "",
    },
}


def _ocr(tag: str, stem: str) -> dict[str, Any]:
    lines = [("Spring sale: all week", 98, 32, 20), ("Doors open at 9:00", 95, 32, 64)]
    return {
        "Detection": {
            "Angel": "0",
            "Language": "en",
            "PdfPageSize": "0",
            "TextDetections": [
                {
                    "DetectedText": text,
                    "Confidence": confidence,
                    "Polygon": [
                        {"X": x, "Y": y},
                        {"X": x + 240, "Y": y},
                        {"X": x + 240, "Y": y + 30},
                        {"X": x, "Y": y + 30},
                    ],
                    "ItemPolygon": [{"X": x, "Y": y, "Width": 240, "Height": 30}],
                }
                for text, confidence, x, y in lines
            ],
        }
    }


def _inspect(tag: str, stem: str) -> dict[str, Any]:
    return {
        "ImageInspectResult": [
            {
                "Code": "Success",
                "Message": "",
                "State": "Success",
                "InputObjectName": f"input/{stem}.jpg",
                "ProcessResult": {
                    "PicSize": "402811",
                    "PicType": "jpg",
                    "Suspicious": "false",
                    "SuspiciousBeginByte": "0",
                    "SuspiciousEndByte": "0",
                    "SuspiciousSize": "0",
                    "SuspiciousType": "",
                },
            }
        ]
    }


def _pic_process(tag: str, stem: str) -> dict[str, Any]:
    return {
        "PicProcessResult": [
            {
                "ObjectName": f"output/{stem}-small.webp",
                "OriginalInfo": {
                    "Etag": '"5f3a7c0d1e9b24c6a8f0e1d2c3b4a596"',
                    "ImageInfo": {
                        "Format": "JPEG",
                        "Width": "4032",
                        "Height": "3024",
                        "Quality": "92",
                        "Ave": "0x7a6b5c",
                        "Orientation": "1",
                    },
                },
                "ProcessResult": {
                    "Format": "WEBP",
                    "Width": "800",
                    "Height": "600",
                    "Quality": "80",
                    "Size": "48213",
                    "Etag": '"0c1d2e3f4a5b6c7d8e9fa0b1c2d3e4f5"',
                },
            }
        ]
    }


def _translation(tag: str, stem: str) -> dict[str, Any]:
    return {
        "Translation": {"Lang": "en", "Type": "docx"},
        "Output": {"Bucket": BUCKET, "Region": REGION, "Object": f"output/{stem}.en.docx"},
    }


def _extract_watermark(tag: str, stem: str) -> dict[str, Any]:
    return {
        "ExtractDigitalWatermark": {"Type": "Text", "Message": "kit-watermark", "Version": "V1"}
    }


_RESULTS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "ImageOCR": _ocr,
    "ImageInspect": _inspect,
    "PicProcess": _pic_process,
    "Translation": _translation,
    "ExtractDigitalWatermark": _extract_watermark,
}
_IMAGE_TAGS = frozenset({"ImageOCR", "ImageInspect", "PicProcess"})
