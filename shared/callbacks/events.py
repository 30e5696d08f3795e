"""The event model: one :class:`CallbackEvent` per job a callback reports.

This is the contract between the router, the workers and every consumer. Field names are
snake_case; the vendor's names are aliases (``job_id`` / ``JobId``), so an event validates
from either. Events are immutable and survive a JSON round trip unchanged::

    CallbackEvent.model_validate_json(event.model_dump_json()) == event

Every value of the body is reachable from the event: in a typed field, or in
``model_extra`` of the model it belongs to (keys of the body's top level other than the
event's own go to ``response_extra``).
"""

from __future__ import annotations

import types
from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, Self, Union

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from typing_extensions import TypeVar

from shared.callbacks.moderation import (
    MODERATION_EVENTS,
    AudioModeration,
    DocumentModeration,
    HtmlModeration,
    ImageModeration,
    ModerationResult,
    TextModeration,
    VideoModeration,
    hit_label,
    verdict_of,
)
from shared.callbacks.objects import JobInput
from shared.callbacks.operations import (
    AnimationOperation,
    BaseOperation,
    ConcatOperation,
    DigitalWatermarkOperation,
    ExtractDigitalWatermarkOperation,
    GenericOperation,
    ImageInspectOperation,
    ImageOCROperation,
    MediaInfoOperation,
    NoiseReductionOperation,
    PicProcessOperation,
    QualityEstimateOperation,
    SDRtoHDROperation,
    SegmentOperation,
    SmartCoverOperation,
    SnapshotOperation,
    StreamExtractOperation,
    SuperResolutionOperation,
    TranscodeOperation,
    TranslationOperation,
    TtsOperation,
    VideoMontageOperation,
    VideoProcessOperation,
    VoiceSeparateOperation,
)
from shared.callbacks.routing import MISSING, digest, routing_key, task_state_word
from shared.callbacks.vendor import Int, Nested, Text, VendorModel, VendorTime
from shared.callbacks.workflow import WorkflowExecution, WorkflowRef

__all__ = [
    "OPERATION_MODELS",
    "RAW_BODY_CONTEXT",
    "CallbackEvent",
    "Envelope",
    "EventFamily",
    "Operation",
    "OperationT",
]

EventFamily = Literal["task", "workflow", "moderation"]

#: The validation context key of a raw body that travelled beside the event's JSON rather
#: than inside it (``CallbackEvent.model_validate_json(doc, context={RAW_BODY_CONTEXT: raw})``).
RAW_BODY_CONTEXT = "raw_body"

#: The operation model for each ``kind`` (a task's ``Tag``, a moderation event's name).
OPERATION_MODELS: dict[str, type[BaseOperation]] = {
    model.model_fields["kind"].default: model
    for model in (
        ImageOCROperation,
        ImageInspectOperation,
        PicProcessOperation,
        TranslationOperation,
        DigitalWatermarkOperation,
        ExtractDigitalWatermarkOperation,
        TranscodeOperation,
        SnapshotOperation,
        AnimationOperation,
        ConcatOperation,
        SegmentOperation,
        SmartCoverOperation,
        VideoMontageOperation,
        VoiceSeparateOperation,
        SDRtoHDROperation,
        SuperResolutionOperation,
        VideoProcessOperation,
        StreamExtractOperation,
        TtsOperation,
        NoiseReductionOperation,
        MediaInfoOperation,
        QualityEstimateOperation,
        ImageModeration,
        TextModeration,
        AudioModeration,
        VideoModeration,
        DocumentModeration,
        HtmlModeration,
    )
}
_GENERIC = "Generic"


