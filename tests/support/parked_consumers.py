"""A consumer declaration for `callback-fanout parked list --consumer ...` in the parking tests.

Only its name matters there: the parking tests run an in-process consumer of the same name
(``doomed``), and an operator's command line names its module the same way.
"""

from __future__ import annotations

from workers import CallbackEvent, consumer


@consumer(name="doomed", routes=["TaskFinish.ImageOCR.*"])
async def doomed(event: CallbackEvent) -> None:
    raise RuntimeError("doomed fails on purpose")
