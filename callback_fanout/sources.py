"""What the operator tools read about the deployment from its settings: the consumers the
workers load, their routes and retry delays, and the `archive` consumers' tables.

The commands and the console ask here, so both see the same consumers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from shared.errors import ConfigError
from shared.settings import Settings

if TYPE_CHECKING:
    from callback_fanout.archived import ArchiveTable
    from callback_fanout.status import ConsumerRef
    from callback_fanout.tracing import ArchiveSource, ConsumerRoutes
    from workers.consumer import LoadedConsumer

__all__ = [
    "archive_sources",
    "archive_table",
    "consumer_names",
    "consumer_refs",
    "consumer_routes",
    "loaded_consumers",
]


def loaded_consumers(settings: Settings) -> list[LoadedConsumer]:
    """The consumers the workers load (--consumer, the environment, --config, entry points)."""
    from workers.loader import consumers_of

    return consumers_of(settings, os.environ)


def consumer_names(settings: Settings) -> list[str]:
    return [c.spec.name for c in loaded_consumers(settings)]


def consumer_refs(settings: Settings) -> list[ConsumerRef]:
    """Each consumer with its retry delays, as `status` reports their queues."""
    from callback_fanout.status import ConsumerRef
    from workers.runtime.retry import RetryPolicy

    return [
        ConsumerRef(c.spec.name, RetryPolicy.for_consumer(c.spec, settings).delays)
        for c in loaded_consumers(settings)
    ]


def consumer_routes(settings: Settings) -> list[ConsumerRoutes]:
    from callback_fanout.tracing import ConsumerRoutes

    return [ConsumerRoutes(c.spec.name, tuple(c.spec.routes)) for c in loaded_consumers(settings)]


def _archive_options(settings: Settings) -> dict[str, tuple[str, str]]:
    """The configuration file's `archive` consumers: name -> (DSN, table)."""
    if settings.config is None:
        return {}
    from shared.configfile import ConfigFile
    from workers.builtin.archive import Options
    from workers.configured import build_configured

    found = {}
    for item in build_configured(ConfigFile.read(settings.config), os.environ):
        if isinstance(item.options, Options):
            options = item.options
            found[item.consumer.spec.name] = (options.dsn.get_secret_value(), options.table)
    return found


def archive_sources(settings: Settings) -> list[ArchiveSource]:
    """The tables `trace` reads receptions from."""
    from callback_fanout.tracing import ArchiveSource

    return [
        ArchiveSource(name, dsn, table) for name, (dsn, table) in _archive_options(settings).items()
    ]


def archive_table(settings: Settings, name: str | None, *, hint: str) -> ArchiveTable:
    """The configuration file's archive consumer ``name`` (None: its only one) as a table to
    read; ``hint`` says what else the caller accepts instead, in the error."""
    from callback_fanout.archived import ArchiveTable

    if settings.config is None:
        raise ConfigError(
            "no archive to read: give a configuration file (--config) with a consumer of "
            f'use = "archive", {hint}'
        )
    archives = _archive_options(settings)
    if name is not None:
        if name not in archives:
            known = ", ".join(sorted(archives)) or "none"
            raise ConfigError(
                f"no archive consumer {name!r} in {settings.config} (archive consumers: {known})"
            )
        dsn, table = archives[name]
    elif len(archives) == 1:
        [(dsn, table)] = archives.values()
    else:
        said = ", ".join(sorted(archives)) if archives else 'none of use = "archive"'
        raise ConfigError(f"which archive? {settings.config} has {said}: name one, {hint}")
    return ArchiveTable(dsn, table)
