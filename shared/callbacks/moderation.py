"""Content-moderation results: the ``operation`` of ``ReviewImage`` ... ``ReviewHtml`` events.

Both styles the sender uses land in the same models. The Detail style names fields in
PascalCase (``PornInfo.HitFlag``, the aliases); the Simple style in snake_case
(``porn_info.hit_flag``, the field names). The verdict is read from ``Result`` (or
``Suggestion`` for documents and web pages): 0 pass, 1 block, 2 review.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic.alias_generators import to_pascal

from shared.callbacks.operations import BaseOperation
from shared.callbacks.vendor import Int, ListOf, Nested, Text, VendorModel

__all__ = [
    "MODERATION_EVENTS",
    "AudioModeration",
    "DocumentModeration",
    "HtmlModeration",
    "ImageModeration",
    "ModerationHit",
    "ModerationHits",
    "ModerationResult",
    "TextModeration",
    "Verdict",
    "VideoModeration",
    "hit_label",
    "verdict_of",
]

#: The moderation event names.
MODERATION_EVENTS = frozenset(
    {"ReviewImage", "ReviewText", "ReviewAudio", "ReviewVideo", "ReviewDocument", "ReviewHtml"}
)

Verdict = Literal["Pass", "Block", "Review"]
_VERDICTS: dict[int, Verdict] = {0: "Pass", 1: "Block", 2: "Review"}


def verdict_of(result: int | None, suggestion: int | None = None) -> Verdict | None:
    """``Pass``/``Block``/``Review`` from ``Result`` (else ``Suggestion``), or ``None``."""
    code = result if result is not None else suggestion
    return _VERDICTS.get(code) if code is not None else None


class ModerationHit(VendorModel):
    """One category's finding (``PornInfo``, ``AdsInfo``, ``porn_info``, ...)."""

    hit_flag: Int = None
    score: Int = None
    count: Int = None
    label: Text = None
    category: Text = None
    sub_label: Text = None


class ModerationHits(VendorModel):
    """The per-category findings a result or a part of it (a section, a page) carries."""

    porn_info: Nested[ModerationHit] = None
    terrorism_info: Nested[ModerationHit] = None
    politics_info: Nested[ModerationHit] = None
    ads_info: Nested[ModerationHit] = None
    illegal_info: Nested[ModerationHit] = None
    abuse_info: Nested[ModerationHit] = None
    teenager_info: Nested[ModerationHit] = None


def hit_label(model: VendorModel) -> str | None:
    """The category of the first finding with ``HitFlag`` 1: ``PornInfo`` gives ``Porn``."""
    for name in type(model).model_fields:
        if name.endswith("_info"):
            hit = getattr(model, name)
            if isinstance(hit, ModerationHit) and hit.hit_flag == 1:
                return to_pascal(name.removesuffix("_info"))
    for key, value in (model.model_extra or {}).items():
        category = _category(key)
        if category and isinstance(value, dict) and _flag(value) == 1:
            return category
    return None


def _category(key: str) -> str | None:
    if key.endswith("_info"):
        return to_pascal(key.removesuffix("_info"))
    if key.endswith("Info") and len(key) > len("Info"):
        return key.removesuffix("Info")
    return None


def _flag(value: dict[str, Any]) -> int | None:
    flag = value.get("HitFlag", value.get("hit_flag"))
    try:
        return int(flag) if flag is not None and flag != "" else None
    except (TypeError, ValueError):
        return None


class ModerationResult(ModerationHits, BaseOperation):
    """What every moderation result carries; the event's ``operation`` for ``Review*``."""

    kind: str = "ReviewUnknown"
    label: Text = None
    result: Int = None
    suggestion: Int = None
    score: Int = None
    category: Text = None
    sub_label: Text = None
    text: Text = None
    forbid_state: Int = None
    trace_id: Text = None

    @property
    def verdict(self) -> Verdict | None:
        return verdict_of(self.result, self.suggestion)


class ImageModeration(ModerationResult):
    kind: Literal["ReviewImage"] = "ReviewImage"
    compression_result: Int = None


class TextSection(ModerationHits):
    start_byte: Int = None
    label: Text = None
    result: Int = None


class TextModeration(ModerationResult):
    kind: Literal["ReviewText"] = "ReviewText"
    section_count: Int = None
    section: ListOf[TextSection] = Field(default_factory=list)


class AudioSection(ModerationHits):
    url: Text = None
    text: Text = None
    offset_time: Int = None
    duration: Int = None
    label: Text = None
    result: Int = None


class AudioModeration(ModerationResult):
    kind: Literal["ReviewAudio"] = "ReviewAudio"
    audio_text: Text = None
    section: ListOf[AudioSection] = Field(default_factory=list)


class VideoSnapshot(ModerationHits):
    url: Text = None
    text: Text = None
    snapshot_time: Int = None
    label: Text = None
    result: Int = None


class VideoModeration(ModerationResult):
    kind: Literal["ReviewVideo"] = "ReviewVideo"
    snapshot_count: Int = None
    snapshot: ListOf[VideoSnapshot] = Field(default_factory=list)
    audio_section: ListOf[AudioSection] = Field(default_factory=list)


class PageResult(ModerationHits):
    url: Text = None
    text: Text = None
    page_number: Int = None
    sheet_number: Int = None
    label: Text = None
    suggestion: Int = None


class PageResults(VendorModel):
    results: ListOf[PageResult] = Field(default_factory=list)


class DocumentModeration(ModerationResult):
    kind: Literal["ReviewDocument"] = "ReviewDocument"
    page_count: Int = None
    labels: Nested[ModerationHits] = None
    page_segment: Nested[PageResults] = None


class HtmlModeration(ModerationResult):
    kind: Literal["ReviewHtml"] = "ReviewHtml"
    page_count: Int = None
    labels: Nested[ModerationHits] = None
    image_results: Nested[PageResults] = None
    text_results: Nested[PageResults] = None
