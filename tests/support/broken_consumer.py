"""A consumer whose start-up hook fails, for the test that a worker then exits non-zero."""

from __future__ import annotations

from workers import CallbackEvent, Consumer, consumer


@consumer(name="broken-startup", routes=["#"])
class BrokenStartup(Consumer):
    async def startup(self) -> None:
        raise ConnectionRefusedError("the database this consumer needs is not there")

    async def handle(self, event: CallbackEvent) -> None:
        raise AssertionError("never called")
