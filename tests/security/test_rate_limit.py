"""The per-client rate limit at the running ingress, and its token buckets."""

from __future__ import annotations

import pytest

from ingress.clientnet import parse_address
from ingress.ratelimit import RateLimiter, client_key
from tests.security.conftest import StartIngress, new_secret
from tests.support.broker import BrokerClient

pytestmark = pytest.mark.broker

#: One request per 1000 s: past its burst a client stays refused for the whole test.
SLOW_RATE = 0.001


async def test_past_its_burst_a_client_gets_429_with_retry_after_and_nothing_is_published(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], rate_limit=SLOW_RATE, rate_burst=3)
    path = f"/callbacks/{secret}"

    statuses = [(await ingress.post(path, b"%d" % i)).status for i in range(3)]
    limited = await ingress.post(path, b"over")

    assert statuses == [200, 200, 200]
    assert limited.status == 429
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 1000
    assert sorted(m.body for m in await broker.take_all(broker.topology.raw)) == [
        b"0",
        b"1",
        b"2",
    ]
    # another client has its own bucket
    assert (await ingress.post(path, b"other", source="127.0.0.2")).status == 200
    assert (await ingress.readiness())["refused"] == {"rate": 1}


async def test_guessing_tokens_uses_up_the_limit_too(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], rate_limit=SLOW_RATE, rate_burst=3)

    guesses = [(await ingress.post(f"/callbacks/{new_secret()}")).status for _ in range(3)]
    right_but_late = await ingress.post(f"/callbacks/{secret}")

    assert guesses == [404, 404, 404]
    assert right_but_late.status == 429
    assert await broker.count(broker.topology.raw) == 0


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(
        tokens=[f"ci={secret}"],
        rate_limit=SLOW_RATE,
        rate_burst=1,
        trusted_proxies=["127.0.0.3/32"],
    )
    path = f"/callbacks/{secret}"

    def via_proxy(client: str) -> dict[str, str]:
        return {"X-Forwarded-For": client}

    first = await ingress.post(path, source="127.0.0.3", headers=via_proxy("198.51.100.1"))
    second = await ingress.post(path, source="127.0.0.3", headers=via_proxy("198.51.100.2"))
    again = await ingress.post(path, source="127.0.0.3", headers=via_proxy("198.51.100.1"))

    assert (first.status, second.status, again.status) == (200, 200, 429)
    assert await broker.count(broker.topology.raw) == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=2, max_keys=10, clock=clock)
    assert [limiter.acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)  # one request earned per 0.5 s
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    clock.now += 60  # a long pause earns the burst, not more
    assert [limiter.acquire("a") for _ in range(3)][-1] > 0
    assert RateLimiter.retry_after(0.01) == "1"
    assert RateLimiter.retry_after(2.2) == "3"


def test_memory_stays_bounded_whatever_the_number_of_clients() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=100, clock=FakeClock())
    for i in range(10_000):
        limiter.acquire(f"client-{i}")
    assert len(limiter) == 100
    # the most recent clients are the ones remembered
    assert limiter.acquire("client-9999") > 0


def test_ipv6_clients_share_a_bucket_per_64_prefix() -> None:
    one = client_key(parse_address("2001:db8:1:2::1"))
    same_host = client_key(parse_address("2001:db8:1:2:ffff::9"))
    other = client_key(parse_address("2001:db8:1:3::1"))
    assert one == same_host == "2001:db8:1:2::/64"
    assert other != one
    assert client_key(parse_address("198.51.100.7")) == "198.51.100.7"
