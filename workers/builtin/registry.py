"""The built-in consumers by name, as the configuration file's ``use = "..."`` finds them.

Each built-in is a module with an ``Options`` model (``extra="forbid"``; secrets typed
``SecretStr``) and ``build(spec, options) -> LoadedConsumer``. The configuration layer
resolves secrets, validates the options and passes the consumer's name, routes and policy
as a :class:`~workers.consumer.ConsumerSpec`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic

from workers.builtin import archive, archive_files, forward, log
from workers.consumer import Breaker, ConsumerSpec, LoadedConsumer

__all__ = ["BUILTINS", "Builtin"]


@dataclass(frozen=True)
class Builtin:
    """A consumer that ships with callback-fanout, configured rather than written."""

    name: str  # "forward", "archive", "archive-files", "log"
    options: type[pydantic.BaseModel]  # extra="forbid"; secrets typed SecretStr
    build: Callable[[ConsumerSpec, Any], LoadedConsumer]  # (spec from config, validated options)
    breaker: Breaker | None = None  # its breaker unless its table says `breaker = false`


BUILTINS: dict[str, Builtin] = {
    "log": Builtin("log", log.Options, log.build),
    "forward": Builtin("forward", forward.Options, forward.build, Breaker(20, 30.0)),
    "archive": Builtin("archive", archive.Options, archive.build),
    "archive-files": Builtin("archive-files", archive_files.Options, archive_files.build),
}
