"""The pieces under the metrics: bucket boundaries as Prometheus reads them, label values
from a closed set whatever the bodies say."""

from __future__ import annotations

import secrets

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.callbacks.catalogue import EVENT_NAMES, OTHER, STATES, TAGS, known_words
from shared.metrics import Metrics, render


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(render(metrics).decode())
        for s in family.samples
    }


def test_a_value_on_a_bound_counts_in_that_bucket_and_buckets_are_cumulative() -> None:
    metrics = Metrics()
    seconds = metrics.histogram("callback_fanout_test_seconds", "test", (0.1, 1, 10)).labels()
    for value in (0.05, 0.1, 0.5, 1, 20):
        seconds.observe(value)
    samples = _samples(metrics)
    buckets = {
        le: samples[("callback_fanout_test_seconds_bucket", (("le", le),))]
        for le in ("0.1", "1.0", "10.0", "+Inf")
    }
    assert buckets == {"0.1": 2, "1.0": 4, "10.0": 4, "+Inf": 5}
    assert samples[("callback_fanout_test_seconds_count", ())] == 5
    assert samples[("callback_fanout_test_seconds_sum", ())] == pytest.approx(21.65)


def test_a_counter_family_exports_the_children_bound_at_start_at_zero() -> None:
    metrics = Metrics()
    family = metrics.counter("callback_fanout_test_total", "test", ("outcome",))
    bound = {o: family.labels(o) for o in ("good", "bad")}
    bound["good"].inc()
    samples = _samples(metrics)
    assert samples[("callback_fanout_test_total", (("outcome", "good"),))] == 1
    assert samples[("callback_fanout_test_total", (("outcome", "bad"),))] == 0


def test_a_name_is_registered_once_per_registry_and_a_counter_name_ends_in_total() -> None:
    metrics = Metrics()
    metrics.gauge("callback_fanout_test_gauge", "test")
    with pytest.raises(ValueError, match="Duplicated"):
        metrics.gauge("callback_fanout_test_gauge", "test")
    with pytest.raises(ValueError, match="_total"):
        metrics.counter("callback_fanout_test", "test")
    Metrics().gauge("callback_fanout_test_gauge", "test")  # another registry: no clash


@pytest.mark.parametrize(
    ("routing_key", "words"),
    [
        ("TaskFinish.ImageOCR.Success", ("TaskFinish", "ImageOCR", "Success")),
        ("TaskFinish.Transcode.Failed", ("TaskFinish", "Transcode", "Failed")),
        ("ReviewImage.Porn.Block", ("ReviewImage", "Porn", "Block")),
        ("ReviewText.Normal.Pass", ("ReviewText", "Normal", "Pass")),
        ("WorkflowFinish.my-workflow.Success", ("WorkflowFinish", OTHER, "Success")),
        ("TaskFinish.Unknown.Unknown", ("TaskFinish", "Unknown", "Unknown")),
        ("Evil.Made-Up.Whatever", (OTHER, OTHER, OTHER)),
        ("not-a-key", (OTHER, OTHER, OTHER)),
    ],
)
def test_routing_key_words_outside_the_catalogue_become_other(
    routing_key: str, words: tuple[str, str, str]
) -> None:
    assert known_words(routing_key) == words


def test_any_number_of_made_up_words_gives_values_from_the_closed_set_only() -> None:
    seen = {
        known_words(f"{secrets.token_hex(3)}.{secrets.token_hex(3)}.{secrets.token_hex(3)}")
        for _ in range(1000)
    }
    assert seen == {(OTHER, OTHER, OTHER)}
    assert OTHER not in EVENT_NAMES | TAGS | STATES
