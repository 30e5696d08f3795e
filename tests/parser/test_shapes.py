"""Every shape of callback the sender uses parses into the events it reports."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.callbacks.events import CallbackEvent
from shared.callbacks.moderation import (
    AudioModeration,
    DocumentModeration,
    HtmlModeration,
    ImageModeration,
    TextModeration,
    VideoModeration,
)
from shared.callbacks.operations import (
    GenericOperation,
    ImageInspectOperation,
    ImageOCROperation,
    PicProcessOperation,
    TranscodeOperation,
    TranslationOperation,
)
from shared.callbacks.parser import parse_callback
from tests.parser.bodies import CALLBACKS, parse_file, some

CST = timezone(timedelta(hours=8))


def _one(name: str) -> CallbackEvent:
    [event] = parse_file(CALLBACKS / name)
    return event


# -- task events ------------------------------------------------------------------------


def test_jobs_detail_array_gives_one_event_per_job_in_order() -> None:
    events = parse_file(CALLBACKS / "jobs-array.json")
    assert [e.job_id for e in events] == [
        "c01010101010101010101010101010101",
        "c02020202020202020202020202020202",
        "c03030303030303030303030303030303",
    ]
    assert [e.routing_key for e in events] == [
        "TaskFinish.ImageInspect.Failed",
        "TaskFinish.ImageInspect.Success",
        "TaskFinish.PicProcess.Success",
    ]
    assert [(e.job_index, e.job_count) for e in events] == [(0, 3), (1, 3), (2, 3)]
    failed, inspected, processed = events
    assert failed.code == "InvalidParameter"
    assert failed.message == "The input file is not an image"
    failed_op = failed.operation
    assert isinstance(failed_op, ImageInspectOperation)
    assert failed_op.failed_sub_steps == ["ImageInspectResult[0]"]
    inspected_op = inspected.operation
    assert isinstance(inspected_op, ImageInspectOperation)
    result = some(inspected_op.image_inspect_result[0].process_result)
    assert (result.pic_size, result.suspicious) == (2048, False)
    processed_op = processed.operation
    assert isinstance(processed_op, PicProcessOperation)
    assert [r.object_name for r in processed_op.pic_process_result] == [
        "out/cat-small.webp",
        "out/cat-large.webp",
    ]
    assert some(processed_op.pic_process_result[1].process_result).width == 1280
    assert len({e.idempotency_key for e in events}) == 3


def test_repeated_jobs_detail_elements_in_xml_give_one_event_each() -> None:
    events = parse_file(CALLBACKS / "jobs-repeated.xml")
    assert [e.job_id for e in events] == [
        "j30303030303030303030303030303030",
        "j40404040404040404040404040404040",
    ]
    languages = []
    for event in events:
        assert isinstance(event.operation, TranslationOperation)
        languages.append(some(event.operation.translation).lang)
    assert languages == ["fr", "de"]


def test_old_body_without_event_name_is_a_task_finish() -> None:
    event = _one("legacy-no-eventname.xml")
    assert event.event_name == "TaskFinish"
    assert event.state is None
    assert event.code == "Success"
    assert event.routing_key == "TaskFinish.Unknown.Success"
    assert event.creation_time == datetime(2021, 9, 14, 15, 0, 26, tzinfo=CST)


def test_ocr_words_carry_their_corners_and_handwriting_its_word_polygons() -> None:
    event = _one("ocr-handwriting.xml")
    operation = event.operation
    assert isinstance(operation, ImageOCROperation)
    detection = some(operation.detection)
    assert (detection.angel, detection.language) == (359.99, "mix")
    [line] = detection.text_detections
    assert [(w.character, w.confidence) for w in line.words] == [("Buy", 95), ("milk", 91)]
    corners = line.words[1].word_coord_point[0].word_coordinate
    assert [(p.x, p.y) for p in corners] == [(60, 20), (130, 20), (130, 50), (60, 50)]
    second = line.word_polygon[1]
    assert (some(second.left_top).x, some(second.right_bottom).y) == (60, 50)


def test_missing_tag_gets_the_placeholder_and_a_generic_operation_that_keeps_all() -> None:
    event = _one("missing-tag.json")
    assert event.tag == "Unknown"
    assert event.routing_key == "TaskFinish.Unknown.Success"
    operation = event.operation
    assert isinstance(operation, GenericOperation)
    assert operation.kind == "Unknown"
    assert operation.job_level == 0
    assert operation.model_extra == {"WordsGeneralize": {"NerMethod": "DL", "SegMethod": "MIX"}}


def test_tag_comes_from_jobs_detail_never_from_a_nested_tag() -> None:
    body = (
        b"<Response><EventName>TaskFinish</EventName><JobsDetail><JobId>j1</JobId>"
        b"<State>Success</State><Operation><VideoTagResult><StreamData><Data><Tags>"
        b"<Tag>Game</Tag><Confidence>0.5</Confidence></Tags></Data></StreamData>"
        b"</VideoTagResult></Operation></JobsDetail></Response>"
    )
    [event] = parse_callback(body)
    assert event.tag == "Unknown"
    assert event.routing_key == "TaskFinish.Unknown.Success"
    operation = some(event.operation)
    tags = some(operation.model_extra)["VideoTagResult"]["StreamData"]["Data"]["Tags"]
    assert tags == {"Tag": "Game", "Confidence": "0.5"}


def test_json_response_wrapper_is_unwrapped_and_its_siblings_kept() -> None:
    event = _one("response-wrapper.json")
    assert event.job_id == "a5555555555555555555555555wrapped"
    assert event.routing_key == "TaskFinish.Translation.Success"
    assert event.response_extra == {"RequestId": "NjVmZWVkYmFfZmFrZV9yZXF1ZXN0"}


def test_sub_step_failure_inside_a_successful_job_is_visible() -> None:
    event = _one("substep-failed.xml")
    assert event.state == "Success"
    assert event.routing_key == "TaskFinish.Transcode.Success"
    operation = event.operation
    assert isinstance(operation, TranscodeOperation)
    step = some(operation.digital_watermark)
    assert (step.state, step.failed, step.ignore_error) == ("Failed", True, True)
    assert event.failed_sub_steps == ["DigitalWatermark"]


def test_numeric_looking_values_that_are_not_numbers_stay_strings() -> None:
    operation = _one("substep-failed.xml").operation
    assert isinstance(operation, TranscodeOperation)
    streams = some(some(operation.media_info).stream)
    [video] = streams.video
    assert (video.avg_fps, video.fps, video.dar) == ("25/1", "25/1", "9:16")
    assert video.rotation == 0.0
    assert [a.codec_tag for a in streams.audio] == ["0x6134706d", "0x6134706d"]
    assert [a.bitrate for a in streams.audio] == [128.0, 64.0]
    assert streams.audio[0].sample_rate == 44100


def test_empty_elements_are_empty_values_and_containers_are_lists() -> None:
    event = _one("substep-failed.xml")
    assert event.message == ""
    operation = event.operation
    assert isinstance(operation, TranscodeOperation)
    output = some(some(operation.media_result).output_file)
    assert output.md5_info == []
    assert output.object_name == ["out/talk-720p.mp4"]
    assert output.object_prefix == ""
    assert operation.watermark_template_id == ["t0dddddddddddddddddddddddddddddddd"]
    assert some(some(operation.media_info).stream).subtitle == []
    assert event.progress == 100


def test_blank_containers_numbers_and_times_are_none() -> None:
    body = (
        b"<Response><JobsDetail><JobId>j1</JobId><Tag>Transcode</Tag><Progress/>"
        b"<CreationTime>-</CreationTime><StartTime/><EndTime>  </EndTime>"
        b"<Operation><MediaInfo><Format/><Stream>\n  <Audio>\n  </Audio>\n</Stream></MediaInfo>"
        b"<JobLevel></JobLevel></Operation></JobsDetail></Response>"
    )
    [event] = parse_callback(body)
    assert (event.progress, event.creation_time, event.start_time, event.end_time) == (
        None,
        None,
        None,
        None,
    )
    operation = event.operation
    assert isinstance(operation, TranscodeOperation)
    info = some(operation.media_info)
    assert info.format is None
    assert some(info.stream).audio == []
    assert operation.job_level is None


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("2023-11-25T08:47:39+0800", datetime(2023, 11, 25, 8, 47, 39, tzinfo=CST)),
        ("2021-09-14 15:00:26+0800", datetime(2021, 9, 14, 15, 0, 26, tzinfo=CST)),
        ("2022-08-03T18:45:50+08:00", datetime(2022, 8, 3, 18, 45, 50, tzinfo=CST)),
        ("2022-08-03T10:45:50Z", datetime(2022, 8, 3, 18, 45, 50, tzinfo=CST)),
        ("2022-08-03 18:45:50", datetime(2022, 8, 3, 18, 45, 50, tzinfo=CST)),
        ("-", None),
        ("", None),
    ],
)
def test_times_in_every_form_the_sender_uses_are_aware_or_none(
    written: str, meant: datetime | None
) -> None:
    body = f'{{"JobsDetail": {{"JobId": "j1", "CreationTime": "{written}"}}}}'.encode()
    [event] = parse_callback(body)
    assert event.creation_time == meant
    if event.creation_time is not None:
        assert event.creation_time.utcoffset() is not None


def test_numbers_and_booleans_as_strings_or_json_values_read_the_same() -> None:
    def inspected(process_result: str) -> tuple[object, ...]:
        body = (
            '{"JobsDetail": {"Tag": "ImageInspect", "Operation": {"ImageInspectResult": '
            f'{{"ProcessResult": {process_result}}}}}}}}}'
        ).encode()
        [event] = parse_callback(body)
        assert isinstance(event.operation, ImageInspectOperation)
        result = some(event.operation.image_inspect_result[0].process_result)
        return (result.pic_size, result.suspicious, result.pic_type)

    as_text = inspected('{"PicSize": "42", "Suspicious": "true", "PicType": "png"}')
    as_values = inspected('{"PicSize": 42, "Suspicious": true, "PicType": "png"}')
    assert as_text == as_values == (42, True, "png")


# -- workflow events --------------------------------------------------------------------


def test_workflow_finish_xml_gives_one_event_with_its_tasks() -> None:
    event = _one("workflow-finish.xml")
    assert event.event_name == "WorkflowFinish"
    assert event.family == "workflow"
    assert event.state == "Failed"
    assert event.routing_key == "WorkflowFinish.thumbnails_and_hd__1.Failed"
    assert event.creation_time == datetime(2024, 3, 1, 9, 15, tzinfo=CST)
    workflow = some(event.workflow)
    assert (workflow.run_id, workflow.workflow_name) == (
        "i0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "thumbnails.and*hd #1",
    )
    assert some(event.input).headers == {
        "Content-Type": "video/quicktime",
        "x-cos-meta-owner": "alice",
    }
    run = some(event.workflow_execution)
    assert [(t.type, t.state, t.job_id) for t in run.tasks] == [
        ("Transcode", "Success", "j11111111111111111111111111111111"),
        ("Snapshot", "Failed", "j22222222222222222222222222222222"),
    ]
    assert run.tasks[0].end_time == datetime(2024, 3, 1, 9, 16, 30, tzinfo=CST)
    assert run.tasks[1].end_time is None
    assert run.tasks[1].template_name == "cover_640*360"


def test_workflow_finish_json_with_single_objects_reads_them_as_lists() -> None:
    event = _one("workflow-finish.json")
    run = some(event.workflow_execution)
    assert [t.name for t in run.tasks] == ["Snapshot_1"]
    assert [h.key for h in run.cos_headers] == ["Content-Type"]
    assert event.routing_key == "WorkflowFinish.thumbnails_and_hd__1.Failed"


# -- moderation events ------------------------------------------------------------------


def test_moderation_detail_style_carries_the_verdict_label_and_hits() -> None:
    event = _one("moderation-image-detail.json")
    assert (event.event_name, event.family, event.content_version) == (
        "ReviewImage",
        "moderation",
        "Detail",
    )
    assert event.routing_key == "ReviewImage.Porn.Block"
    assert event.verdict == "Block"
    assert event.job_id == "si0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
    assert event.creation_time == datetime(2024, 5, 6, 7, 8, 9, tzinfo=CST)
    source = some(event.input)
    assert (source.bucket_id, source.object, source.region) == (
        "media-1250000001",
        "avatars/u42.png",
        "ap-guangzhou",
    )
    assert source.headers == {"x-cos-meta-uploader": "u42", "x-cos-meta-source": "app"}
    result = event.operation
    assert isinstance(result, ImageModeration)
    assert (result.label, result.result, result.score, result.forbid_state) == ("Porn", 1, 97, 1)
    porn = some(result.porn_info)
    assert (porn.hit_flag, porn.score, porn.category) == (1, 97, "Sexy")
    assert some(result.ads_info).hit_flag == 0


def test_moderation_simple_style_reads_snake_case_fields_and_derives_the_label() -> None:
    event = _one("moderation-text-simple.json")
    assert (event.event_name, event.content_version, event.is_test) == (
        "ReviewText",
        "Simple",
        False,
    )
    assert (event.code, event.message) == ("0", "success")
    assert event.routing_key == "ReviewText.Ads.Review"
    result = event.operation
    assert isinstance(result, TextModeration)
    assert (result.result, result.forbid_state, result.trace_id) == (
        2,
        0,
        "st9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    )
    ads = some(result.ads_info)
    assert (ads.hit_flag, ads.label, ads.count) == (1, "QRCode", 2)
    assert some(event.input).url == (
        "https://media-1250000001.cos.ap-guangzhou.myqcloud.com/posts/p7.txt"
    )
    assert some(event.input).headers == {"x-cos-meta-post": "p7"}


def test_console_test_post_is_marked_and_routed_apart() -> None:
    event = _one("moderation-test-post.json")
    assert event.is_test
    assert event.routing_key == "ReviewVideo.Test.Pass"
    assert isinstance(event.operation, VideoModeration)
    assert event.operation.trace_id == "test_trace_id"


def test_content_version_header_is_kept_on_the_event() -> None:
    body = (CALLBACKS / "moderation-text-simple.json").read_bytes()
    [event] = parse_callback(body, headers={"x-ci-content-version": "Simple"})
    assert event.content_version == "Simple"
    [task] = parse_callback(
        (CALLBACKS / "missing-tag.json").read_bytes(), headers={"X-Ci-Content-Version": "Detail"}
    )
    assert task.content_version == "Detail"


def test_failed_moderation_job_routes_on_its_state() -> None:
    body = (
        b'{"EventName": "ReviewVideo", "JobsDetail": {"JobId": "sv1", "State": "Failed",'
        b' "Code": "DownloadFailed", "Message": "cannot read the object", "Object": "v.mp4"}}'
    )
    [event] = parse_callback(body)
    assert event.routing_key == "ReviewVideo.Unknown.Failed"
    assert (event.code, event.message) == ("DownloadFailed", "cannot read the object")


def test_moderation_jobs_detail_as_a_list_gives_one_event_per_job() -> None:
    body = (
        b'{"EventName": "ReviewImage", "JobsDetail": ['
        b'{"JobId": "s1", "State": "Success", "Label": "Normal", "Result": 0},'
        b'{"JobId": "s2", "State": "Success", "Label": "Ads", "Result": 2}]}'
    )
    events = parse_callback(body)
    assert [e.routing_key for e in events] == ["ReviewImage.Normal.Pass", "ReviewImage.Ads.Review"]


def test_document_moderation_reads_its_pages_and_routes_on_the_suggestion() -> None:
    event = _one("moderation-document-detail.json")
    assert event.routing_key == "ReviewDocument.Ads.Review"
    result = event.operation
    assert isinstance(result, DocumentModeration)
    assert (result.suggestion, result.page_count) == (2, 3)
    assert some(some(result.labels).ads_info).score == 71
    [page] = some(result.page_segment).results
    assert (page.page_number, page.text, page.label) == (2, "Visit example.shop", "Ads")
    assert some(page.ads_info).sub_label == "Link"
    assert some(event.input).url == (
        "https://docs-1250000001.cos.ap-beijing.myqcloud.com/contracts/c9.docx"
    )


def test_web_page_moderation_reads_image_and_text_results() -> None:
    event = _one("moderation-html-detail.json")
    assert event.routing_key == "ReviewHtml.Normal.Pass"
    result = event.operation
    assert isinstance(result, HtmlModeration)
    assert [r.url for r in some(result.image_results).results] == [
        "https://example.org/img/hero.png"
    ]
    assert [r.text for r in some(result.text_results).results] == ["Welcome to the blog"]
    assert some(event.input).headers == {}


def test_audio_moderation_in_the_simple_style_reads_its_verdict() -> None:
    body = (
        b'{"code": 0, "message": "success", "data": {"event": "ReviewAudio",'
        b' "forbidden_status": 1, "porn_info": {"hit_flag": 1, "label": "Moan", "score": 88},'
        b' "result": 1, "trace_id": "sa1", "url": "https://a.example/clip.mp3"}}'
    )
    [event] = parse_callback(body)
    assert event.routing_key == "ReviewAudio.Porn.Block"
    result = event.operation
    assert isinstance(result, AudioModeration)
    assert (result.forbid_state, some(result.porn_info).label) == (1, "Moan")
