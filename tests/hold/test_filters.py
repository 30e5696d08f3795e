"""Payload filters: checked against the event model when declared; an event the filter
refuses is acked and counted `filtered`, never handled, never parked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from shared.configfile import ConfigFile
from shared.errors import ConfigError, ConsumerDeclarationError
from shared.settings import Settings
from tests.hold.conftest import (
    StartWorker,
    Tally,
    consumers_on,
    publish,
    queue_of,
    scraped,
    tallying,
)
from tests.support.broker import BrokerClient
from tests.support.waiting import eventually
from workers import CallbackEvent, consumer
from workers.configured import build_configured
from workers.testing import make_event

pytestmark = pytest.mark.broker

MEDIA = {"BucketId": "media-prod", "Object": "in/a.mp4", "Region": "ap-guangzhou"}
OTHER = {"BucketId": "scratch", "Object": "in/a.mp4", "Region": "ap-guangzhou"}


async def test_refused_events_are_acked_and_counted_never_handled_nor_parked(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    tally = Tally()
    chosen = {"input.bucket_id": "media-prod", "code": ["Success", "0"]}
    worker = await start_worker([tallying("media", tally, filter=chosen)])
    wanted = make_event(input=MEDIA)
    coded = make_event(input=MEDIA, state="Failed", code="0")  # "0" is one of the codes
    events = [
        wanted,
        make_event(input=OTHER),  # another bucket
        make_event(input=MEDIA, state="Failed"),  # code InternalError
        coded,
    ]
    await publish(broker, queue_of(settings, "media"), events)

    await eventually(lambda: len(tally.handled) == 2)
    counted = "callback_fanout_consumer_events_total"
    await eventually(
        lambda: scraped(worker.metrics).value(counted, consumer="media", outcome="filtered") == 2
    )
    scrape = scraped(worker.metrics)
    assert scrape.value(counted, consumer="media", outcome="handled") == 2
    assert scrape.value(counted, consumer="media", outcome="parked") == 0
    assert scrape.value(counted, consumer="media", outcome="retried") == 0
    assert sorted(tally.keys) == sorted([wanted.idempotency_key, coded.idempotency_key])
    assert await consumers_on(broker, queue_of(settings, "media")) == (0, 1)  # all acked
    assert await broker.count(f"{queue_of(settings, 'media')}.dead") == 0


def test_an_unknown_path_is_refused_when_declared_naming_the_fields() -> None:
    with pytest.raises(ConsumerDeclarationError) as refused:

        @consumer(name="media", routes=["#"], filter={"input.bucket": "media-prod"})
        async def handle(event: CallbackEvent) -> None: ...

    said = str(refused.value)
    assert said.startswith("consumer 'media': filter 'input.bucket': input has no field 'bucket'")
    assert "bucket_id" in said
    with pytest.raises(ConsumerDeclarationError, match="code has no fields"):
        consumer(name="media", routes=["#"], filter={"code.x": "1"})
    with pytest.raises(ConsumerDeclarationError, match="a string, number or boolean"):
        consumer(name="media", routes=["#"], filter={"code": cast(Any, [{"a": 1}])})


def test_the_configuration_file_checks_its_filters_too(tmp_path: Path) -> None:
    config = tmp_path / "fanout.toml"
    config.write_text(
        """
[consumers.media]
use = "log"
routes = ["#"]
filter = { "input.BucketId" = "media-prod", "operation.kind" = ["Snapshot", "Transcode"] }
"""
    )
    [media] = build_configured(ConfigFile.read(config), {})
    assert media.consumer.spec.filter is not None
    assert media.consumer.spec.filter.as_dict() == {
        "input.bucket_id": ["media-prod"],
        "operation.kind": ["Snapshot", "Transcode"],
    }
    config.write_text(config.read_text().replace('"operation.kind"', '"operation.knd"'))
    with pytest.raises(ConfigError, match=r"consumers\.media.*operation has no field 'knd'"):
        build_configured(ConfigFile.read(config), {})
