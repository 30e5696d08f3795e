"""The pytest plugin of the test kit (entry point ``pytest11``): the ``fanout`` fixture."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from shared.callbacks.events import CallbackEvent
from shared.settings import Settings
from workers.middleware import Middleware
from workers.testing.events import make_event
from workers.testing.harness import ConsumerHarness
from workers.testing.seeds import seed, seed_names

__all__ = ["FanoutKit", "fanout"]


class FanoutKit:
    """What the ``fanout`` fixture gives a test."""

    def __init__(self) -> None:
        self.harnesses: list[ConsumerHarness] = []

    def harness(
        self,
        target: object,
        *,
        settings: Settings | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> ConsumerHarness:
        """A :class:`ConsumerHarness` for ``target`` (a ``@consumer`` or a loaded consumer)."""
        harness = ConsumerHarness(target, settings=settings, middleware=middleware)
        self.harnesses.append(harness)
        return harness

    @staticmethod
    def make_event(tag: str = "Transcode", state: str = "Success", **fields: Any) -> CallbackEvent:
        """A valid task event: see :func:`workers.testing.make_event`."""
        return make_event(tag, state, **fields)

    @staticmethod
    def seed(name: str) -> bytes:
        """A bundled example callback body by name (``ocr.1.xml``)."""
        return seed(name)

    @staticmethod
    def seed_names() -> list[str]:
        return seed_names()


@pytest.fixture
def fanout() -> Iterator[FanoutKit]:
    """The consumer test kit: harnesses, events and the vendor's example callbacks."""
    kit = FanoutKit()
    yield kit
    opened = [
        h.name for h in kit.harnesses if h.started and not h.closed and h.consumer.has_shutdown
    ]
    if opened:
        pytest.fail(
            f"the harness of {', '.join(opened)} ran startup but never shutdown: "
            "use `async with fanout.harness(...)` or `await harness.close()`",
            pytrace=False,
        )
