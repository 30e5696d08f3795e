"""A test kit for consumer authors: the real parser and the runtime's real policy, no broker.

```python
from workers.testing import ConsumerHarness, make_event, seed

async def test_failed_transcodes_are_parked() -> None:
    harness = ConsumerHarness(thumbnails)
    [outcome] = await harness.feed(seed("ocr.1.xml"))        # or bytes, or a Path
    assert outcome.handled
    outcomes = await harness.run(make_event(tag="Snapshot", state="Failed"))
    assert [o.kind for o in outcomes] == ["parked"]
```

Each :class:`~workers.handling.Outcome` says what the runtime would do with one delivery:
``handled``, ``duplicate`` (dropped), ``retried`` (``attempt``, ``delay``, ``reason``) or
``parked`` (``reason``); ``timed_out`` when the handler was cut off. The pytest plugin
(installed with the package) provides the ``fanout`` fixture: ``fanout.harness(consumer)``,
``fanout.make_event(...)``, ``fanout.seed(name)``.
"""

from workers.runtime.handling import Outcome
from workers.testing.events import make_event, parse_body
from workers.testing.harness import ConsumerHarness, NotRouted
from workers.testing.seeds import seed, seed_names

__all__ = [
    "ConsumerHarness",
    "NotRouted",
    "Outcome",
    "make_event",
    "parse_body",
    "seed",
    "seed_names",
]
