"""Typed results of a job's ``Operation``, one model per task type, and a generic one.

Every operation model carries ``kind``: the job's ``Tag`` for task events (``ImageOCR``,
``Transcode``, ...) or the event name for moderation results (``ReviewImage``, ...). The
event's ``operation`` field picks the model by ``kind``; a kind without a model of its own
gets :class:`GenericOperation`, which keeps every value as it came (``model_extra``).

Fields the sender documents are typed; anything else in the body is kept on the model it
belongs to (``model_extra``), so nothing is lost.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.callbacks.objects import JobInput, OutputLocation
from shared.callbacks.vendor import (
    Bool,
    Float,
    Int,
    ListOf,
    Nested,
    Text,
    TextList,
    VendorModel,
)

__all__ = [
    "MEDIA_TAGS",
    "AnimationOperation",
    "AudioStream",
    "BaseOperation",
    "ConcatOperation",
    "DigitalWatermarkOperation",
    "DigitalWatermarkStep",
    "ExtractDigitalWatermarkOperation",
    "GenericOperation",
    "ImageInfo",
    "ImageInspectOperation",
    "ImageInspectResult",
    "ImageOCROperation",
    "ItemPolygon",
    "Md5Info",
    "MediaFormat",
    "MediaInfo",
    "MediaInfoOperation",
    "MediaOperation",
    "MediaResult",
    "MediaStreams",
    "NoiseReductionOperation",
    "OCRDetection",
    "OCRWord",
    "OriginalInfo",
    "OutputFile",
    "PicProcessOperation",
    "PicProcessResult",
    "Point",
    "ProcessedImage",
    "QualityEstimateOperation",
    "SDRtoHDROperation",
    "SegmentOperation",
    "SmartCoverOperation",
    "SnapshotOperation",
    "StreamExtractOperation",
    "SuperResolutionOperation",
    "TaskOperation",
    "TextDetection",
    "TranscodeOperation",
    "TranslationOperation",
    "TtsOperation",
    "VideoMontageOperation",
    "VideoProcessOperation",
    "VideoStream",
    "VoiceSeparateOperation",
    "WordCoordPoint",
    "WordPolygon",
]


# -- the common part of every operation --------------------------------------------------


class BaseOperation(VendorModel):
    """What every operation model has: its ``kind``, and the sub-steps that failed."""

    kind: str = "Unknown"

    @property
    def failed_sub_steps(self) -> list[str]:
        """Names of the sub-steps that report ``State=Failed`` (the job may still succeed)."""
        return []


class TaskOperation(BaseOperation):
    """What every task's ``Operation`` may carry, whatever its type."""

    template_id: Text = None
    template_name: Text = None
    transcode_template_id: Text = None
    watermark_template_id: TextList = Field(default_factory=list)
    user_data: Text = None
    job_level: Int = None
    output: Nested[OutputLocation] = None


class GenericOperation(TaskOperation):
    """A task type without a model of its own: everything is kept in ``model_extra``."""


# -- OCR ---------------------------------------------------------------------------------


class Point(VendorModel):
    x: Int = None
    y: Int = None


class ItemPolygon(VendorModel):
    x: Int = None
    y: Int = None
    width: Int = None
    height: Int = None


class WordCoordPoint(VendorModel):
    """A word's four corners in the input image, clockwise from the top left."""

    word_coordinate: ListOf[Point] = Field(default_factory=list)


class OCRWord(VendorModel):
    """One word (or character) of a line, for the ``general`` and ``accurate`` types."""

    character: Text = None
    confidence: Int = None
    word_coord_point: ListOf[WordCoordPoint] = Field(default_factory=list)


class WordPolygon(VendorModel):
    """A word's four corners, for the ``handwriting`` type."""

    left_top: Nested[Point] = None
    right_top: Nested[Point] = None
    right_bottom: Nested[Point] = None
    left_bottom: Nested[Point] = None


class TextDetection(VendorModel):
    """One line of text found: the text, its confidence (0-100) and where it is."""

    detected_text: Text = None
    confidence: Int = None
    polygon: ListOf[Point] = Field(default_factory=list)
    item_polygon: ListOf[ItemPolygon] = Field(default_factory=list)
    words: ListOf[OCRWord] = Field(default_factory=list)
    word_polygon: ListOf[WordPolygon] = Field(default_factory=list)
    advanced_info: Text = None


class OCRDetection(VendorModel):
    """The text found in an image (``Operation/Detection``)."""

    angel: Float = None  # the rotation in degrees; the vendor's spelling of "angle"
    language: Text = None
    pdf_page_size: Int = None
    text_detections: ListOf[TextDetection] = Field(default_factory=list)


class ImageOCROperation(TaskOperation):
    kind: Literal["ImageOCR"] = "ImageOCR"
    detection: Nested[OCRDetection] = None


