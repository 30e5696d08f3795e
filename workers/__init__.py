"""Routers and consumer workers, and the public API for writing consumers.

```python
from workers import consumer
from shared.events import CallbackEvent

@consumer(name="thumbnails", routes=["TaskFinish.Snapshot.*"], concurrency=16, max_attempts=5)
async def handle(event: CallbackEvent) -> None:
    ...
```
"""

from shared.errors import GiveUp, Retry
from workers.consumer import Consumer, ConsumerSpec, consumer

__all__ = ["Consumer", "ConsumerSpec", "GiveUp", "Retry", "consumer"]
