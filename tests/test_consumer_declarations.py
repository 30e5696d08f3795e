"""Consumers are checked when declared and found by module path, built-in name and entry point."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.errors import ConsumerDeclarationError
from workers import CallbackEvent, Consumer, consumer
from workers.consumer import LoadedConsumer
from workers.loader import load_consumers


def test_a_bad_name_is_refused_when_declared() -> None:
    with pytest.raises(ConsumerDeclarationError, match="name must be"):
        consumer(name="Bad Name!", routes=["#"])


@pytest.mark.parametrize("route", ["", "TaskFinish..Success", "Task Finish.*", "a.b*"])
def test_a_route_that_is_not_a_topic_pattern_is_refused_when_declared(route: str) -> None:
    with pytest.raises(ConsumerDeclarationError, match="not an AMQP topic pattern"):
        consumer(name="ok", routes=[route])


def test_a_consumer_without_routes_is_refused() -> None:
    with pytest.raises(ConsumerDeclarationError, match="at least one route"):
        consumer(name="ok", routes=[])


def test_a_handler_that_does_not_take_one_event_is_refused() -> None:
    with pytest.raises(ConsumerDeclarationError, match="exactly one argument"):

        @consumer(name="ok", routes=["#"])
        async def handle(event: CallbackEvent, extra: int) -> None: ...


def test_a_class_consumer_must_define_handle() -> None:
    with pytest.raises(ConsumerDeclarationError, match="must define handle"):

        @consumer(name="ok", routes=["#"])
        class Nothing(Consumer):
            pass


@pytest.mark.parametrize(
    ("field", "declare"),
    [
        ("concurrency", lambda: consumer(name="ok", routes=["#"], concurrency=0)),
        ("max_attempts", lambda: consumer(name="ok", routes=["#"], max_attempts=-1)),
        ("timeout", lambda: consumer(name="ok", routes=["#"], timeout=0.0)),
        ("retry_delays", lambda: consumer(name="ok", routes=["#"], retry_delays=[1.0, -2.0])),
    ],
)
def test_a_bad_policy_is_refused(field: str, declare: Callable[[], object]) -> None:
    with pytest.raises(ConsumerDeclarationError, match=field):
        declare()


async def test_a_plain_function_consumer_runs_in_a_thread() -> None:
    import threading

    seen: list[str] = []

    @consumer(name="plain", routes=["#"])
    def handle(event: CallbackEvent) -> None:
        seen.append(threading.current_thread().name)

    loaded = LoadedConsumer.from_target(handle, "test")
    await loaded.handle(None)  # type: ignore[arg-type]
    assert seen
    assert seen[0] != threading.main_thread().name


@pytest.fixture
def consumer_package(tmp_path: Path) -> Iterator[Path]:
    """An installed-looking package with two consumers and an entry point."""
    (tmp_path / "acme_consumers.py").write_text(
        textwrap.dedent(
            """
            from workers import CallbackEvent, Consumer, consumer

            @consumer(name="thumbs", routes=["TaskFinish.Snapshot.*"], concurrency=16)
            async def thumbs(event):
                return None

            @consumer(name="audit", routes=["#"], max_attempts=2)
            class Audit(Consumer):
                async def handle(self, event):
                    return None

            def not_a_consumer(event):
                return None
            """
        )
    )
    dist = tmp_path / "acme_consumers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-consumers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[callback_fanout.consumers]\nthumbs = acme_consumers:thumbs\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("acme_consumers", None)


def test_a_module_path_loads_every_consumer_declared_in_it(consumer_package: Path) -> None:
    loaded = load_consumers(["acme_consumers"], use_entry_points=False)
    assert sorted(c.spec.name for c in loaded) == ["audit", "thumbs"]
    thumbs = next(c for c in loaded if c.spec.name == "thumbs")
    assert thumbs.spec.concurrency == 16
    assert thumbs.spec.routes == ("TaskFinish.Snapshot.*",)


def test_a_module_attribute_loads_one_consumer(consumer_package: Path) -> None:
    [loaded] = load_consumers(["acme_consumers:Audit"], use_entry_points=False)
    assert loaded.spec.name == "audit"
    assert loaded.spec.max_attempts == 2


def test_the_entry_point_group_loads_a_shipped_package(consumer_package: Path) -> None:
    loaded = load_consumers([], use_entry_points=True)
    assert [c.spec.name for c in loaded] == ["thumbs"]


def test_the_builtin_log_consumer_loads_by_name() -> None:
    [loaded] = load_consumers(["log"], use_entry_points=False)
    assert loaded.spec.name == "log"
    assert loaded.spec.routes == ("#",)


def test_an_undeclared_attribute_is_a_clear_error(consumer_package: Path) -> None:
    with pytest.raises(ConsumerDeclarationError, match="not declared with @consumer"):
        load_consumers(["acme_consumers:not_a_consumer"], use_entry_points=False)


def test_a_missing_module_is_a_clear_error() -> None:
    with pytest.raises(ConsumerDeclarationError, match="cannot import module 'no_such_mod'"):
        load_consumers(["no_such_mod"], use_entry_points=False)


def test_one_consumer_named_twice_loads_once(consumer_package: Path) -> None:
    loaded = load_consumers(["acme_consumers", "acme_consumers:thumbs"], use_entry_points=True)
    assert sorted(c.spec.name for c in loaded) == ["audit", "thumbs"]


def test_two_consumers_with_one_name_are_refused(consumer_package: Path) -> None:
    (consumer_package / "other_consumers.py").write_text(
        "from workers import consumer\n\n"
        "@consumer(name='thumbs', routes=['#'])\n"
        "async def thumbs(event):\n    return None\n"
    )
    with pytest.raises(ConsumerDeclarationError, match="two consumers are named 'thumbs'"):
        load_consumers(["acme_consumers", "other_consumers"], use_entry_points=False)
    sys.modules.pop("other_consumers", None)