# -- image inspection --------------------------------------------------------------------


class AutoProcessResult(VendorModel):
    code: Text = None
    message: Text = None


class ImageInspectProcessResult(VendorModel):
    pic_size: Int = None
    pic_type: Text = None
    suspicious: Bool = None
    suspicious_begin_byte: Int = None
    suspicious_end_byte: Int = None
    suspicious_size: Int = None
    suspicious_type: Text = None
    auto_process_result: Nested[AutoProcessResult] = None


class ImageInspectResult(VendorModel):
    code: Text = None
    message: Text = None
    state: Text = None
    input_object_name: Text = None
    input_object_url: Text = None
    process_result: Nested[ImageInspectProcessResult] = None


class ImageInspectOperation(TaskOperation):
    kind: Literal["ImageInspect"] = "ImageInspect"
    image_inspect_result: ListOf[ImageInspectResult] = Field(default_factory=list)

    @property
    def failed_sub_steps(self) -> list[str]:
        return [
            f"ImageInspectResult[{i}]"
            for i, result in enumerate(self.image_inspect_result)
            if result.state == "Failed"
        ]


# -- picture processing ------------------------------------------------------------------


class ImageInfo(VendorModel):
    """The input image (``OriginalInfo/ImageInfo``)."""

    format: Text = None
    width: Int = None
    height: Int = None
    quality: Int = None
    ave: Text = None  # average colour, "0xc64847"
    orientation: Int = None


class OriginalInfo(VendorModel):
    etag: Text = None
    image_info: Nested[ImageInfo] = None


class ProcessedImage(VendorModel):
    """The image written (``PicProcessResult/ProcessResult``)."""

    format: Text = None
    width: Int = None
    height: Int = None
    quality: Int = None
    size: Int = None
    etag: Text = None


class PicProcessResult(VendorModel):
    object_name: Text = None
    original_info: Nested[OriginalInfo] = None
    process_result: Nested[ProcessedImage] = None


class PicProcessOperation(TaskOperation):
    kind: Literal["PicProcess"] = "PicProcess"
    pic_process_result: ListOf[PicProcessResult] = Field(default_factory=list)


# -- translation -------------------------------------------------------------------------


class TranslationParams(VendorModel):
    lang: Text = None
    type: Text = None


class TranslationOperation(TaskOperation):
    kind: Literal["Translation"] = "Translation"
    translation: Nested[TranslationParams] = None


# -- the media family: MediaInfo, MediaResult ---------------------------------------------


class MediaFormat(VendorModel):
    bitrate: Float = None
    duration: Float = None
    format_name: Text = None
    format_long_name: Text = None
    num_program: Int = None
    num_stream: Int = None
    size: Int = None
    start_time: Float = None  # seconds into the media, not a date


class AudioStream(VendorModel):
    index: Int = None
    bitrate: Float = None
    duration: Float = None
    channel: Int = None
    channel_layout: Text = None
    codec_name: Text = None
    codec_long_name: Text = None
    codec_tag: Text = None  # "0x6134706d": hexadecimal, kept as written
    codec_tag_string: Text = None
    codec_time_base: Text = None  # "1/48000"
    language: Text = None
    sample_fmt: Text = None
    sample_rate: Int = None
    start_time: Float = None
    timebase: Text = None


class VideoStream(VendorModel):
    index: Int = None
    width: Int = None
    height: Int = None
    bitrate: Float = None
    duration: Float = None
    fps: Text = None  # "24.000000" or "50/1"
    avg_fps: Text = None  # "25/1" as often as "24.000000"
    dar: Text = None  # "16:9"
    sar: Text = None
    codec_name: Text = None
    codec_long_name: Text = None
    codec_tag: Text = None
    codec_tag_string: Text = None
    codec_time_base: Text = None
    color_primaries: Text = None
    color_range: Text = None
    color_transfer: Text = None
    field_order: Text = None
    has_b_frame: Int = None
    language: Text = None
    level: Text = None
    num_frames: Int = None
    pix_format: Text = None
    profile: Text = None
    ref_frames: Int = None
    rotation: Float = None
    start_time: Float = None
    timebase: Text = None


class SubtitleStream(VendorModel):
    index: Int = None
    language: Text = None


class MediaStreams(VendorModel):
    audio: ListOf[AudioStream] = Field(default_factory=list)
    video: ListOf[VideoStream] = Field(default_factory=list)
    subtitle: ListOf[SubtitleStream] = Field(default_factory=list)


class MediaInfo(VendorModel):
    format: Nested[MediaFormat] = None
    stream: Nested[MediaStreams] = None


class Md5Info(VendorModel):
    md5: Text = None
    object_name: Text = None


