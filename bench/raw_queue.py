"""How many bodies a second one ``<prefix>.raw`` quorum queue takes, through the ingress's
publisher with group commit (no HTTP): the ceiling of one raw queue, whose leader is one node.

    python bench/raw_queue.py                          # the broker at --amqp-url (one node)
    python bench/raw_queue.py --local-cluster          # three extra local nodes (Debian package)

Prints bodies/s and messages/s confirmed; deletes its queues at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika

from ingress.groupcommit import AmqpPublisher
from shared.settings import Settings, mask_url
from shared.topology import Topology
from shared.wire.raw import RawMeta

BODY = (Path(__file__).resolve().parent.parent / "workers/testing/seeds/ocr.1.xml").read_bytes()


@contextlib.contextmanager
def brokers(args: argparse.Namespace) -> Iterator[list[str]]:
    if not args.local_cluster:
        yield [args.amqp_url]
        return
    from tests.support.cluster import LocalCluster

    with LocalCluster.started() as cluster:
        yield cluster.urls


async def measure(urls: list[str], seconds: float, senders: int) -> tuple[float, float]:
    prefix = f"rawbench-{secrets.token_hex(3)}"
    settings = Settings.load(amqp_url=urls, prefix=prefix, log_level="warning")
    publisher = AmqpPublisher(settings)
    await publisher.start()
    stop = time.monotonic() + seconds

    async def send(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            meta = RawMeta(f"{i}-{n}", time.time(), "application/xml", "127.0.0.1")
            with contextlib.suppress(Exception):
                await publisher.publish(BODY, meta)

    started = time.monotonic()
    await asyncio.gather(*(send(i) for i in range(senders)))
    took = time.monotonic() - started
    bodies, messages = publisher.bodies_confirmed, publisher.messages_confirmed
    await publisher.close()
    connection = await aio_pika.connect(urls[0])
    channel = await connection.channel()
    t = Topology(prefix)
    for queue in (t.raw, t.unparsed):
        await channel.queue_delete(queue)
    await connection.close()
    return bodies / took, messages / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--local-cluster", action="store_true")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=256, help="bodies waiting at once")
    args = parser.parse_args()
    with brokers(args) as urls:
        bodies, messages = asyncio.run(measure(urls, args.seconds, args.senders))
    where = "3-node local cluster" if args.local_cluster else mask_url(args.amqp_url)
    print(f"{where}: {bodies:,.0f} bodies/s in {messages:,.0f} messages/s through one raw queue")


if __name__ == "__main__":
    main()
