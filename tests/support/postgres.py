"""The PostgreSQL on this machine for the archive tests: a database per test run."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import asyncpg
import pytest

__all__ = ["database", "server_dsn"]

_HOW = (
    "No PostgreSQL for the archive tests. Set PG_DSN (e.g. postgresql://postgres@127.0.0.1:5432/"
    "postgres) to a server where the user may create databases."
)


def server_dsn() -> str:
    return os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_database(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(server_dsn(), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def database(name: str) -> Iterator[str]:
    """Create database ``name``, yield its DSN, drop it (even with clients still on it)."""
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"{_HOW} ({type(exc).__name__}: {exc})", pytrace=False)
    try:
        yield _with_database(server_dsn(), name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
