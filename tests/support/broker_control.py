"""Control of the broker under test (``rabbitmqctl``), found from the broker itself.

Whether this machine's ``rabbitmqctl`` controls the broker the tests talk to is never judged
from the text of the URL (a testcontainers broker is on ``localhost`` too): the tests open
an AMQP connection with a name nobody else uses and ask ``rabbitmqctl`` which node holds
it. Found: that node is the broker under test, and every command names it (``-n``). Not
found, or no ``rabbitmqctl``: there is no control, and :class:`NoBrokerControl` says why. A
broker that testcontainers started is controlled inside its container.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from typing import Protocol

import aio_pika

__all__ = [
    "BrokerControl",
    "ContainerControl",
    "NoBrokerControl",
    "NodeControl",
    "RabbitmqContainer",
    "find_control",
    "node_of_pid",
]

#: A connection's pid as ``rabbitmqctl list_connections`` prints it: ``<rabbit@host.1.2.3>``.
_PID = re.compile(r"<(?P<node>[^<>\s]+@[^<>\s]+)\.\d+\.\d+\.\d+>")


class NoBrokerControl(Exception):
    """The broker under test cannot be stopped and started from here; the message says why."""


class BrokerControl(Protocol):
    """``rabbitmqctl`` for exactly the broker under test."""

    @property
    def name(self) -> str:
        """Which broker this controls, for messages (a node name or a container)."""
        ...

    def rabbitmqctl(self, *args: str, timeout: float = 120) -> str:
        """Run ``rabbitmqctl -q ARGS`` against it; its output, or an error if it fails."""
        ...


class RabbitmqContainer(Protocol):
    """What is used of a testcontainers container: running a command inside it."""

    def exec(self, command: str | list[str]) -> tuple[int, bytes]: ...


@dataclass(frozen=True)
class NodeControl:
    """A RabbitMQ node on this machine, reached by this machine's ``rabbitmqctl -n NODE``."""

    node: str

    @property
    def name(self) -> str:
        return f"node {self.node}"

    def rabbitmqctl(self, *args: str, timeout: float = 120) -> str:
        return _rabbitmqctl("-n", self.node, *args, timeout=timeout)


@dataclass(frozen=True)
class ContainerControl:
    """The RabbitMQ in a container testcontainers started, reached by ``docker exec``."""

    container: RabbitmqContainer

    @property
    def name(self) -> str:
        return f"the testcontainers broker {getattr(self.container, 'image', '')}".rstrip()

    def rabbitmqctl(self, *args: str, timeout: float = 120) -> str:
        # `docker exec` takes no deadline; rabbitmqctl's own timeouts bound it instead.
        exit_code, output = self.container.exec(["rabbitmqctl", "-q", *args])
        text = output.decode("utf-8", "replace")
        if exit_code != 0:
            raise NoBrokerControl(f"rabbitmqctl {' '.join(args)} failed in the container: {text}")
        return text


def node_of_pid(pid: str) -> str | None:
    """The node of an Erlang pid as ``rabbitmqctl`` prints it, or None if it is not one."""
    match = _PID.search(pid)
    return match.group("node") if match else None


async def find_control(url: str, container: RabbitmqContainer | None = None) -> BrokerControl:
    """The control of the broker at ``url``; raises :class:`NoBrokerControl` when there is none.

    ``container`` is the testcontainers container the broker runs in, if it does.
    """
    if container is not None:
        return ContainerControl(container)
    if shutil.which("rabbitmqctl") is None:
        raise NoBrokerControl(
            "rabbitmqctl is not installed on this machine, so the broker under test cannot be "
            "stopped and started from here"
        )
    marker = f"callback-fanout-tests-{secrets.token_hex(8)}"
    connection = await aio_pika.connect(url, client_properties={"connection_name": marker})
    try:
        node = await asyncio.to_thread(serving_node, marker)
    finally:
        await connection.close()
    if node is None:
        raise NoBrokerControl(
            "the broker under test is not one this machine's rabbitmqctl controls: no node it "
            f"reaches holds the connection the tests opened to {_masked(url)}"
        )
    return NodeControl(node)


def serving_node(connection_name: str) -> str | None:
    """The node that holds the connection named ``connection_name``, as ``rabbitmqctl`` (its
    default node, or any node of that node's cluster) lists it; None if none does."""
    listing = _rabbitmqctl("list_connections", "pid", "client_properties", timeout=60)
    quoted = f'"{connection_name}"'
    for line in listing.splitlines():
        if quoted in line:
            return node_of_pid(line.split("\t", 1)[0])
    return None


def _rabbitmqctl(*args: str, timeout: float) -> str:
    command = f"rabbitmqctl {' '.join(args)}"
    try:
        done = subprocess.run(
            ["rabbitmqctl", "-q", *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise NoBrokerControl(f"{command} did not answer in {timeout} s") from exc
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        first = said[0] if said else "no output"
        raise NoBrokerControl(f"{command} failed (exit {done.returncode}): {first}")
    return done.stdout


def _masked(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)
