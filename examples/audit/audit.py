"""An audit trail of every event: a consumer of the class form, with startup and shutdown.

Each event becomes one row of a SQLite table keyed by its idempotency key. ``dedupe=True``
drops the copies the runtime sees within ``dedupe_window``; the key makes a later copy
leave one row too.
"""

from __future__ import annotations

import os
import sqlite3

from workers import CallbackEvent, Consumer, consumer

#: The environment variable that names the database file (default ``audit.sqlite3``).
DB_ENV = "AUDIT_DB"


@consumer(name="audit", routes=["#"], retry_delays=[1, 10, 60], dedupe=True, timeout=10)
class Audit(Consumer):
    """Keeps every event, once per idempotency key."""

    db: sqlite3.Connection

    async def startup(self) -> None:
        # Once, before the first event: open what every event needs.
        self.db = sqlite3.connect(os.environ.get(DB_ENV, "audit.sqlite3"))
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS audit"
            " (idempotency_key TEXT PRIMARY KEY, routing_key TEXT NOT NULL, event TEXT NOT NULL)"
        )

    async def shutdown(self) -> None:
        # Once, after the last event: close what startup opened.
        self.db.close()

    async def handle(self, event: CallbackEvent) -> None:
        # One transaction: committed, or rolled back and the event retried after 1, 10, 60 s.
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO audit VALUES (?, ?, ?)",
                (event.idempotency_key, event.routing_key, event.model_dump_json()),
            )
