"""A built-in that exists only in tests: it records what it is given, secrets included."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pydantic
import pytest

from workers import CallbackEvent
from workers.builtin.registry import BUILTINS, Builtin
from workers.consumer import ConsumerSpec, LoadedConsumer

__all__ = ["SinkOptions", "TestSink", "sink_builtin"]


class SinkOptions(pydantic.BaseModel):
    """Options shaped like a real built-in's: a required URL, a secret, optional headers."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    url: str = pydantic.Field(pattern=r"^https?://")
    secret: pydantic.SecretStr
    old_secrets: list[pydantic.SecretStr] = []
    headers: dict[str, str] = {}
    fail: bool = False

    @pydantic.field_validator("secret")
    @classmethod
    def _whsec(cls, value: pydantic.SecretStr) -> pydantic.SecretStr:
        if not value.get_secret_value().startswith("whsec_"):
            raise ValueError("a secret starts with whsec_")
        return value


@dataclass
class TestSink:
    """What the configured sinks received: (consumer name, options, event) per call."""

    __test__ = False

    calls: list[tuple[str, SinkOptions, CallbackEvent]] = field(default_factory=list)

    def build(self, spec: ConsumerSpec, options: SinkOptions) -> LoadedConsumer:
        async def handle(event: CallbackEvent) -> None:
            self.calls.append((spec.name, options, event))
            if options.fail:
                raise RuntimeError("sink fails on purpose")

        return LoadedConsumer.from_handler(spec, handle, f"test sink {spec.name}")


@pytest.fixture
def sink_builtin() -> Iterator[TestSink]:
    """Registers the ``test-sink`` built-in for one test."""
    sink = TestSink()
    BUILTINS["test-sink"] = Builtin("test-sink", SinkOptions, sink.build)
    try:
        yield sink
    finally:
        del BUILTINS["test-sink"]
