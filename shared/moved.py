"""Import paths of 0.1 that moved in 0.2, kept working for one release with a warning.

``shared.events``, ``shared.parser`` and the other modules of the callback model now live in
:mod:`shared.callbacks`. Importing an old path gives the new module itself (the same objects,
so ``isinstance`` checks hold) and a :class:`DeprecationWarning` naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install"]

#: Old module path -> new module path. Removed in 0.3.
MOVED = {
    f"shared.{name}": f"shared.callbacks.{name}"
    for name in (
        "events",
        "jsonrepair",
        "moderation",
        "objects",
        "operations",
        "parser",
        "routing",
        "vendor",
        "workflow",
        "xmlsafe",
    )
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
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new} (consumers: `from workers import ...`); "
            "the old path goes in 0.3",
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