class OutputFile(VendorModel):
    bucket: Text = None
    region: Text = None
    object_name: TextList = Field(default_factory=list)
    object_prefix: Text = None
    md5_info: ListOf[Md5Info] = Field(default_factory=list)
    sprite_output_file: Nested[OutputFile] = None


class MediaResult(VendorModel):
    output_file: Nested[OutputFile] = None


class DigitalWatermarkStep(VendorModel):
    """The digital-watermark step of a media job (``Operation/DigitalWatermark``).

    A job can succeed while this step failed: then ``state`` is ``"Failed"``.
    """

    type: Text = None
    message: Text = None
    version: Text = None
    state: Text = None
    ignore_error: Bool = None

    @property
    def failed(self) -> bool:
        return self.state == "Failed"


class MediaOperation(TaskOperation):
    """What the media task types share: the input's media info and the files written."""

    media_info: Nested[MediaInfo] = None
    media_result: Nested[MediaResult] = None
    digital_watermark: Nested[DigitalWatermarkStep] = None

    @property
    def failed_sub_steps(self) -> list[str]:
        step = self.digital_watermark
        return ["DigitalWatermark"] if step is not None and step.failed else []


class TranscodeOperation(MediaOperation):
    kind: Literal["Transcode"] = "Transcode"


class SnapshotOperation(MediaOperation):
    kind: Literal["Snapshot"] = "Snapshot"


class AnimationOperation(MediaOperation):
    kind: Literal["Animation"] = "Animation"


class ConcatOperation(MediaOperation):
    kind: Literal["Concat"] = "Concat"


class HlsEncrypt(VendorModel):
    is_hls_encrypt: Bool = None
    uri_key: Text = None


class SegmentParams(VendorModel):
    format: Text = None
    duration: Float = None
    hls_encrypt: Nested[HlsEncrypt] = None


class SegmentOperation(MediaOperation):
    kind: Literal["Segment"] = "Segment"
    segment: Nested[SegmentParams] = None


class SmartCoverParams(VendorModel):
    count: Int = None
    delete_duplicates: Bool = None
    format: Text = None
    width: Int = None
    height: Int = None


class SmartCoverOperation(MediaOperation):
    kind: Literal["SmartCover"] = "SmartCover"
    smart_cover: Nested[SmartCoverParams] = None


class VideoMontageOperation(MediaOperation):
    kind: Literal["VideoMontage"] = "VideoMontage"


class VoiceSeparateOperation(MediaOperation):
    kind: Literal["VoiceSeparate"] = "VoiceSeparate"


class SDRtoHDRParams(VendorModel):
    hdr_mode: Text = None


class SDRtoHDROperation(MediaOperation):
    kind: Literal["SDRtoHDR"] = "SDRtoHDR"
    sdr_to_hdr: Nested[SDRtoHDRParams] = Field(default=None, alias="SDRtoHDR")


class SuperResolutionOperation(MediaOperation):
    kind: Literal["SuperResolution"] = "SuperResolution"


class VideoProcessOperation(MediaOperation):
    kind: Literal["VideoProcess"] = "VideoProcess"


class StreamExtractOperation(MediaOperation):
    kind: Literal["StreamExtract"] = "StreamExtract"


class TtsConfig(VendorModel):
    input: Text = None
    input_type: Text = None


class TtsOperation(MediaOperation):
    kind: Literal["Tts"] = "Tts"
    tts_config: Nested[TtsConfig] = None
    input: Nested[JobInput] = None  # a workflow-run Tts job reports its trigger here


class NoiseReductionOperation(MediaOperation):
    kind: Literal["NoiseReduction"] = "NoiseReduction"


class DigitalWatermarkOperation(MediaOperation):
    kind: Literal["DigitalWatermark"] = "DigitalWatermark"


class MediaInfoOperation(MediaOperation):
    kind: Literal["MediaInfo"] = "MediaInfo"


class QualityEstimateResult(VendorModel):
    score: Float = None


class QualityEstimateOperation(MediaOperation):
    kind: Literal["QualityEstimate"] = "QualityEstimate"
    quality_estimate: Nested[QualityEstimateResult] = None


class ExtractDigitalWatermarkOperation(TaskOperation):
    kind: Literal["ExtractDigitalWatermark"] = "ExtractDigitalWatermark"
    extract_digital_watermark: Nested[DigitalWatermarkStep] = None


#: The task types that share ``MediaInfo``/``MediaResult`` (:class:`MediaOperation`).
MEDIA_TAGS = frozenset(
    {
        "Transcode",
        "Snapshot",
        "Animation",
        "Concat",
        "Segment",
        "SmartCover",
        "VideoMontage",
        "VoiceSeparate",
        "SDRtoHDR",
        "SuperResolution",
        "VideoProcess",
        "StreamExtract",
        "Tts",
        "NoiseReduction",
        "DigitalWatermark",
        "MediaInfo",
        "QualityEstimate",
    }
)
