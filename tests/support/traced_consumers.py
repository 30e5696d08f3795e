"""Consumer declarations for `callback-fanout trace --consumer ...` in the history tests.

Only their names and routes matter there: the tests run in-process consumers of the same
names (``flaky``, ``refuser``), as an operator's command line names the module.
"""

from __future__ import annotations

from workers import CallbackEvent, consumer

ROUTES = ["TaskFinish.ImageOCR.*"]


@consumer(name="flaky", routes=ROUTES)
async def flaky(event: CallbackEvent) -> None:
    """Declared only: the tests' in-process ``flaky`` fails twice, then succeeds."""


@consumer(name="refuser", routes=ROUTES)
async def refuser(event: CallbackEvent) -> None:
    raise RuntimeError("refuser fails on purpose")
