"""The history table's indexes: what ``trace`` looks up (a job id, a request id or an
idempotency key, by equality) is served by an index each, and those are hash indexes (half
the database's CPU per row written of a B-tree's, ``docs/bench.md``)."""

from __future__ import annotations

import asyncpg
import pytest

from shared.history import TABLE, create_table_sql, lookup_sql

pytestmark = pytest.mark.broker  # the history's fixtures: PostgreSQL beside the broker

LOOKED_UP = ("job_id", "request_id", "idempotency_key")


async def test_each_looked_up_column_has_a_hash_index_and_the_lookup_uses_all_three(
    pg: asyncpg.Connection,
) -> None:
    for statement in create_table_sql():
        await pg.execute(statement)
    rows = await pg.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", TABLE)
    definitions = {r["indexname"]: r["indexdef"] for r in rows}
    by_column = {
        column: [name for name, d in definitions.items() if d.endswith(f"USING hash ({column})")]
        for column in LOOKED_UP
    }
    assert all(len(names) == 1 for names in by_column.values()), definitions
    assert any("USING brin (at)" in d for d in definitions.values())  # the retention's
    async with pg.transaction():
        await pg.execute("SET LOCAL enable_seqscan = off")  # the plan of a big table
        plan = "\n".join(
            r[0] for r in await pg.fetch(f"EXPLAIN {lookup_sql()}", "some-prefix", "some-id", 10)
        )
    for [name] in by_column.values():
        assert f"Bitmap Index Scan on {name}" in plan, plan
