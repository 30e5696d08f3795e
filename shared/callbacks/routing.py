"""Routing keys and idempotency keys: how an event is addressed, and how a duplicate is known.

Routing keys have exactly three words, ``<EventName>.<Second>.<Third>``:

- task events (``TaskFinish``, and the older body with no ``EventName``):
  ``TaskFinish.<Tag>.<State>``, e.g. ``TaskFinish.ImageOCR.Success``. Without ``State``,
  ``Code`` decides: ``Success`` for ``Code=Success``, ``Failed`` for any other code;
- ``WorkflowFinish.<WorkflowName>.<State>`` (the workflow id when the name is missing);
- moderation events: ``<EventName>.<Label>.<Verdict>``, e.g. ``ReviewImage.Porn.Block``.
  The verdict is ``Pass``, ``Block`` or ``Review`` (``Result``, else ``Suggestion``: 0, 1,
  2), or the job's ``State`` when that is not ``Success`` (``Failed``). The label is
  ``Label``, else the category of the first finding hit (``PornInfo`` -> ``Porn``), else
  ``Normal`` for a pass. The console's test POST gets the label ``Test``.

Each word is sanitised for AMQP topic matching: a character that is not a letter, a digit,
``_`` or ``-`` (``.``, ``*``, ``#``, blanks, ...) becomes ``_``; a word is at most
:data:`MAX_WORD_BYTES` bytes of UTF-8; a missing or blank word is :data:`MISSING`.

Idempotency keys are the :func:`digest` of ``v1``, the routing key, what tells one result
of a job from another, and the job's identity (the event computes them):

- task: ``Code`` and ``EndTime`` (in UTC), then ``JobId``;
- workflow: each task's ``JobId=State``, then ``RunId``;
- moderation: ``Result``, ``Suggestion``, ``Score``, ``ForbidState``, then ``JobId`` (the
  Simple style's ``trace_id``).

Without an identity, a digest of the event's content stands in for it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = [
    "MAX_WORD_BYTES",
    "MISSING",
    "digest",
    "routing_key",
    "routing_word",
    "task_state_word",
    "topic_matches",
]

#: The word standing for a missing value (also the ``tag`` of an event without ``Tag``).
MISSING = "Unknown"
#: Longest word, in bytes of UTF-8: three words stay within AMQP's 255-byte limit.
MAX_WORD_BYTES = 80

_UNSAFE = re.compile(r"[^\w-]")
_words: dict[str, str] = {}  # the few distinct short words seen (tags, states), made once


def routing_word(value: object) -> str:
    """One safe routing-key word for ``value``; :data:`MISSING` for ``None`` or blank."""
    if value is None:
        return MISSING
    text = str(value)
    word = _words.get(text)
    if word is None:
        word = _make_word(text)
        if len(_words) < 4096 and len(text) <= MAX_WORD_BYTES:
            _words[text] = word
    return word


def _make_word(text: str) -> str:
    text = text.strip()
    if not text:
        return MISSING
    word = _UNSAFE.sub("_", text)
    encoded = word.encode()
    if len(encoded) > MAX_WORD_BYTES:
        word = encoded[:MAX_WORD_BYTES].decode(errors="ignore")
    return word


def routing_key(*words: object) -> str:
    """``word.word.word`` from the values given, each made safe by :func:`routing_word`."""
    return ".".join(routing_word(word) for word in words)


def task_state_word(state: str | None, code: str | None) -> str | None:
    """The state of a task; without one, ``Success`` or ``Failed`` from ``Code``."""
    if state is not None and state.strip():
        return state
    if code is not None and code.strip():
        return "Success" if code.strip() == "Success" else "Failed"
    return None


def digest(parts: Iterable[str]) -> str:
    """SHA-256 (hex) of the parts, separated so that ``("ab", "c")`` and ``("a", "bc")`` differ."""
    framed = "".join(f"{len(part)}:{part}" for part in parts)
    return hashlib.sha256(framed.encode()).hexdigest()


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` zero or more words."""
    words = pattern.split(".")
    parts = key.split(".") if key else []

    def match(i: int, j: int) -> bool:
        if i == len(words):
            return j == len(parts)
        if words[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(parts) + 1))
        return j < len(parts) and words[i] in ("*", parts[j]) and match(i + 1, j + 1)

    return match(0, 0)
