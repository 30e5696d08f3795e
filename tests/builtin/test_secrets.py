"""The built-ins' secrets (webhook secrets, the database password) appear in no log line."""

from __future__ import annotations

import base64

import pytest
from structlog.testing import capture_logs
from yarl import URL

from tests.builtin.conftest import StartWith, observed
from tests.conftest import SEEDS
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import eventually
from workers.builtin import archive, forward
from workers.consumer import ConsumerSpec

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()
KEY = b"a key nobody may read in a log"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
PASSWORD = "never-log-this-password"


async def test_a_failing_forward_and_an_archive_log_neither_secret_nor_password(
    start_with: StartWith, pg_dsn: str, table: str
) -> None:
    receiver = Receiver([SECRET], [Answer(503, b"busy")])
    await receiver.start()
    spec = ConsumerSpec(name="hooks", routes=("#",), retry_delays=(0.2,), max_attempts=3)
    hooks, sent = observed(
        forward.build(spec, forward.Options.model_validate({"url": receiver.url, "secret": SECRET}))
    )
    dsn = str(URL(pg_dsn).with_password(PASSWORD))  # trust auth: accepted, not checked
    stored, archived = observed(
        archive.build(
            ConsumerSpec(name="store", routes=("#",)),
            archive.Options.model_validate({"dsn": dsn, "table": table}),
        )
    )
    try:
        with capture_logs() as logs:
            system = await start_with([hooks, stored])
            assert (await system.post(OCR)).status == 200
            await eventually(lambda: len(sent.handled) == 1 and len(archived.handled) == 1)
    finally:
        await receiver.stop()
    assert [r.verified_by for r in receiver.received] == [(0,), (0,)]
    text = repr(logs)
    assert "forwarding" in text
    assert "archiving" in text
    assert "HTTP 503: busy" in text
    for secret in (SECRET, SECRET.removeprefix("whsec_"), PASSWORD):
        assert secret not in text
