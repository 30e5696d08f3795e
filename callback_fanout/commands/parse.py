"""`parse`: callback files parsed offline, one JSON event per line; no settings, no broker."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from callback_fanout.commands import Subcommands
from shared.errors import ParseError

__all__ = ["add", "parse_files"]


def add(sub: Subcommands) -> None:
    parse = sub.add_parser(
        "parse", help="parse callback files offline and print one JSON event per line"
    )
    parse.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parse.add_argument("--content-type", default=None, help="content type, if known")
    parse.set_defaults(handler=_parse)


def _parse(args: argparse.Namespace) -> int:
    return parse_files(args.files, args.content_type)


def parse_files(files: Sequence[Path], content_type: str | None) -> int:
    """Print the events of each file; a file that cannot be read or parsed is said on stderr
    and makes the exit status 1."""
    from shared.callbacks.parser import parse_callback

    status = 0
    for path in files:
        try:
            events = parse_callback(path.read_bytes(), content_type=content_type)
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
            status = 1
            continue
        except ParseError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            status = 1
            continue
        for event in events:
            print(json.dumps(event.model_dump(mode="json"), ensure_ascii=False))
    return status
