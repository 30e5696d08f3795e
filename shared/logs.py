"""structlog set-up: contextvars first, JSON lines or readable lines, secrets never printed.

``log_json=auto`` (the default) writes JSON lines when stderr is not a terminal (containers,
supervisors, files) and readable coloured lines when it is; the fields are the same.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO
from urllib.parse import urlsplit

import structlog

from shared import otel
from shared.settings import Settings, mask_url

__all__ = [
    "SecretValueFilter",
    "configure_logging",
    "get_logger",
    "logs_as_json",
    "mask_values",
    "redact_secret_values",
    "redact_secrets",
]

_SECRET_KEYS = frozenset({"password", "token", "secret", "amqp_url", "authorization"})

#: Exact secret values (callback tokens, passwords) masked wherever they appear in a log line.
_SECRET_VALUES: set[str] = set()
_MIN_MASKED = 8  # shorter values would mask ordinary words (and are refused as tokens anyway)
_PLAIN = (int, float, bool, type(None))


def mask_values(*values: str) -> None:
    """From now on, mask these exact values wherever they appear in a log line."""
    _SECRET_VALUES.update(v for v in values if len(v) >= _MIN_MASKED)


def _masked(text: str) -> str:
    for secret in _SECRET_VALUES:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def redact_secret_values(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask the registered secret values inside any value (rendered exceptions included)."""
    if _SECRET_VALUES:
        for key, value in list(event_dict.items()):
            if isinstance(value, _PLAIN):
                continue
            text = value if isinstance(value, str) else repr(value)
            masked = _masked(text)
            if masked != text:
                event_dict[key] = masked
    return event_dict


class SecretValueFilter(logging.Filter):
    """The same masking for the standard-library loggers of the libraries (aiohttp's
    "Error handling request" quotes the offending request line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRET_VALUES:
            return True
        message = record.getMessage()
        masked = _masked(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _masked(record.exc_text)
        if record.stack_info:
            record.stack_info = _masked(record.stack_info)
        return True


_SECRET_FILTER = SecretValueFilter()


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask values under secret-looking keys and passwords inside URLs."""
    for key, value in list(event_dict.items()):
        if key in _SECRET_KEYS:
            event_dict[key] = "***"
        elif isinstance(value, str) and "://" in value and "@" in value:
            event_dict[key] = mask_url(value)
    return event_dict


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def logs_as_json(settings: Settings, stream: TextIO) -> bool:
    """JSON lines unless ``log_json`` is false, or ``auto`` and ``stream`` is a terminal."""
    if settings.log_json == "auto":
        return not _is_terminal(stream)
    return settings.log_json


def add_trace_ids(
    logger: object, method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """``trace_id`` and ``span_id`` of the current span, when tracing is on and one is
    active (``shared.otel``); one check when it is off."""
    if otel.STATE.on:
        ids = otel.current_ids()
        if ids is not None:
            event_dict["trace_id"], event_dict["span_id"] = ids
    return event_dict


def configure_logging(settings: Settings) -> None:
    """Configure structlog (and the stdlib loggers of the libraries) from the settings."""
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    renderer: structlog.typing.Processor
    if logs_as_json(settings, sys.stderr):
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_is_terminal(sys.stderr))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            redact_secret_values,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # The AMQP client logs every reconnect attempt with a traceback; we say it once, clearly.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    for url in (*settings.amqp_url, settings.redis_url):
        password = urlsplit(url.get_secret_value()).password if url is not None else None
        if password:
            mask_values(password)
    for handler in logging.getLogger().handlers:
        if _SECRET_FILTER not in handler.filters:
            handler.addFilter(_SECRET_FILTER)
    for noisy in ("aio_pika", "aiormq", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A bound logger carrying the component name."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=name)
    return logger
