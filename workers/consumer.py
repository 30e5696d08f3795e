"""The consumer contract: the ``@consumer`` decorator, the class form and their checks.

A consumer is an ``async def handle(event)`` (a plain ``def`` runs in a thread pool) or a
class with ``handle`` and optional ``startup``/``shutdown`` hooks. The handler may take a
second parameter, the :class:`~workers.delivery.Delivery` (attempt, ids, a bound logger).
Annotating the event ``CallbackEvent[SnapshotOperation]`` makes it a contract: the type
checker sees a ``SnapshotOperation``, and the runtime parks, without a retry, an event whose
operation is of another kind (``CallbackEvent[SnapshotOperation | None]`` also takes an event
without one). Its declaration is checked when it is declared, not when the first message
arrives: the name, routes and policy, the handler's parameters and their annotations, and
that each route naming a task type can carry the declared operation.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.callbacks.events import OPERATION_MODELS, CallbackEvent
from shared.callbacks.filters import EventFilter, FilterValue
from shared.callbacks.moderation import MODERATION_EVENTS
from shared.callbacks.operations import BaseOperation, GenericOperation
from shared.errors import ConsumerDeclarationError
from shared.topology import valid_route
from workers.delivery import Delivery

__all__ = [
    "SPEC_ATTRIBUTE",
    "Breaker",
    "Consumer",
    "ConsumerSpec",
    "DeliveryHandler",
    "Handler",
    "LoadedConsumer",
    "OperationCheck",
    "consumer",
    "filter_of",
]

SPEC_ATTRIBUTE = "__callback_fanout_consumer__"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

T = TypeVar("T")


#: A handler of the event alone (the one-parameter form).
Handler = Callable[[CallbackEvent], Awaitable[None]]
#: A handler of the event and its delivery (the two-parameter form).
DeliveryHandler = Callable[[CallbackEvent, Delivery], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Breaker:
    """A circuit breaker: after ``failures`` handler failures in a row (exceptions and
    timeouts; ``GiveUp`` does not count), take none of the consumer's events for
    ``cool_down`` seconds, then let one through: its success closes the breaker, its failure
    opens it again. ``@consumer(breaker=Breaker(failures=20, cool_down=30))``."""

    failures: int = 20
    cool_down: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.failures, bool) or not isinstance(self.failures, int):
            raise ConsumerDeclarationError("breaker failures must be an integer >= 1")
        if self.failures < 1:
            raise ConsumerDeclarationError("breaker failures must be an integer >= 1")
        if not self.cool_down > 0:
            raise ConsumerDeclarationError("breaker cool_down must be positive seconds")


@dataclass(frozen=True)
class ConsumerSpec:
    """What a consumer declares; ``None`` means "the settings' default".

    ``breaker``, ``rate_limit`` (events per second) and ``filter`` hold a destination: see
    :class:`Breaker` and :class:`~shared.callbacks.filters.EventFilter`.
    """

    name: str
    routes: tuple[str, ...]
    concurrency: int | None = None
    max_attempts: int | None = None
    retry_delays: tuple[float, ...] | None = None
    timeout: float | None = None
    dedupe: bool = False
    dedupe_window: float | None = None
    breaker: Breaker | None = None
    rate_limit: float | None = None
    filter: EventFilter | None = None

    def __post_init__(self) -> None:
        where = f"consumer {self.name!r}"
        if self.rate_limit is not None and (
            isinstance(self.rate_limit, bool) or not self.rate_limit > 0
        ):
            raise ConsumerDeclarationError(f"{where}: rate_limit must be positive events/s")
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
    """Base for the class form. Override :meth:`handle`; the hooks default to no-ops.

    ``handle`` takes the event, and optionally the :class:`~workers.delivery.Delivery`:
    ``async def handle(self, event: CallbackEvent[SnapshotOperation], delivery: Delivery)``.
    """

    async def startup(self) -> None:
        """Called once before the first event: open connections here."""

    async def shutdown(self) -> None:
        """Called once after the last event: close what startup opened."""

    if typing.TYPE_CHECKING:  # any of the handler's forms overrides it
        handle: Callable[..., Awaitable[None]]
    else:

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
    breaker: Breaker | None = None,
    rate_limit: float | None = None,
    filter: Mapping[str, FilterValue] | None = None,
) -> Callable[[T], T]:
    """Declare a consumer: a handler function or a :class:`Consumer` subclass.

    ``@consumer(name="thumbnails", routes=["TaskFinish.Snapshot.*"], concurrency=16)``;
    ``breaker=Breaker(failures=20, cool_down=30)``, ``rate_limit=50`` (events per second)
    and ``filter={"input.bucket_id": "media-prod", "code": ["Success", "0"]}`` hold its
    destination.
    """
    if isinstance(routes, str):
        routes = [routes]
    event_filter = filter_of(name, filter) if filter is not None else None
    spec = ConsumerSpec(
        name=name,
        routes=tuple(routes),
        concurrency=concurrency,
        max_attempts=max_attempts,
        retry_delays=tuple(retry_delays) if retry_delays is not None else None,
        timeout=timeout,
        dedupe=dedupe,
        dedupe_window=dedupe_window,
        breaker=breaker,
        rate_limit=rate_limit,
        filter=event_filter,
    )

    def declare(target: T) -> T:
        if inspect.isclass(target):
            if not issubclass(target, Consumer):
                raise ConsumerDeclarationError(
                    f"consumer {name!r}: a class consumer must subclass workers.Consumer"
                )
            if target.handle is Consumer.handle:
                raise ConsumerDeclarationError(f"consumer {name!r}: the class must define handle()")
            _Signature.of(spec, target.handle, method=True)
        elif not callable(target):
            raise ConsumerDeclarationError(f"consumer {name!r}: not a function or class")
        else:
            _Signature.of(spec, target)
        setattr(target, SPEC_ATTRIBUTE, spec)
        return target

    return declare


def filter_of(name: str, spec: Mapping[str, FilterValue]) -> EventFilter:
    """Consumer ``name``'s filter of ``spec``, checked against the event model."""
    try:
        return EventFilter.of(spec)
    except ValueError as exc:
        raise ConsumerDeclarationError(f"consumer {name!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class OperationCheck:
    """What a handler's ``CallbackEvent[...]`` annotation takes as the event's operation."""

    consumer: str
    declared: str  # the annotation as written: CallbackEvent[SnapshotOperation]
    models: tuple[type[BaseOperation], ...]
    optional: bool  # ``... | None``: an event without an operation too

    def mismatch(self, event: CallbackEvent) -> str | None:
        """Why ``event`` is not for this handler (the park reason), or ``None``."""
        operation = event.operation
        if (operation is None and self.optional) or isinstance(operation, self.models):
            return None
        takes = f"kind mismatch: {self.consumer!r} takes {self.kinds} ({self.declared})"
        if operation is None:
            return (
                f"{takes}, event {event.routing_key} carries no operation "
                f"(declare {self.declared[:-1]} | None] to take it)"
            )
        carries = f"a {operation.kind} operation ({type(operation).__name__})"
        return f"{takes}, event {event.routing_key} carries {carries}"

    @property
    def kinds(self) -> str:
        """``a Snapshot operation``, ``a Snapshot or Transcode operation``."""
        return f"a {' or '.join(_kind_of(model) for model in self.models)} operation"

    def takes_kind(self, kind: str) -> bool:
        """Whether an event whose operation is of ``kind`` can reach the handler."""
        return issubclass(OPERATION_MODELS.get(kind, GenericOperation), self.models)


def _kind_of(model: type[BaseOperation]) -> str:
    kind = model.model_fields["kind"].default
    return kind if OPERATION_MODELS.get(kind) is model else model.__name__


@dataclass(frozen=True, slots=True)
class _Signature:
    """A handler's parameters, checked: does it take the delivery, which operations."""

    takes_delivery: bool
    operations: OperationCheck | None

    @classmethod
    def of(cls, spec: ConsumerSpec, fn: Callable[..., Any], *, method: bool = False) -> _Signature:
        """Check ``fn`` (``method``: a class's function, ``self`` first) as ``spec``'s handler.

        Raises :class:`ConsumerDeclarationError` naming what is wrong.
        """
        where = f"consumer {spec.name!r}"
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # a builtin without a signature: take it at its word
            return cls(False, None)
        if method:
            params = params[1:]
        positional = [p for p in params if p.kind in _POSITIONAL]
        required = [p for p in params if p.default is p.empty and p.kind not in _VARIADIC]
        variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        if (
            len(required) > 2
            or (not positional and not variadic)
            or len(required) > len(positional)
        ):
            raise ConsumerDeclarationError(f"{where}: {_ARITY}")
        hints = _hints(where, fn)
        takes_delivery = len(positional) >= 2
        if takes_delivery:
            second = positional[1]
            annotation = hints.get(second.name, Delivery)
            if annotation not in (Delivery, Any):
                shown = getattr(annotation, "__name__", annotation)
                raise ConsumerDeclarationError(
                    f"{where}: {_ARITY}; its parameter {second.name!r} is annotated {shown}, "
                    "not Delivery"
                )
        first = positional[0].name if positional else None
        operations = _operation_check(spec, hints.get(first)) if first else None
        if operations is not None:
            _check_routes(spec, operations)
        return cls(takes_delivery, operations)


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_ARITY = "the handler must take exactly one argument, the event, or two: the event and its Delivery"


def _hints(where: str, fn: Callable[..., Any]) -> dict[str, Any]:
    """The handler's annotations, resolved; unresolvable ones only when nothing needs them."""
    try:
        return typing.get_type_hints(fn)
    except Exception as exc:
        written = " ".join(str(v) for v in getattr(fn, "__annotations__", {}).values())
        if "CallbackEvent[" in written or "Delivery" in written:
            raise ConsumerDeclarationError(
                f"{where}: cannot resolve the handler's annotations ({exc!r}): import what "
                "they name at the top of its module, not under TYPE_CHECKING"
            ) from None
        return {}


def _operation_check(spec: ConsumerSpec, annotation: Any) -> OperationCheck | None:
    """The check a ``CallbackEvent[...]`` annotation asks for; ``None`` for any event."""
    where = f"consumer {spec.name!r}"
    if annotation is None or annotation in (CallbackEvent, Any, object):
        return None
    if typing.get_origin(annotation) is not CallbackEvent:
        shown = getattr(annotation, "__name__", annotation)
        raise ConsumerDeclarationError(
            f"{where}: the handler's event is annotated {shown}: annotate it CallbackEvent, "
            "or CallbackEvent[SomeOperation] to take only that kind of operation"
        )
    [argument] = typing.get_args(annotation)
    members = (
        typing.get_args(argument)
        if typing.get_origin(argument) in (types.UnionType, typing.Union)
        else (argument,)
    )
    models = tuple(m for m in members if m is not type(None))
    wrong = [m for m in models if not (isinstance(m, type) and issubclass(m, BaseOperation))]
    if wrong or not models:
        raise ConsumerDeclarationError(
            f"{where}: CallbackEvent[...] takes operation models (SnapshotOperation, "
            f"ImageModeration, ... from workers), not {argument!r}"
        )
    names = " | ".join([m.__name__ for m in models] + ["None"] * (len(models) < len(members)))
    return OperationCheck(spec.name, f"CallbackEvent[{names}]", models, len(models) < len(members))


def _check_routes(spec: ConsumerSpec, operations: OperationCheck) -> None:
    """Refuse a route that names a kind of event the handler never takes."""
    for route in spec.routes:
        words = route.split(".")
        if words[0] in MODERATION_EVENTS:
            kind = words[0]
        elif words[0] == "TaskFinish" and len(words) > 1 and words[1] not in ("*", "#"):
            kind = words[1]
        else:
            continue
        if not operations.takes_kind(kind):
            raise ConsumerDeclarationError(
                f"consumer {spec.name!r}: route {route!r} carries {kind} events, but the "
                f"handler takes {operations.kinds} ({operations.declared})"
            )


@dataclass(frozen=True)
class LoadedConsumer:
    """A declared consumer made ready to run: its spec and its three callables.

    ``handle`` runs the handler on an event alone; the runtime runs it with :meth:`call`,
    which also passes the delivery to a handler that takes one (``with_delivery``).
    ``operations`` is what its ``CallbackEvent[...]`` annotation takes (``None``: any).
    """

    spec: ConsumerSpec
    handle: Handler
    startup: Callable[[], Awaitable[None]]
    shutdown: Callable[[], Awaitable[None]]
    origin: str
    target: object = None  # what was declared: loading it twice is not a conflict
    operations: OperationCheck | None = None
    with_delivery: DeliveryHandler | None = None

    def call(self, event: CallbackEvent, delivery: Delivery) -> Awaitable[None]:
        """The handler as the runtime runs it: with the delivery when it takes one."""
        if self.with_delivery is not None:
            return self.with_delivery(event, delivery)
        return self.handle(event)

    @classmethod
    def from_target(cls, target: object, origin: str) -> LoadedConsumer:
        spec = getattr(target, SPEC_ATTRIBUTE, None)
        if not isinstance(spec, ConsumerSpec):
            raise ConsumerDeclarationError(f"{origin}: not declared with @consumer")
        if inspect.isclass(target) and issubclass(target, Consumer):
            return cls.from_instance(spec, target(), origin, target)
        assert callable(target)
        return cls.from_handler(spec, target, origin, target=target)

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
        return cls.from_handler(
            spec,
            instance.handle,
            origin,
            startup=instance.startup,
            shutdown=instance.shutdown,
            target=target,
        )

    @classmethod
    def from_handler(
        cls,
        spec: ConsumerSpec,
        handle: Callable[..., Any],
        origin: str,
        *,
        startup: Callable[[], Awaitable[None]] | None = None,
        shutdown: Callable[[], Awaitable[None]] | None = None,
        target: object = None,
    ) -> LoadedConsumer:
        """A consumer of ``handle`` under ``spec`` (a configured built-in: ``spec`` is its
        declaration); the handler is checked as ``@consumer`` checks it."""
        signature = _Signature.of(spec, handle)
        with_delivery = _with_delivery(handle) if signature.takes_delivery else None
        return cls(
            spec,
            _alone(spec, handle, with_delivery),
            startup or _noop,
            shutdown or _noop,
            origin,
            target,
            signature.operations,
            with_delivery,
        )


async def _noop() -> None:
    return None


def _with_delivery(fn: Callable[..., Any]) -> DeliveryHandler:
    if inspect.iscoroutinefunction(fn):
        return fn

    async def in_thread(event: CallbackEvent, delivery: Delivery) -> None:
        await asyncio.to_thread(fn, event, delivery)

    return in_thread


def _alone(
    spec: ConsumerSpec, fn: Callable[..., Any], with_delivery: DeliveryHandler | None
) -> Handler:
    """``fn`` on an event alone; a handler of the delivery too gets a first try's."""
    if with_delivery is not None:

        def first_try(event: CallbackEvent) -> Awaitable[None]:
            return with_delivery(event, Delivery.of(event, spec.name, 1, spec.max_attempts or 1))

        return first_try
    if inspect.iscoroutinefunction(fn):
        return fn

    async def in_thread(event: CallbackEvent) -> None:
        await asyncio.to_thread(fn, event)

    return in_thread
