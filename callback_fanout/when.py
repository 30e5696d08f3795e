"""Durations and times as operators write them, for the commands and the console alike."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from shared.errors import ConfigError

__all__ = ["parse_duration", "parse_time"]

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` as seconds (more than 0)."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"not a duration: {text!r} (seconds, or a number with s, m, h or d: 15m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str, now: datetime) -> datetime:
    """A moment: ISO 8601 (UTC without an offset) or a duration ago (``90m``, ``2h``)."""
    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        return now - timedelta(seconds=float(ago.group(1)) * _UNITS[ago.group(2)])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a time: ISO 8601 (2026-12-05T10:00, with an offset or UTC) or "
            "a duration ago (90m, 2h, 1d)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
