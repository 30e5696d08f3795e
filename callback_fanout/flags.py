"""Settings as flags: each command offers the settings it reads, generated from the settings
object so that the two never disagree; the environment supplies the rest.

A command also accepts, without showing them, the flags of the settings other commands read,
so that one command line or one environment serves every command, as it always has.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import typing
from collections.abc import Callable

from pydantic.fields import FieldInfo

from shared.errors import ConfigError, FanoutError
from shared.logs import configure_logging
from shared.settings import ENV_PREFIX, AutoBool, Settings, settings_of

__all__ = ["add_settings_flags", "flag", "settings_from", "with_settings"]

#: Flags that read better in the singular on the command line.
_SINGULAR = {"consumers": "consumer", "tokens": "token"}

_Arguments = argparse.ArgumentParser | argparse._ArgumentGroup


def flag(name: str) -> str:
    """The flag of the setting ``name``: ``--max-body-bytes``, ``--consumer``."""
    return "--" + _SINGULAR.get(name, name).replace("_", "-")


def add_settings_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Offer the settings ``command`` reads; accept the others' flags unshown."""
    own = settings_of(command)
    group = parser.add_argument_group("settings (also environment variables)")
    for name in own:
        _add_flag(group, name, Settings.model_fields[name], shown=True)
    others = [name for name in Settings.model_fields if name not in own]
    for name in others:
        _add_flag(parser, name, Settings.model_fields[name], shown=False)
    if others:
        said = ", ".join(f"{flag(name)} ({ENV_PREFIX}{name.upper()})" for name in others)
        text = f"Settings only other commands read are accepted and ignored: {said}."
        parser.epilog = textwrap.fill(text, 88, break_on_hyphens=False)
        if parser.formatter_class is argparse.HelpFormatter:
            parser.formatter_class = _WholeFlags


class _WholeFlags(argparse.HelpFormatter):
    """Wraps text without cutting a flag at one of its hyphens."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(
            " ".join(text.split()),
            width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
        )


def _add_flag(arguments: _Arguments, name: str, info: FieldInfo, *, shown: bool) -> None:
    env = ENV_PREFIX + name.upper()
    default = info.get_default(call_default_factory=True)
    masked = "***" if name == "amqp_url" else default
    help_text = f"{info.description} [env {env}; default {masked}]" if shown else argparse.SUPPRESS
    origin = typing.get_origin(info.annotation)
    if info.annotation == AutoBool:
        # --log-json (true), --log-json auto|true|false, --no-log-json (false)
        arguments.add_argument(
            flag(name),
            dest=name,
            nargs="?",
            const="true",
            default=None,
            choices=("auto", "true", "false"),
            metavar="auto|true|false",
            help=help_text,
        )
        arguments.add_argument(
            "--no-" + flag(name)[2:],
            dest=name,
            action="store_const",
            const="false",
            help=f"the same as {flag(name)} false" if shown else argparse.SUPPRESS,
        )
    elif info.annotation is bool:
        arguments.add_argument(
            flag(name),
            dest=name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=help_text,
        )
    elif origin is list:
        arguments.add_argument(flag(name), dest=name, action="append", default=None, help=help_text)
    else:
        arguments.add_argument(flag(name), dest=name, default=None, help=help_text)


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings: the flags given, over the environment, the file and the defaults."""
    given = vars(args)
    overrides = {name: given[name] for name in Settings.model_fields if given.get(name) is not None}
    return Settings.load(**overrides)


def with_settings(
    run: Callable[[argparse.Namespace, Settings], int],
) -> Callable[[argparse.Namespace], int]:
    """``run`` given the settings, logging configured; a :class:`FanoutError` is one line on
    stderr and exit status 2 (invalid settings) or 1."""

    def handler(args: argparse.Namespace) -> int:
        try:
            settings = settings_from(args)
            configure_logging(settings)
            return run(args, settings)
        except ConfigError as exc:
            return _said(exc, 2)
        except FanoutError as exc:
            return _said(exc, 1)

    return handler


def _said(error: FanoutError, status: int) -> int:
    print(f"callback-fanout: {error}", file=sys.stderr)
    return status