def _operation_model(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("kind", value.get("Kind"))
    else:
        kind = getattr(value, "kind", None)
    return kind if isinstance(kind, str) and kind in OPERATION_MODELS else _GENERIC


if TYPE_CHECKING:
    Operation = BaseOperation
else:
    # A tagged union of every model in the registry plus the generic one, picked by kind.
    Operation = Annotated[
        Union[  # built from the registry at import
            (
                *(Annotated[model, Tag(kind)] for kind, model in OPERATION_MODELS.items()),
                Annotated[GenericOperation, Tag(_GENERIC)],
            )
        ],
        Discriminator(_operation_model),
    ]


#: What ``CallbackEvent[...]`` says the event's ``operation`` is (for type checkers; the
#: consumer runtime checks it at delivery). Unparametrized: ``BaseOperation | None``.
OperationT = TypeVar("OperationT", bound=BaseOperation | None, default=BaseOperation | None)


class _EventAlias(types.GenericAlias):
    """``CallbackEvent[SnapshotOperation]`` at run time: an annotation, not a new model."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        model: Any = self.__origin__
        return model(*args, **kwargs)  # no __orig_class__ on a frozen model


def _is_none(value: object) -> bool:
    return value is None


class Envelope(BaseModel):
    """What the ingress knew about the HTTP request that carried the body."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", ser_json_bytes="base64", val_json_bytes="base64"
    )

    request_id: str
    received_at: AwareDatetime
    source_address: str | None = None
    content_type: str | None = None
    headers: dict[str, str] = {}
    token_name: str | None = None
    #: W3C Trace Context the event continues (the router's publish of it), when traced;
    #: left out of the JSON when ``None``.
    traceparent: str | None = Field(None, exclude_if=_is_none)
    tracestate: str | None = Field(None, exclude_if=_is_none)
    #: The body as it came, byte for byte. Empty only in an event validated from JSON that
    #: left it out, where it travels beside the JSON (``RAW_BODY_CONTEXT``).
    raw_body: bytes = Field(b"", validate_default=True)

    @field_validator("raw_body", mode="wrap")
    @classmethod
    def _raw_body_beside(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> bytes:
        context = info.context
        if context is not None:
            beside = context.get(RAW_BODY_CONTEXT)
            if beside is not None:
                return beside  # type: ignore[no-any-return]
        return handler(value)  # type: ignore[no-any-return]


def _tag(value: Any) -> Any:
    if value is None or (type(value) is str and not value.strip()):
        return MISSING
    return value


class CallbackEvent(VendorModel, Generic[OperationT]):
    """One job's result, whatever the shape of the callback that reported it.

    ``CallbackEvent[SnapshotOperation]`` is the same model for a type checker that knows
    ``operation`` is a ``SnapshotOperation`` (``CallbackEvent[SnapshotOperation | None]``:
    or ``None``); at run time it is an annotation the consumer runtime reads, and parsing
    never makes a model per operation type.

    The job, as the sender reported it:

    - ``event_name``: ``TaskFinish``, ``WorkflowFinish`` or ``Review*`` (a body without
      ``EventName`` is a ``TaskFinish``);
    - ``tag`` (``JobsDetail/Tag``, ``Unknown`` without one), ``sub_tag``, ``state``, ``code``,
      ``message``, ``job_id``, ``queue_id``, ``progress``;
    - ``creation_time``, ``start_time``, ``end_time``: aware datetimes or ``None``;
    - ``input``: what the job read (bucket, object, region, the trigger's ``cos_headers``);
    - ``operation``: the typed result, a model per task type (``ImageOCROperation``, ...),
      the moderation result (``ImageModeration``, ...), or ``GenericOperation``;
    - ``workflow``: the workflow run a task belongs to (run id, workflow id and name, node);
    - ``workflow_execution``: the whole run, for ``WorkflowFinish`` (its ``state``,
      ``creation_time``, ``input`` and ``workflow`` are also set on the event).

    What the parser adds: ``body_format`` (``xml``/``json``), ``content_version``
    (``X-Ci-Content-Version``, or the moderation style seen), ``is_test`` (the console's
    test POST), ``job_index``/``job_count`` (the job's place in ``JobsDetail``),
    ``repaired``/``repairs`` (the JSON repairs applied), ``response_extra`` (top-level fields
    beside the job), ``envelope`` (the HTTP request), and the two keys, derived from the
    fields when not given: ``routing_key`` and ``idempotency_key`` (see
    :mod:`shared.callbacks.routing`).
    """

    event_name: str = "TaskFinish"
    tag: Annotated[str, BeforeValidator(_tag)] = MISSING
    sub_tag: Text = None
    state: Text = None
    code: Text = None
    message: Text = None
    job_id: Text = None
    queue_id: Text = None
    progress: Int = None
    creation_time: VendorTime = None
    start_time: VendorTime = None
    end_time: VendorTime = None
    input: Nested[JobInput] = None
    if TYPE_CHECKING:
        operation: OperationT = None  # type: ignore[assignment]
    else:
        operation: Nested[Operation] = None
    workflow: Nested[WorkflowRef] = None
    workflow_execution: Nested[WorkflowExecution] = None

    body_format: Literal["xml", "json"] | None = None
    content_version: Text = None
    is_test: bool = False
    job_index: int = 0
    job_count: int = 1
    repaired: bool = False
    repairs: list[str] = Field(default_factory=list)
    response_extra: dict[str, Any] = Field(default_factory=dict)
    routing_key: str = ""
    idempotency_key: str = ""
    envelope: Envelope | None = None

    if not TYPE_CHECKING:

        def __class_getitem__(cls, operation: Any) -> Any:
            return _EventAlias(cls, operation)

    @property
    def family(self) -> EventFamily:
        """``moderation`` for ``Review*`` events, ``workflow`` for ``WorkflowFinish``."""
        if self.event_name in MODERATION_EVENTS:
            return "moderation"
        if self.event_name == "WorkflowFinish" or self.workflow_execution is not None:
            return "workflow"
        return "task"

    @property
    def verdict(self) -> str | None:
        """A moderation event's ``Pass``/``Block``/``Review``; ``None`` for other events."""
        op = self.operation
        if isinstance(op, ModerationResult):
            return op.verdict
        return None

    @property
    def failed_sub_steps(self) -> list[str]:
        """Sub-steps that failed inside the job (``DigitalWatermark``), even if it succeeded."""
        return self.operation.failed_sub_steps if self.operation is not None else []

    @model_validator(mode="after")
    def _derive_keys(self) -> Self:
        if not self.routing_key:
            object.__setattr__(self, "routing_key", self._routing_key())
        if not self.idempotency_key:
            object.__setattr__(self, "idempotency_key", self._idempotency_key())
        return self

    def _routing_key(self) -> str:
        family = self.family
        if family == "moderation":
            return routing_key(self.event_name, self._moderation_label(), self._verdict_word())
        if family == "workflow":
            ref = self.workflow
            run = self.workflow_execution
            name = (ref.workflow_name or ref.workflow_id) if ref else None
            if not name and run is not None:
                name = run.workflow_name or run.workflow_id
            return routing_key(self.event_name, name, self.state)
        return routing_key(self.event_name, self.tag, task_state_word(self.state, self.code))

    def _verdict_word(self) -> str | None:
        if self.state and self.state.strip() and self.state != "Success":
            return self.state
        return self.verdict

    def _moderation_label(self) -> str | None:
        if self.is_test:
            return "Test"
        op = self.operation
        if not isinstance(op, ModerationResult):
            return None
        if op.label and op.label.strip():
            return op.label
        found = hit_label(op)
        if found:
            return found
        return "Normal" if verdict_of(op.result, op.suggestion) == "Pass" else None

    def _idempotency_key(self) -> str:
        family = self.family
        op = self.operation
        parts = ["v1", self.routing_key]
        if family == "workflow":
            run = self.workflow_execution
            identity = (self.workflow.run_id if self.workflow else None) or (
                run.run_id if run else None
            )
            parts += [f"{t.job_id}={t.state}" for t in (run.tasks if run else [])]
        elif family == "moderation":
            identity = self.job_id or (op.trace_id if isinstance(op, ModerationResult) else None)
            if isinstance(op, ModerationResult):
                parts += [str(op.result), str(op.suggestion), str(op.score), str(op.forbid_state)]
        else:
            identity = self.job_id
            ended = self.end_time.astimezone(UTC).isoformat() if self.end_time else ""
            parts += [self.code or "", ended]
        if not identity:
            content = self.model_dump_json(exclude=_NOT_CONTENT)
            identity = "content:" + digest([content])
        parts.append(identity)
        return digest(parts)


#: What the event knows about its delivery rather than about the job's result.
_NOT_CONTENT = {
    "envelope",
    "routing_key",
    "idempotency_key",
    "repaired",
    "repairs",
    "body_format",
    "content_version",
    "job_index",
    "job_count",
}
