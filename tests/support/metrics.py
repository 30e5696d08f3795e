"""Reading a role's ``/metrics`` over HTTP, as Prometheus would, into exact values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "scrape"]

SampleKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Scrape:
    """The samples of one scrape, by name and labels."""

    samples: Mapping[SampleKey, float]

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name{labels}``; ``KeyError`` when it is not exported."""
        return self.samples[(name, frozenset(labels.items()))]

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every sample called ``name``, by its labels."""
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


async def scrape(http: aiohttp.ClientSession, url: str) -> Scrape:
    """GET ``url`` (a ``/metrics``) and parse the text format."""
    async with http.get(url) as response:
        assert response.status == 200, f"{url}: {response.status}"
        assert response.content_type == "text/plain"
        text = await response.text()
    samples: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples)
