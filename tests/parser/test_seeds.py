"""The vendor's seed payloads parse into the values they carry, in XML and in JSON alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.callbacks.events import CallbackEvent
from shared.callbacks.operations import (
    DigitalWatermarkOperation,
    ImageInspectOperation,
    ImageOCROperation,
    PicProcessOperation,
    TranslationOperation,
)
from tests.parser.bodies import SEED_FILES, SEEDS, parse_file

CST = timezone(timedelta(hours=8))


def _one(name: str) -> CallbackEvent:
    [event] = parse_file(SEEDS / name)
    return event


def _ocr(event: CallbackEvent) -> ImageOCROperation:
    assert isinstance(event.operation, ImageOCROperation)
    return event.operation


def test_seed_directory_holds_the_twelve_vendor_payloads() -> None:
    assert len(SEED_FILES) == 12


def test_ocr_xml_seed_yields_four_text_detections_with_polygons() -> None:
    event = _one("ocr.1.xml")
    assert event.event_name == "TaskFinish"
    assert event.job_id == "a3c193f288b2c11eeb60f39de2f86f409"
    assert event.queue_id == "pcaffdc4229a543b296b10b22586a1e57"
    assert (event.tag, event.state, event.code) == ("ImageOCR", "Success", "Success")
    assert event.message == ""
    assert event.creation_time == datetime(2023, 11, 25, 8, 47, 39, tzinfo=CST)
    assert event.creation_time.utcoffset() == timedelta(hours=8)
    assert event.end_time == datetime(2023, 11, 25, 0, 47, 40, tzinfo=UTC)
    assert event.input is not None
    assert (event.input.bucket_id, event.input.object) == ("test-1234567890", "pic/ocr1.png")
    assert event.input.region == "ap-chongqing"
    operation = _ocr(event)
    assert operation.template_name == "ImageOCR-34"
    assert operation.job_level == 0
    detection = operation.detection
    assert detection is not None
    assert (detection.angel, detection.pdf_page_size, detection.language) == (0.0, 0, "")
    texts = detection.text_detections
    assert [t.detected_text for t in texts] == [
        "Plow the fields at noon",
        "Sweat drips onto the soil beneath the crops",
        "Who knows the food on the plate",
        "Every grain is hard-earned",
    ]
    assert [t.confidence for t in texts] == [98, 91, 97, 99]
    first = texts[0]
    assert [(p.x, p.y) for p in first.polygon] == [(40, 24), (215, 24), (215, 58), (40, 58)]
    [box] = first.item_polygon
    assert (box.x, box.y, box.width, box.height) == (40, 24, 176, 35)
    [word] = first.words
    assert word.confidence == 0
    assert word.character == ""
    assert word.word_coord_point == []
    assert first.word_polygon == []
    assert first.model_extra == {}
    assert event.routing_key == "TaskFinish.ImageOCR.Success"
    assert event.body_format == "xml"
    assert not event.repaired


def test_ocr_json_seed_is_repaired_and_reads_the_same_job() -> None:
    event = _one("ocr.1.json")
    assert event.repaired
    assert len(event.repairs) == 4
    assert all(r.startswith("inserted a missing comma at line ") for r in event.repairs)
    assert event.job_id == "a3c193f288b2c11eeb60f39de2f86f409"
    detection = _ocr(event).detection
    assert detection is not None
    texts = detection.text_detections
    assert texts[0].detected_text == "Toiling under the midday sun"
    assert texts[3].confidence == 99
    assert (texts[3].polygon[2].x, texts[3].polygon[2].y) == (203, 214)
    assert _ocr(event).template_id == "t1a545cd125ea04ec7a3cd455065d601cc"


def test_digital_watermark_xml_seed_types_media_info_and_result() -> None:
    event = _one("digital-watermark.1.xml")
    assert (event.job_id, event.tag, event.sub_tag) == (
        "ja8de3b46f86011ec9452c1c27f56a659",
        "DigitalWatermark",
        "DigitalWatermark",
    )
    assert event.start_time == datetime(2022, 6, 30, 18, 37, 38, tzinfo=CST)
    operation = event.operation
    assert isinstance(operation, DigitalWatermarkOperation)
    assert operation.digital_watermark is not None
    assert operation.digital_watermark.message == "123456789ab"
    assert operation.digital_watermark.state is None
    assert operation.failed_sub_steps == []
    info = operation.media_info
    assert info is not None
    assert info.format is not None
    assert info.stream is not None
    assert info.format.bitrate == pytest.approx(2533.526)
    assert info.format.size == 68290577
    assert info.format.format_long_name == "QuickTime / MOV"
    [audio] = info.stream.audio
    assert audio.codec_tag == "0x6134706d"  # looks numeric, is not: kept as written
    assert audio.sample_rate == 48000
    assert audio.codec_time_base == "1/48000"
    [video] = info.stream.video
    assert video.bitrate == pytest.approx(2272.528)
    assert (video.width, video.height, video.num_frames) == (1920, 1080, 5174)
    assert video.avg_fps == "24.000000"
    assert info.stream.subtitle == []
    assert info.stream.model_extra == {}
    output = operation.media_result.output_file if operation.media_result else None
    assert output is not None
    assert output.object_name == ["output/digital.mp4"]
    assert output.md5_info[0].md5 == "043221daee3f4e15ff13f42329f15eb1"
    assert output.object_prefix == ""
    assert operation.output is not None
    assert operation.output.object == "output/digital.mp4"
    assert operation.user_data == "This is my DigitalWatermark job."


def test_digital_watermark_json_seed_reads_lists_and_numbers_the_same() -> None:
    event = _one("digital-watermark.1.json")
    assert not event.repaired
    operation = event.operation
    assert isinstance(operation, DigitalWatermarkOperation)
    assert operation.job_level == 0
    assert operation.media_info is not None
    assert operation.media_info.stream is not None
    assert operation.media_info.stream.video[0].bitrate == pytest.approx(2272.528)
    assert operation.media_result is not None
    assert operation.media_result.output_file is not None
    assert operation.media_result.output_file.object_name == ["output/digital.mp4"]


@pytest.mark.parametrize("name", ["image-inspect.1.xml", "image-inspect.2.xml"])
def test_image_inspect_xml_seeds_report_a_suspicious_mpeg_ts_tail(name: str) -> None:
    event = _one(name)
    assert event.job_id == "cda071f3af9e011ed8f900133752da9af"
    operation = event.operation
    assert isinstance(operation, ImageInspectOperation)
    [result] = operation.image_inspect_result
    assert result.state == "Success"
    assert result.input_object_name == "test.png"
    processed = result.process_result
    assert processed is not None
    assert processed.suspicious is True
    assert (processed.pic_size, processed.suspicious_begin_byte) == (304491, 119)
    assert processed.suspicious_type == "MPEG-TS"
    assert processed.auto_process_result is not None
    assert processed.auto_process_result.message == "Success"


def test_image_inspect_json_seed_drops_its_trailing_comma_and_keeps_json_values() -> None:
    event = _one("image-inspect.1.json")
    assert event.repairs == ["removed a trailing comma at line 34, column 16"]
    assert event.job_id == "c966a67d0f9fb11eda05029775a03955f"
    operation = event.operation
    assert isinstance(operation, ImageInspectOperation)
    processed = operation.image_inspect_result[0].process_result
    assert processed is not None
    assert (processed.suspicious, processed.suspicious_size) == (True, 304372)
    assert operation.job_level == 0


def test_pic_process_seeds_read_original_and_processed_image_info() -> None:
    event = _one("pic-process.2.xml")
    assert event.job_id == "c93984788066911ed89ed352d4d9d2084"
    assert event.input is not None
    assert event.input.headers == {
        "Content-Type": "image/jpeg",
        "x-cos-request-id": "NjJiZDYwYTFfNjUzYTYyNjRfZjEwZl8xMmZhYzY5",
        "EventName": "cos:ObjectCreated:Put",
        "Size": "1024",
    }
    assert event.workflow is not None
    assert event.workflow.run_id == "ic90edd59f84f11ec9d4f525400a3c59f"
    assert event.workflow.name == "PicProcess_1581665960537"
    operation = event.operation
    assert isinstance(operation, PicProcessOperation)
    [result] = operation.pic_process_result
    assert result.object_name == "output/out.jpg"
    assert result.original_info is not None
    assert result.original_info.image_info is not None
    assert result.original_info.etag == '"d5a491cd3d8d071e3212c3478e8e35a1"'
    assert result.original_info.image_info.ave == "0xc64847"
    assert result.original_info.image_info.width == 500
    assert result.process_result is not None
    assert (result.process_result.width, result.process_result.height) == (417, 500)
    assert result.process_result.size == 24911


def test_pic_process_json_seed_unescapes_the_over_escaped_etag() -> None:
    event = _one("pic-process.1.json")
    assert [r.split(" at ")[0] for r in event.repairs] == [
        "made an over-escaped quote an escaped quote",
        "made an over-escaped quote an escaped quote",
    ]
    operation = event.operation
    assert isinstance(operation, PicProcessOperation)
    original = operation.pic_process_result[0].original_info
    assert original is not None
    assert original.etag == '"d5a491cd3d8d071e3212c3478e8e35a1"'
    assert event.workflow is not None
    assert event.workflow.workflow_name == "workflow-test"
    assert event.input is not None
    assert len(event.input.cos_headers) == 4


@pytest.mark.parametrize("name", ["translation.1.xml", "translation.1.json"])
def test_translation_seeds_read_the_languages_and_the_output(name: str) -> None:
    event = _one(name)
    assert event.job_id == "ac34be3aa0bf411ed9ce39d7cc972e427"
    assert event.message == "Success"
    assert event.input is not None
    assert event.input.object == "input/en.pdf"
    assert (event.input.lang, event.input.type, event.input.basic_type) == ("en", "pdf", "pptx")
    operation = event.operation
    assert isinstance(operation, TranslationOperation)
    assert operation.translation is not None
    assert (operation.translation.lang, operation.translation.type) == ("en", "txt")
    assert operation.output is not None
    assert (operation.output.bucket, operation.output.object) == ("test-123456789", "output/zh.pdf")
    assert event.repaired == name.endswith(".json")


@pytest.mark.parametrize(
    "stem", ["digital-watermark.1", "image-inspect.1", "ocr.1", "pic-process.1", "translation.1"]
)
def test_xml_and_json_forms_of_a_seed_agree_on_name_tag_state_and_key(stem: str) -> None:
    [from_xml] = parse_file(SEEDS / f"{stem}.xml")
    [from_json] = parse_file(SEEDS / f"{stem}.json")
    assert (from_xml.event_name, from_xml.tag, from_xml.state, from_xml.routing_key) == (
        from_json.event_name,
        from_json.tag,
        from_json.state,
        from_json.routing_key,
    )
    assert type(from_xml.operation) is type(from_json.operation)
    assert (from_xml.body_format, from_json.body_format) == ("xml", "json")


def test_every_seed_event_survives_a_json_round_trip() -> None:
    for path in SEED_FILES:
        for event in parse_file(path):
            assert CallbackEvent.model_validate_json(event.model_dump_json()) == event, path.name
