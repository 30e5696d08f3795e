"""Finding consumers: by module path, by built-in name, and by entry point."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from importlib.metadata import entry_points
from types import ModuleType

from shared.errors import ConsumerDeclarationError
from workers.consumer import SPEC_ATTRIBUTE, LoadedConsumer

__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "load_consumers"]

ENTRY_POINT_GROUP = "callback_fanout.consumers"

#: Built-in consumers usable by name: ``--consumer log``.
BUILTINS = {
    "log": "workers.builtin.log:log_consumer",
}


def load_consumers(refs: Iterable[str], *, use_entry_points: bool) -> list[LoadedConsumer]:
    """Load every consumer named by ``refs`` (and the entry-point group), names unique.

    A ref is a built-in name (``log``), a module (``pkg.module``: every consumer declared in
    it) or one attribute (``pkg.module:attr``).
    """
    loaded: list[LoadedConsumer] = []
    for ref in refs:
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
        elif other.target is not item.target:
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
