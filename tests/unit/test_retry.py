"""The retry policy: how many tries, and which delay step follows each failure."""

from __future__ import annotations

import pytest

from shared.settings import Settings
from workers.consumer import ConsumerSpec
from workers.runtime.retry import RetryPolicy

SETTINGS = Settings.model_construct(max_attempts=4, retry_delays=[2.0, 7.0])


def test_a_consumer_s_own_attempts_and_delays_win_over_the_settings() -> None:
    spec = ConsumerSpec("own", ("#",), max_attempts=9, retry_delays=(1.0, 3.0))

    assert RetryPolicy.for_consumer(spec, SETTINGS) == RetryPolicy(9, (1.0, 3.0))


def test_the_settings_fill_in_what_a_consumer_leaves_open() -> None:
    spec = ConsumerSpec("plain", ("#",))

    assert RetryPolicy.for_consumer(spec, SETTINGS) == RetryPolicy(4, (2.0, 7.0))


def test_a_retry_follows_every_attempt_but_the_last() -> None:
    policy = RetryPolicy(3, (1.0,))

    assert [policy.should_retry(done) for done in (0, 1, 2, 3, 4)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_each_failed_attempt_waits_its_own_step_and_the_last_step_repeats() -> None:
    policy = RetryPolicy(10, (1.0, 5.0, 30.0))

    assert [policy.delay_after(n) for n in (1, 2, 3, 4, 9)] == [1.0, 5.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize(
    ("requested", "step"),
    [
        (0.0, 1.0),
        (0.5, 1.0),
        (1.0, 1.0),  # equal to a step: that step, not the next one
        (1.5, 5.0),
        (5.0, 5.0),
        (29.9, 30.0),
        (30.0, 30.0),
        (31.0, 30.0),  # longer than every step: the longest, never an error
        (3600.0, 30.0),
    ],
)
def test_a_requested_delay_gets_the_shortest_step_at_least_that_long(
    requested: float, step: float
) -> None:
    policy = RetryPolicy(10, (5.0, 30.0, 1.0))  # in any order

    assert policy.delay_after(1, requested) == step
    assert policy.delay_after(3, requested) == step  # whatever the attempt


def test_a_requested_delay_of_none_is_the_attempt_s_step() -> None:
    assert RetryPolicy(5, (1.0, 5.0)).delay_after(2, None) == 5.0
