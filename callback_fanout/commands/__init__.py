"""The subcommands of ``callback-fanout``, a module each: each adds its parser (with the
settings it reads as flags) and the function that runs it (``handler``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias

__all__ = ["Subcommands"]

if TYPE_CHECKING:
    #: Where a command module adds its parser.
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subcommands = argparse._SubParsersAction
