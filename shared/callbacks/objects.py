"""Where a job reads and writes: its input object with the trigger's headers, its output."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from shared.callbacks.vendor import ListOf, Text, VendorModel, as_list

__all__ = ["CosHeader", "CosHeaderList", "JobInput", "OutputLocation", "StreamExtractOutput"]


class CosHeader(VendorModel):
    """One header of the object that triggered the job (``CosHeaders``)."""

    key: Text = None
    value: Text = None


def _cos_headers(value: Any) -> Any:
    """A list of ``{Key, Value}``; also from the ``{"name": "value"}`` map moderation sends."""
    if type(value) is dict and "Key" not in value and "key" not in value:
        return [{"Key": key, "Value": item} for key, item in value.items()]
    return as_list(value)


CosHeaderList = Annotated[list[CosHeader], BeforeValidator(_cos_headers)]


class JobInput(VendorModel):
    """What the job read: ``Input`` (bucket, object, region, the trigger's headers).

    A moderation job's object may be a ``url``; a translation job's input has its
    language, document type and, for a picture input, the type it was converted from.
    """

    bucket_id: Text = None
    object: Text = None
    region: Text = None
    url: Text = None
    cos_headers: CosHeaderList = Field(default_factory=list)
    lang: Text = None
    type: Text = None
    basic_type: Text = None

    @property
    def headers(self) -> dict[str, str]:
        """The trigger's headers as a dict (the last one wins for a repeated name)."""
        return {h.key: h.value or "" for h in self.cos_headers if h.key is not None}


class StreamExtractOutput(VendorModel):
    """One stream written by a StreamExtract job."""

    output: Text = None


class OutputLocation(VendorModel):
    """Where the job was told to write: ``Operation/Output``."""

    bucket: Text = None
    object: Text = None
    region: Text = None
    sprite_object: Text = None
    au_object: Text = None
    stream_extract: ListOf[StreamExtractOutput] = Field(default_factory=list)
