"""The consumer contract: the ``@consumer`` decorator, the class form and their checks.

A consumer is an ``async def handle(event)`` (a plain ``def`` runs in a thread pool) or a
class with ``handle`` and optional ``startup``/``shutdown`` hooks. Its declaration is checked
when it is declared, not when the first message arrives.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.callbacks.events import CallbackEvent
from shared.errors import ConsumerDeclarationError
from shared.topology import valid_route

__all__ = [
    "SPEC_ATTRIBUTE",
    "Consumer",
    "ConsumerSpec",
    "Handler",
    "LoadedConsumer",
    "consumer",
]

SPEC_ATTRIBUTE = "__callback_fanout_consumer__"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

Handler = Callable[[CallbackEvent], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True)
class ConsumerSpec:
    """What a consumer declares; ``None`` means "the settings' default"."""

    name: str
    routes: tuple[str, ...]
    concurrency: int | None = None
    max_attempts: int | None = None
    retry_delays: tuple[float, ...] | None = None
    timeout: float | None = None
    dedupe: bool = False
    dedupe_window: float | None = None

    def __post_init__(self) -> None:
        where = f"consumer {self.name!r}"
        if not _NAME_RE.fullmatch(self.name):
            raise ConsumerDeclarationError(
                f"{where}: name must be 1-63 characters of lowercase letters, digits, '_' "
                "or '-', starting with a letter or digit"
            )
        if not self.routes:
            raise ConsumerDeclarationError(f"{where}: needs at least one route")
        for route in self.routes:
            if not isinstance(route, str) or not valid_route(route):
                raise ConsumerDeclarationError(
                    f"{where}: route {route!r} is not an AMQP topic pattern "
                    "(dot-separated words of letters, digits, '_' or '-', or '*' and '#')"
                )
        for field, value in (
            ("concurrency", self.concurrency),
            ("max_attempts", self.max_attempts),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConsumerDeclarationError(f"{where}: {field} must be an integer >= 1")
        for field, number in (("timeout", self.timeout), ("dedupe_window", self.dedupe_window)):
            if number is not None and number <= 0:
                raise ConsumerDeclarationError(f"{where}: {field} must be positive seconds")
        if self.retry_delays is not None and (
            not self.retry_delays or any(d <= 0 for d in self.retry_delays)
        ):
            raise ConsumerDeclarationError(
                f"{where}: retry_delays must be a non-empty list of positive seconds"
            )


class Consumer:
    """Base for the class form. Override :meth:`handle`; the hooks default to no-ops."""

    async def startup(self) -> None:
        """Called once before the first event: open connections here."""

    async def shutdown(self) -> None:
        """Called once after the last event: close what startup opened."""

    async def handle(self, event: CallbackEvent) -> None:
        """Handle one event. Raise to retry; raise ``GiveUp`` to park it at once."""
        raise NotImplementedError


def consumer(
    *,
    name: str,
    routes: Sequence[str],
    concurrency: int | None = None,
    max_attempts: int | None = None,
    retry_delays: Sequence[float] | None = None,
    timeout: float | None = None,
    dedupe: bool = False,
    dedupe_window: float | None = None,
) -> Callable[[T], T]:
    """Declare a consumer: a handler function or a :class:`Consumer` subclass.

    ``@consumer(name="thumbnails", routes=["TaskFinish.Snapshot.*"], concurrency=16)``
    """
    if isinstance(routes, str):
        routes = [routes]
    spec = ConsumerSpec(
        name=name,
        routes=tuple(routes),
        concurrency=concurrency,
        max_attempts=max_attempts,
        retry_delays=tuple(retry_delays) if retry_delays is not None else None,
        timeout=timeout,
        dedupe=dedupe,
        dedupe_window=dedupe_window,
    )

    def declare(target: T) -> T:
        if inspect.isclass(target):
            if not issubclass(target, Consumer):
                raise ConsumerDeclarationError(
                    f"consumer {name!r}: a class consumer must subclass workers.Consumer"
                )
            if target.handle is Consumer.handle:
                raise ConsumerDeclarationError(f"consumer {name!r}: the class must define handle()")
        elif not callable(target):
            raise ConsumerDeclarationError(f"consumer {name!r}: not a function or class")
        else:
            _check_arity(name, target)
        setattr(target, SPEC_ATTRIBUTE, spec)
        return target

    return declare


def _check_arity(name: str, fn: Callable[..., Any]) -> None:
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        raise ConsumerDeclarationError(
            f"consumer {name!r}: the handler must take exactly one argument, the event"
        ) from None


@dataclass(frozen=True)
class LoadedConsumer:
    """A declared consumer made ready to run: its spec and its three callables."""

    spec: ConsumerSpec
    handle: Handler
    startup: Callable[[], Awaitable[None]]
    shutdown: Callable[[], Awaitable[None]]
    origin: str
    target: object = None  # what was declared: loading it twice is not a conflict

    @classmethod
    def from_target(cls, target: object, origin: str) -> LoadedConsumer:
        spec = getattr(target, SPEC_ATTRIBUTE, None)
        if not isinstance(spec, ConsumerSpec):
            raise ConsumerDeclarationError(f"{origin}: not declared with @consumer")
        if inspect.isclass(target) and issubclass(target, Consumer):
            return cls.from_instance(spec, target(), origin, target)
        assert callable(target)
        return cls(spec, _as_async(target), _noop, _noop, origin, target)

    @property
    def has_shutdown(self) -> bool:
        """Whether a shutdown hook of the consumer's own must run."""
        hook = getattr(self.shutdown, "__func__", self.shutdown)
        return hook is not _noop and hook is not Consumer.shutdown

    @classmethod
    def from_instance(
        cls, spec: ConsumerSpec, instance: Consumer, origin: str, target: object = None
    ) -> LoadedConsumer:
        """A class-form consumer already made (a configured built-in, or a declared class)."""
        return cls(spec, instance.handle, instance.startup, instance.shutdown, origin, target)

    @classmethod
    def from_handler(
        cls,
        spec: ConsumerSpec,
        handle: Callable[[CallbackEvent], Any],
        origin: str,
        *,
        startup: Callable[[], Awaitable[None]] | None = None,
        shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> LoadedConsumer:
        """A consumer built at run time (a configured built-in): ``spec`` is its declaration."""
        return cls(spec, _as_async(handle), startup or _noop, shutdown or _noop, origin)


async def _noop() -> None:
    return None


def _as_async(fn: Callable[[CallbackEvent], Any]) -> Handler:
    if inspect.iscoroutinefunction(fn):
        return fn

    async def in_thread(event: CallbackEvent) -> None:
        await asyncio.to_thread(fn, event)

    return in_thread
