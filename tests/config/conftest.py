from collections.abc import Iterator

import pytest
import structlog

from tests.config.support import sink_builtin

__all__ = ["sink_builtin"]


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """`main` configures logging onto the test's captured stderr: put it back after."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
