"""``ingress``, ``router`` and ``schema`` read the configuration file's ``[settings]`` only:
its consumers (here one whose secret cannot be read) are not theirs to build."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from subprocess import DEVNULL

import aiohttp
import pytest

from shared.settings import Settings
from tests.conftest import SEEDS
from tests.support.broker import BrokerClient
from tests.support.processes import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

UNSET = "CALLBACK_FANOUT_TEST_NEVER_SET_SECRET"
BROKER = "FANOUT_TEST_BROKER_URL"  # the file names the broker through it (a secret)
COMMAND = (sys.executable, "-m", "callback_fanout")


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def config(tmp_path: Path, settings: Settings, port: int) -> Path:
    """A file whose [settings] name the test's prefix and a port, and whose one consumer
    cannot be built (its secret's variable is not set)."""
    path = tmp_path / "fanout.toml"
    path.write_text(
        f'[settings]\nprefix = "{settings.prefix}"\nport = {port}\n'
        f'amqp_url = {{ env = "{BROKER}" }}\n\n'
        '[consumers.billing]\nuse = "forward"\nroutes = ["TaskFinish.#"]\n'
        f'url = "http://127.0.0.1:9/"\nsecret = {{ env = "{UNSET}" }}\n'
    )
    return path


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACK_FANOUT_")}
    return {**env, BROKER: settings.broker_url}


Start = Callable[..., Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def start(settings: Settings) -> AsyncIterator[Start]:
    """``await start(*argv)``: the command in a child process, killed at teardown."""
    started: list[asyncio.subprocess.Process] = []

    async def run(*argv: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *COMMAND, *argv, env=_env(settings), stdout=DEVNULL, stderr=DEVNULL
        )
        started.append(process)
        return process

    yield run
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_schema_reads_the_prefix_of_the_file_and_builds_no_consumer(
    config: Path, settings: Settings
) -> None:
    schema = subprocess.run(
        [*COMMAND, "schema", "--asyncapi", "--config", str(config)],
        env=_env(settings),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert schema.returncode == 0, schema.stderr
    assert f"{settings.prefix}.events" in json.dumps(json.loads(schema.stdout))

    # a command that builds the file's consumers cannot: the file is what the test says
    worker = subprocess.run(
        [*COMMAND, "worker", "--config", str(config), "--no-entry-points"],
        env=_env(settings),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert worker.returncode == 2
    assert UNSET in worker.stderr


async def test_the_router_runs_on_the_settings_of_the_file(
    config: Path, start: Start, broker: BrokerClient
) -> None:
    router = await start("router", "--config", str(config), "--no-entry-points")
    await eventually(functools.partial(_consumers_are, broker, broker.topology.raw, 1), timeout=30)
    assert router.returncode is None


async def test_the_ingress_runs_on_the_settings_of_the_file(
    config: Path, start: Start, broker: BrokerClient, port: int
) -> None:
    ingress = await start("ingress", "--config", str(config), "--no-entry-points")
    url = f"http://127.0.0.1:{port}/callbacks"

    async def accepted() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    url,
                    data=(SEEDS / "ocr.1.xml").read_bytes(),
                    headers={"Content-Type": "application/xml"},
                ) as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(accepted, timeout=30, interval=0.2)
    assert await broker.count(broker.topology.raw) == 1
    assert ingress.returncode is None


async def _consumers_are(broker: BrokerClient, queue: str, n: int) -> bool:
    channel = await broker.connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count == n
    except Exception:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
