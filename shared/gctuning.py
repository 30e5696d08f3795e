"""The cyclic garbage collector, tuned for the long-running roles.

Every message allocates thousands of short-lived objects (frames, futures, the parsed event
and its models), and while 64 messages are in flight many of them outlive a young
collection. At Python's default threshold (a young collection every 700 net allocations)
the router ran about 150 collections per thousand events, each scanning the objects of
every message in flight: 95 to 107 µs of CPU per event, as much as half of parsing. With
a young generation of 20,000 the same drain took 5 collections and the router's CPU per
event fell by a quarter (``docs/bench.md``). Reference counting still frees almost
everything at once; only cycles wait longer, and a young generation of 20,000 objects is a
few MB at most.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "tune_collector"]

#: Net allocations between two young collections (Python's default is 700).
YOUNG_THRESHOLD = 20_000


def tune_collector() -> None:
    """Collect the young generation every ``YOUNG_THRESHOLD`` allocations (process-wide)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, max(middle, 20), max(old, 20))
