"""A handler's parameters and annotations are checked when it is declared, not at its first
event; middleware from an entry point is checked when the worker loads it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import ConfigError, ConsumerDeclarationError
from workers import (
    CallbackEvent,
    Consumer,
    Delivery,
    MediaOperation,
    SnapshotOperation,
    TranscodeOperation,
    consumer,
)
from workers.consumer import LoadedConsumer
from workers.loader import load_middleware


def test_a_handler_of_the_event_and_its_delivery_is_declared_with_its_operation() -> None:
    @consumer(name="thumbs", routes=["TaskFinish.Snapshot.*"])
    async def thumbs(event: CallbackEvent[SnapshotOperation], delivery: Delivery) -> None: ...

    loaded = LoadedConsumer.from_target(thumbs, "test")
    assert loaded.with_delivery is thumbs
    assert loaded.operations is not None
    assert loaded.operations.declared == "CallbackEvent[SnapshotOperation]"
    assert (loaded.operations.models, loaded.operations.optional) == ((SnapshotOperation,), False)


def test_the_class_form_takes_the_same_parameters() -> None:
    @consumer(name="media", routes=["TaskFinish.Transcode.*", "TaskFinish.Snapshot.*"])
    class Media(Consumer):
        async def handle(
            self, event: CallbackEvent[MediaOperation | None], delivery: Delivery
        ) -> None: ...

    loaded = LoadedConsumer.from_target(Media, "test")
    assert loaded.with_delivery is not None
    assert loaded.operations is not None
    assert loaded.operations.declared == "CallbackEvent[MediaOperation | None]"
    assert loaded.operations.optional


def test_a_second_parameter_that_is_not_the_delivery_is_refused() -> None:
    with pytest.raises(ConsumerDeclarationError) as refused:

        @consumer(name="extra", routes=["#"])
        async def extra(event: CallbackEvent, retries: int) -> None: ...

    assert str(refused.value) == (
        "consumer 'extra': the handler must take exactly one argument, the event, or two: "
        "the event and its Delivery; its parameter 'retries' is annotated int, not Delivery"
    )


async def _nothing() -> None: ...


async def _three(event: CallbackEvent, delivery: Delivery, more: int) -> None: ...


@pytest.mark.parametrize("handler", [_nothing, _three])
def test_a_handler_of_no_or_three_parameters_is_refused(handler: object) -> None:
    declare = consumer(name="arity", routes=["#"])
    with pytest.raises(ConsumerDeclarationError, match="exactly one argument, the event, or two"):
        declare(handler)


def test_an_event_annotated_with_something_else_is_refused() -> None:
    with pytest.raises(ConsumerDeclarationError, match="annotated dict: annotate it CallbackEvent"):

        @consumer(name="dicts", routes=["#"])
        async def dicts(event: dict[str, str]) -> None: ...

    with pytest.raises(
        ConsumerDeclarationError, match=r"takes operation models .* not <class 'int'>"
    ):

        @consumer(name="ints", routes=["#"])
        async def ints(event: CallbackEvent[int]) -> None:  # type: ignore[type-var]
            ...


def test_a_route_that_never_carries_the_declared_operation_is_refused() -> None:
    with pytest.raises(ConsumerDeclarationError) as refused:

        @consumer(name="mixed", routes=["TaskFinish.Snapshot.*", "TaskFinish.Transcode.*"])
        async def mixed(event: CallbackEvent[SnapshotOperation]) -> None: ...

    assert str(refused.value) == (
        "consumer 'mixed': route 'TaskFinish.Transcode.*' carries Transcode events, but the "
        "handler takes a Snapshot operation (CallbackEvent[SnapshotOperation])"
    )

    @consumer(name="both", routes=["TaskFinish.Snapshot.*", "TaskFinish.Transcode.*", "#"])
    async def both(event: CallbackEvent[SnapshotOperation | TranscodeOperation]) -> None: ...


def test_an_annotation_that_cannot_be_resolved_is_refused_when_it_asks_for_a_check() -> None:
    module = textwrap.dedent(
        """
        from __future__ import annotations
        from workers import CallbackEvent, consumer

        @consumer(name="hidden", routes=["#"])
        async def hidden(event: CallbackEvent[SnapshotOperation]) -> None: ...
        """
    )  # SnapshotOperation imported under TYPE_CHECKING only, say
    with pytest.raises(ConsumerDeclarationError, match="cannot resolve the handler's annotations"):
        exec(module, {})


@pytest.fixture
def middleware_package(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "acme_middleware.py").write_text(
        "async def good(event, delivery, call_next):\n    await call_next()\n\n"
        "def wrong(event):\n    return None\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("acme_middleware", None)


def _entry_points(package: Path, lines: str) -> None:
    dist = package / "acme_middleware-1.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-middleware\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[callback_fanout.middleware]\n{lines}")


def test_middleware_entry_points_load_in_name_order_only_when_entry_points_are_on(
    middleware_package: Path,
) -> None:
    _entry_points(middleware_package, "z = acme_middleware:good\na = acme_middleware:good\n")
    import acme_middleware  # type: ignore[import-not-found]

    assert load_middleware(use_entry_points=True) == [acme_middleware.good, acme_middleware.good]
    assert load_middleware(use_entry_points=False) == []


def test_a_middleware_of_the_wrong_shape_is_refused_when_loaded(middleware_package: Path) -> None:
    _entry_points(middleware_package, "bad = acme_middleware:wrong\n")
    with pytest.raises(ConfigError, match=r"entry point 'bad' .*\(event, delivery, call_next\)"):
        load_middleware(use_entry_points=True)
