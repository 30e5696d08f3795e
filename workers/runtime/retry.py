"""Retry policy: how many attempts, and how long to wait before each retry."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import Settings
from workers.consumer import ConsumerSpec

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` tries in all; after failed attempt *n*, wait ``delays[n-1]``
    (the last delay repeats when there are more attempts than delays)."""

    max_attempts: int
    delays: tuple[float, ...]

    @classmethod
    def for_consumer(cls, spec: ConsumerSpec, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=spec.max_attempts or settings.max_attempts,
            delays=spec.retry_delays or tuple(settings.retry_delays),
        )

    def should_retry(self, attempts_done: int) -> bool:
        return attempts_done < self.max_attempts

    def delay_after(self, attempt: int, requested: float | None = None) -> float:
        """The delay step to use after failed attempt ``attempt`` (1-based).

        A consumer's ``Retry(delay=...)`` picks the shortest step at least that long (or the
        longest step): delays are fixed queues, so only the configured steps exist.
        """
        if requested is not None:
            longer = [d for d in self.delays if d >= requested]
            return min(longer) if longer else max(self.delays)
        return self.delays[min(attempt, len(self.delays)) - 1]
