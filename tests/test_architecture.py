"""The house's rooms and the doors between them: what may import what."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import workers
from shared.callbacks import operations
from shared.moved import MOVED

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


def test_the_paths_that_moved_in_0_2_are_gone_in_0_3() -> None:
    """``shared.events`` and the other modules of the callback model warned for 0.2 only."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("shared.events")


def test_an_old_import_path_warns_and_gives_the_same_objects() -> None:
    from shared.wire.raw import pack

    sys.modules.pop("shared.batchformat", None)
    with pytest.warns(DeprecationWarning, match=r"shared\.batchformat moved to shared\.wire\.raw"):
        from shared.batchformat import pack as old  # type: ignore[import-not-found]
    sys.modules.pop("shared.batchformat", None)
    assert old is pack
    spec = sys.modules["shared.wire.raw"].__spec__
    assert spec is not None
    assert spec.name == "shared.wire.raw"


# The rooms of workers/ and shared/wire/ -----------------------------------------------------


def test_the_router_and_the_consumer_runtime_never_import_each_other() -> None:
    wrong = [(f, n) for f, n in _imports("workers/router") if _under(n, "workers.runtime")]
    wrong += [(f, n) for f, n in _imports("workers/runtime") if _under(n, "workers.router")]
    assert wrong == []


def test_the_author_api_and_the_built_ins_use_neither_role_room() -> None:
    """A consumer (built-in or the author's) sees the author API only; the roles import it,
    never the other way round. The test kit runs the real handling, so it may import the
    runtime."""
    top = [
        (f, n)
        for f, n in _imports("workers")
        if "/" not in f.removeprefix("workers/") and _under(n, "workers.router", "workers.runtime")
    ]
    builtin = [
        (f, n)
        for f, n in _imports("workers/builtin")
        if _under(n, "workers.router", "workers.runtime", "workers.testing")
    ]
    assert top + builtin == []


def test_the_wire_imports_only_shared_and_its_raw_format_not_even_the_model() -> None:
    wrong = [(f, n) for f, n in _imports("shared/wire") if not _under(n, "shared")]
    raw = [(f, n) for f, n in _imports("shared/wire") if f.endswith("raw.py")]
    assert wrong == []
    assert [n for _, n in raw if _under(n, "shared.callbacks")] == []


def test_nothing_but_the_command_imports_the_command() -> None:
    wrong = [
        (f, n)
        for package in ("shared", "ingress", "workers")
        for f, n in _imports(package)
        if _under(n, "callback_fanout")
    ]
    assert wrong == []


def test_the_ingress_process_loads_neither_the_callback_model_nor_the_workers() -> None:
    """What the ingress imports, transitively, in a fresh interpreter: the wire's raw format
    but not the model, the event format or any worker."""
    script = """
import sys
import ingress.app, ingress.server, ingress.spooling  # noqa: F401
bad = sorted(m for m in sys.modules
             if m.startswith(("shared.callbacks", "workers", "callback_fanout",
                              "shared.wire.events", "shared.wire.envelope")))
print(bad)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_moved_path_warns_and_gives_the_module_at_its_new_path(old: str) -> None:
    new, removed_in = MOVED[old]
    script = f"""
import importlib, warnings
warnings.simplefilter("error")
target = importlib.import_module({new!r})
try:
    importlib.import_module({old!r})
except DeprecationWarning as warning:
    print(warning)
warnings.simplefilter("ignore")
print(importlib.import_module({old!r}) is target)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        f"{old} moved to {new} (consumers: `from workers import ...`); "
        f"the old path goes in {removed_in}",
        "True",
    ]


def test_the_top_of_workers_holds_the_author_api_and_loading_only() -> None:
    """The roles have rooms of their own (router/, runtime/), as do the built-ins and the
    test kit; what is left at the top is what an author imports and how consumers are
    found, plus the settling both roles share."""
    top = {path.stem for path in (ROOT / "workers").glob("*.py")}
    rooms = {path.name for path in (ROOT / "workers").iterdir() if (path / "__init__.py").exists()}
    assert top == {
        "__init__",
        "consumer",  # the contract: @consumer, Consumer, LoadedConsumer
        "delivery",  # a handler's second parameter
        "middleware",  # the hook around handling
        "loader",  # finding consumers: module paths, entry points
        "configured",  # the built-ins of the configuration file
        "settling",  # the router's and the runtime's shared end of a delivery
    }
    assert rooms == {"router", "runtime", "builtin", "testing"}
