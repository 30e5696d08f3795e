"""Finding consumers (configured in the file, by module path, by built-in name, by entry
point) and the worker's middleware (by entry point)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from shared.configfile import ConfigFile
from shared.errors import ConfigError, ConsumerDeclarationError
from shared.settings import Settings
from workers.builtin import registry
from workers.configured import build_configured
from workers.consumer import SPEC_ATTRIBUTE, LoadedConsumer
from workers.middleware import Middleware

__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "MIDDLEWARE_GROUP",
    "consumers_of",
    "load_consumers",
    "load_middleware",
]

ENTRY_POINT_GROUP = "callback_fanout.consumers"
#: Where a worker finds its middleware: ``tracing = "acme_callbacks.tracing:Tracing"``.
MIDDLEWARE_GROUP = "callback_fanout.middleware"

#: Built-in consumers usable by name without options: ``--consumer log``.
BUILTINS = {
    "log": "workers.builtin.log:log_consumer",
}


def consumers_of(settings: Settings, environ: Mapping[str, str]) -> list[LoadedConsumer]:
    """Every consumer the settings name: the configuration file's, ``--consumer``'s, and the
    entry points' (``environ`` resolves the file's ``{ env = ... }`` secrets)."""
    configured = (
        build_configured(ConfigFile.read(settings.config), environ) if settings.config else []
    )
    loaded = load_consumers(
        settings.consumers,
        use_entry_points=settings.entry_points,
        configured=[c.consumer for c in configured],
    )
    for item in configured:  # once every consumer loaded: a failed start logs nothing but why
        item.announce()
    return loaded


def load_consumers(
    refs: Iterable[str],
    *,
    use_entry_points: bool,
    configured: Sequence[LoadedConsumer] = (),
) -> list[LoadedConsumer]:
    """Load every consumer named by ``refs`` (and the entry-point group), names unique.

    ``configured`` are the consumers of the configuration file, already built. A ref is a
    built-in name (``log``), a module (``pkg.module``: every consumer declared in it) or one
    attribute (``pkg.module:attr``). Two consumers with one name are an error naming both.
    """
    loaded: list[LoadedConsumer] = list(configured)
    for ref in refs:
        if ref not in BUILTINS and ref in registry.BUILTINS:
            raise ConsumerDeclarationError(
                f"consumer {ref!r}: the built-in {ref!r} needs options; declare it in the "
                f'configuration file: [consumers.<name>] use = "{ref}"'
            )
        loaded.extend(_load_ref(BUILTINS.get(ref, ref)))
    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                target = ep.load()
            except Exception as exc:
                raise ConsumerDeclarationError(
                    f"entry point {ep.name!r} ({ep.value}) failed to load: {exc!r}"
                ) from exc
            loaded.extend(_from_object(target, f"entry point {ep.name} ({ep.value})"))
    unique: dict[str, LoadedConsumer] = {}
    for item in loaded:
        other = unique.get(item.spec.name)
        if other is None:
            unique[item.spec.name] = item
        elif other.target is None or other.target is not item.target:
            raise ConsumerDeclarationError(
                f"two consumers are named {item.spec.name!r}: {other.origin} and {item.origin}"
            )
    return list(unique.values())


def _load_ref(ref: str) -> list[LoadedConsumer]:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConsumerDeclarationError(
            f"consumer {ref!r}: cannot import module {module_name!r}: {exc!r}"
        ) from exc
    if attr:
        try:
            target = getattr(module, attr)
        except AttributeError:
            raise ConsumerDeclarationError(
                f"consumer {ref!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
        return _from_object(target, ref)
    found = _declared_in(module)
    if not found:
        raise ConsumerDeclarationError(
            f"consumer {ref!r}: module {module_name!r} declares no @consumer"
        )
    return found


def _from_object(target: object, origin: str) -> list[LoadedConsumer]:
    if isinstance(target, ModuleType):
        return _declared_in(target)
    return [LoadedConsumer.from_target(target, origin)]


def _declared_in(module: ModuleType) -> list[LoadedConsumer]:
    return [
        LoadedConsumer.from_target(obj, f"{module.__name__}:{attr}")
        for attr, obj in vars(module).items()
        if hasattr(obj, SPEC_ATTRIBUTE)
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == module.__name__
    ]


def load_middleware(*, use_entry_points: bool) -> list[Middleware]:
    """The middleware of the ``callback_fanout.middleware`` entry points of every installed
    package, in entry-point name order (the first is outermost); none when
    ``use_entry_points`` is off. An entry point names a middleware, or a class of them made
    with no arguments. Raises :class:`~shared.errors.ConfigError` for one that does not load
    or does not take ``(event, delivery, call_next)``."""
    if not use_entry_points:
        return []
    found: list[Middleware] = []
    for ep in sorted(entry_points(group=MIDDLEWARE_GROUP), key=lambda ep: ep.name):
        where = f"middleware entry point {ep.name!r} ({ep.value})"
        try:
            target: Any = ep.load()
            middleware: Any = target() if inspect.isclass(target) else target
        except Exception as exc:
            raise ConfigError(f"{where} failed to load: {exc!r}") from exc
        try:
            inspect.signature(middleware).bind(None, None, None)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: a middleware is an async callable of (event, delivery, call_next)"
            ) from None
        found.append(middleware)
    return found
