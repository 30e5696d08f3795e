"""The house's rooms and the doors between them: what may import what."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import workers
from shared.callbacks import operations

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("shared", "ingress", "workers", "callback_fanout")


def _imports(package: str) -> Iterator[tuple[str, str]]:
    """(file, imported module) for every import in a package, lazy ones included."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in PROJECT:
                    yield str(path.relative_to(ROOT)), name


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_callback_model_imports_nothing_of_the_project_but_its_errors() -> None:
    wrong = [
        (file, name)
        for file, name in _imports("shared/callbacks")
        if not _under(name, "shared.callbacks", "shared.errors")
    ]
    assert wrong == []


def test_shared_imports_neither_ingress_nor_workers() -> None:
    wrong = [
        (f, n) for f, n in _imports("shared") if _under(n, "ingress", "workers", "callback_fanout")
    ]
    assert wrong == []


def test_ingress_never_imports_workers_or_the_callback_model() -> None:
    wrong = [
        (f, n)
        for f, n in _imports("ingress")
        if _under(n, "workers", "callback_fanout", "shared.callbacks")
    ]
    assert wrong == []


def test_workers_never_import_the_ingress() -> None:
    wrong = [(f, n) for f, n in _imports("workers") if _under(n, "ingress", "callback_fanout")]
    assert wrong == []


def test_the_callback_model_is_usable_alone_without_io_settings_or_logging() -> None:
    seed = ROOT / "workers" / "testing" / "seeds" / "ocr.1.xml"
    script = f"""
import sys
from shared.callbacks import CallbackEvent, parse_callback
events = parse_callback(open({str(seed)!r}, "rb").read())
assert isinstance(events[0], CallbackEvent), events
roots = {{"aiohttp", "aio_pika", "aiormq", "structlog", "logging", "pydantic_settings",
         "redis", "ingress", "workers", "callback_fanout"}}
infra = {{"shared.settings", "shared.logs", "shared.amqp", "shared.topology", "shared.health"}}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in roots or m in infra)
print(events[0].routing_key, loaded)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "TaskFinish.ImageOCR.Success []"


def test_consumer_authors_import_everything_from_workers() -> None:
    from workers import CallbackEvent, Consumer, GiveUp, Retry, consumer  # noqa: F401

    assert set(operations.__all__) <= set(workers.__all__)
    assert {"CallbackEvent", "Consumer", "GiveUp", "Retry", "consumer"} <= set(workers.__all__)
    assert all(hasattr(workers, name) for name in workers.__all__)


def test_an_old_import_path_warns_and_gives_the_same_objects() -> None:
    from shared.callbacks.events import CallbackEvent

    sys.modules.pop("shared.events", None)
    with pytest.warns(
        DeprecationWarning, match=r"shared\.events moved to shared\.callbacks\.events"
    ):
        from shared.events import CallbackEvent as old  # type: ignore[import-not-found]
    sys.modules.pop("shared.events", None)
    assert old is CallbackEvent
    spec = sys.modules["shared.callbacks.events"].__spec__
    assert spec is not None
    assert spec.name == "shared.callbacks.events"
