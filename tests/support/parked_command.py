"""Running `callback-fanout parked ...` in the test's event loop, as an operator would."""

from __future__ import annotations

import pytest

from callback_fanout.cli import _build_parser, _parked, _settings_from
from shared.settings import Settings

__all__ = ["parked"]


async def parked(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `callback-fanout parked ARGV` and return what it printed (it must exit 0)."""
    capsys.readouterr()
    args = _build_parser().parse_args(
        [
            "parked",
            *argv,
            "--amqp-url",
            settings.broker_url,
            "--prefix",
            settings.prefix,
            "--no-entry-points",
        ]
    )
    assert await _parked(args, _settings_from(args)) == 0
    return capsys.readouterr().out
