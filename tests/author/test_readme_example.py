"""The README's consumer example (``examples/thumbnails``) as its author gets it: it passes
``mypy --strict`` against the package installed from its wheel, and its success path runs
in the test kit on a made event and on a Snapshot callback."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest
from structlog.testing import capture_logs

from tests.conftest import FIXTURES
from workers.testing import ConsumerHarness, make_event

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "thumbnails"
SNAPSHOT = FIXTURES / "callbacks" / "snapshot-success.xml"
#: What the wheel is built from: the packages and the project's metadata.
SOURCES = ("shared", "ingress", "workers", "callback_fanout", "pyproject.toml", "README.md")


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("thumbnails_example", EXAMPLE / "thumbnails.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},  # no PYTHONPATH, no MYPYPATH
        timeout=540,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with the package installed from its wheel (not editable); its
    dependencies come from this environment's site-packages, which a ``.pth`` adds (so the
    editable install of this checkout there is never activated). Returns its interpreter."""
    work = tmp_path_factory.mktemp("fresh")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work, source, cwd=work
    )
    assert built.returncode == 0, built.stderr
    [wheel] = work.glob("callback_fanout-*.whl")
    venv = _run(sys.executable, "-m", "venv", "--without-pip", work / "env", cwd=work)
    assert venv.returncode == 0, venv.stderr
    python = work / "env" / "bin" / "python"
    site = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=work
        ).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = (sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q")
    install = _run(*pip, "--target", site, wheel, cwd=work)
    assert install.returncode == 0, install.stderr
    return python


def test_the_example_passes_mypy_strict_against_the_installed_wheel(
    installed: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("thumbnails.py", "test_thumbnails.py"):
        shutil.copy(EXAMPLE / name, project / name)
    cache = tmp_path / "cache"
    mypy = (installed, "-m", "mypy", "--strict", "--cache-dir", cache)
    checked = _run(*mypy, "--verbose", ".", cwd=project)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # What mypy read of the package: the installed wheel, never this checkout.
    read = {
        module: Path(path)
        for path, module in re.findall(r"Parsing (\S+) \((\S+)\)", checked.stderr)
        if module.split(".")[0] in ("workers", "shared")
    }
    site = next(installed.parents[1].glob("lib/python*/site-packages"))
    assert {"workers", "workers.consumer", "shared.callbacks.events"} <= set(read)
    assert [path for path in read.values() if not path.is_relative_to(site)] == []

    # The same handler on an unparametrized event is what the README had: mypy refuses it.
    untyped = (EXAMPLE / "thumbnails.py").read_text()
    (project / "thumbnails.py").write_text(
        untyped.replace("CallbackEvent[SnapshotOperation]", "CallbackEvent")
    )
    refused = _run(*mypy, ".", cwd=project)
    assert refused.returncode == 1
    assert '"media_result"' in refused.stdout


async def test_the_example_makes_a_thumbnail_of_each_image_of_a_made_event() -> None:
    event = make_event(tag="Snapshot", state="Success")
    async with ConsumerHarness(_example().thumbnails) as harness:
        with capture_logs() as logs:
            [outcome] = await harness.run(event)
    assert outcome.handled
    assert [line["key"] for line in logs if line["event"] == "thumbnail"] == [
        "output/holiday/snapshot-0.jpg",
        "output/holiday/snapshot-1.jpg",
        "output/holiday/snapshot-2.jpg",
    ]


async def test_the_example_makes_a_thumbnail_of_each_image_of_a_snapshot_callback() -> None:
    async with ConsumerHarness(_example().thumbnails) as harness:
        with capture_logs() as logs:
            [outcome] = await harness.feed(SNAPSHOT)
    assert outcome.handled
    made = [line for line in logs if line["event"] == "thumbnail"]
    assert [(line["bucket"], line["key"]) for line in made] == [
        ("media-1250000000", f"frames/launch-keynote-{n}.jpg") for n in range(4)
    ]
    assert {line["routing_key"] for line in made} == {"TaskFinish.Snapshot.Success"}
