"""The configuration file (``--config fanout.toml``): settings and configured consumers.

```toml
[settings]                     # optional; keys are the settings' names
prefix = "callbacks"

[history]                      # optional: the delivery history (settings history_<key>)
dsn = { env = "HISTORY_DSN" }  # a secret, as every DSN
retention = "7d"

[consumers.billing]            # a consumer built from a built-in; its name is the table's
use = "forward"
routes = ["TaskFinish.*.Success"]
secret = { env = "BILLING_WEBHOOK_SECRET" }    # or { file = "/run/secrets/billing" }
```

This module reads the file and resolves secret references; it knows nothing of the
built-ins (``workers.configured`` builds the consumers). Every problem is a
:class:`~shared.errors.ConfigError` of one line naming the file and the key, never the value.
"""

from __future__ import annotations

import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from shared.errors import ConfigError

__all__ = ["ConfigFile", "key_of", "secret_fields"]

_SECTIONS = ("settings", "history", "consumers")
#: The keys of ``[history]``: each is the setting ``history_<key>``.
_HISTORY_KEYS = ("dsn", "retention")


@dataclass(frozen=True)
class ConfigFile:
    """The file's tables, as read (secret references not yet resolved)."""

    path: Path
    settings: Mapping[str, Any] = field(repr=False)
    consumers: Mapping[str, Mapping[str, Any]] = field(repr=False)
    history: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, path: Path) -> ConfigFile:
        """Read and check the file's shape: only ``[settings]``, ``[history]`` and
        ``[consumers.<name>]``."""
        where = f"config {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not UTF-8 text") from None
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from None
        config = cls(path, {}, {})
        for key in document:
            if key not in _SECTIONS:
                raise config.error(
                    key, "unknown key (expected [settings], [history] or [consumers.<name>])"
                )
        settings = document.get("settings", {})
        if not isinstance(settings, dict):
            raise config.error("settings", "must be a table")
        consumers = document.get("consumers", {})
        if not isinstance(consumers, dict):
            raise config.error("consumers", "must be a table of [consumers.<name>] tables")
        for name, table in consumers.items():
            if not isinstance(table, dict):
                raise config.error(f"consumers.{name}", "must be a table")
        history = document.get("history", {})
        if not isinstance(history, dict):
            raise config.error("history", "must be a table")
        for key in history:
            if key not in _HISTORY_KEYS:
                raise config.error(
                    f"history.{key}", f"unknown key (known: {', '.join(_HISTORY_KEYS)})"
                )
        return cls(path, settings, consumers, history)

    def setting_values(self) -> list[tuple[str, str, Any]]:
        """``(setting, key, value)`` of every setting the file gives: ``[settings]``'s, and
        ``[history]``'s as ``history_<key>`` (``key`` is where the file says it)."""
        given = [(name, f"settings.{name}", value) for name, value in self.settings.items()]
        given += [(f"history_{k}", f"history.{k}", v) for k, v in self.history.items()]
        return given

    def error(self, key: str, problem: str) -> ConfigError:
        """``config <path>: <key>: <problem>``: the one line a bad file stops the command with."""
        return ConfigError(f"config {self.path}: {key}: {problem}")

    def resolve_secret(self, value: Any, key: str, environ: Mapping[str, str]) -> Any:
        """Like :meth:`resolve`, for a value that is secret: it must be a reference (or a list
        or table of them), never the secret itself written in the file."""
        self._refuse_literal(value, key)
        return self.resolve(value, key, environ)

    def _refuse_literal(self, value: Any, key: str) -> None:
        if isinstance(value, dict) and set(value) in ({"env"}, {"file"}):
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                self._refuse_literal(item, f"{key}[{i}]")
        elif isinstance(value, dict):
            for name, item in value.items():
                self._refuse_literal(item, f"{key}.{name}")
        else:
            raise self.error(
                key,
                'a secret cannot be written in the file: use { env = "NAME" } or { file = "path" }',
            )

    def resolve(self, value: Any, key: str, environ: Mapping[str, str]) -> Any:
        """``value`` with every secret reference replaced by the secret, recursively.

        A reference is a table of exactly one key: ``{ env = "NAME" }`` (an environment
        variable, set and not empty) or ``{ file = "path" }`` (the file's text without its
        trailing newline; a relative path is relative to this file's directory).
        """
        if isinstance(value, dict):
            if set(value) == {"env"}:
                return self._from_env(value["env"], key, environ)
            if set(value) == {"file"}:
                return self._from_file(value["file"], key)
            return {k: self.resolve(v, f"{key}.{k}", environ) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{key}[{i}]", environ) for i, v in enumerate(value)]
        return value

    def _from_env(self, name: object, key: str, environ: Mapping[str, str]) -> str:
        if not isinstance(name, str) or not name:
            raise self.error(key, "{ env = ... } needs the name of an environment variable")
        secret = environ.get(name)
        if secret is None:
            raise self.error(key, f"environment variable {name} is not set")
        if not secret:
            raise self.error(key, f"environment variable {name} is empty")
        return secret

    def _from_file(self, name: object, key: str) -> str:
        if not isinstance(name, str) or not name:
            raise self.error(key, "{ file = ... } needs a file name")
        path = self.path.parent / name
        try:
            secret = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except OSError as exc:
            raise self.error(key, f"file {name} cannot be read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise self.error(key, f"file {name} is not UTF-8 text") from None
        if not secret:
            raise self.error(key, f"file {name} is empty")
        return secret


def secret_fields(model: type[pydantic.BaseModel]) -> frozenset[str]:
    """The fields of ``model`` that hold secrets (``SecretStr``/``SecretBytes``, also in lists)."""

    def holds_secret(annotation: object) -> bool:
        if annotation in (pydantic.SecretStr, pydantic.SecretBytes):
            return True
        return any(holds_secret(arg) for arg in typing.get_args(annotation))

    return frozenset(
        name for name, info in model.model_fields.items() if holds_secret(info.annotation)
    )


def key_of(prefix: str, loc: tuple[int | str, ...]) -> str:
    """A dotted key for a pydantic error location: ``consumers.billing.routes[1]``."""
    key = prefix
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key
