"""Import paths that moved, kept working for one release with a warning.

In 0.3 the workers' modules moved into rooms (``workers.router``, ``workers.runtime``), the
message formats into :mod:`shared.wire`, and a few modules took names that say what they
hold. Importing an old path gives the new module itself (the same objects, so ``isinstance``
checks hold) and a :class:`DeprecationWarning` naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install"]

#: Old module path -> (new module path, the release that removes the old one). The paths
#: of the callback model that moved in 0.2 (``shared.events`` ...) were removed in 0.3.
MOVED: dict[str, tuple[str, str]] = {
    old: (new, "0.4")
    for old, new in {
        "shared.batchformat": "shared.wire.raw",
        "shared.collector": "shared.gctuning",
        "workers.eventformat": "shared.wire.events",
        "workers.envelope": "shared.wire.envelope",
        "workers.batch": "workers.router.rawbodies",
        "workers.outbox": "workers.router.outbox",
        "workers.handling": "workers.runtime.handling",
        "workers.acks": "workers.runtime.acks",
        "workers.dedupe": "workers.runtime.dedupe",
        "workers.retry": "workers.runtime.retry",
        "workers.waitall": "workers.settling",
        "workers.requeue": "workers.settling",
        "workers.builtin.batching": "workers.builtin.groupwrite",
        "workers.metrics": "workers.runtime.metrics",
        "workers.asyncapi": "callback_fanout.asyncapi",
        "workers.parking": "callback_fanout.parking",
        "ingress.publisher": "ingress.groupcommit",
        "ingress.publishing": "ingress.spooling",
    }.items()
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module at its new path."""

    def __init__(self) -> None:
        self._real_specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new, removed_in = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new} (consumers: `from workers import ...`); "
            f"the old path goes in {removed_in}",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(new)
        self._real_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system gave the module the old path's spec: give it back its own.
        module.__spec__ = self._real_specs[module.__name__]


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
