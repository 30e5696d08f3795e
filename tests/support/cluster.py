"""A three-node RabbitMQ cluster on this machine, from the Debian ``rabbitmq-server`` package.

No Docker: three extra nodes of the installed server, each with its own node name, AMQP and
distribution ports (free ones, picked per run), data and log directories, config file,
plugins file and pid file, sharing a private Erlang cookie, joined into one cluster. The
machine's default node (``rabbit@<host>`` on 5672) is never touched: every command names its
node with ``-n``, and the scripts run with ``HOME`` in the cluster's own directory so they
read its cookie. :meth:`LocalCluster.close` stops the nodes and deletes everything.

    with LocalCluster.started() as cluster:     # ~30 s on two cores
        urls = cluster.urls                     # amqp://guest:guest@127.0.0.1:<port>/ each
        cluster.kill(cluster.nodes[0])          # kill -9
        cluster.restart(cluster.nodes[0])       # back, rejoins
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import free_port

__all__ = ["ClusterError", "LocalCluster", "Node"]

#: Where the Debian package keeps the real scripts (those on PATH switch to the rabbitmq user).
SBIN = Path("/usr/lib/rabbitmq/bin")
_HOW = (
    "the cluster tests start three extra RabbitMQ nodes from the Debian rabbitmq-server "
    "package (apt-get install rabbitmq-server); "
)


class ClusterError(RuntimeError):
    """The local cluster could not be started or controlled."""


@dataclass
class Node:
    """One node of the local cluster."""

    name: str  # short name, e.g. cf1234ab-1
    port: int  # AMQP
    dist_port: int
    base: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def full_name(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid_file(self) -> Path:
        return self.base / "pid"

    def env(self, home: Path) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")},
            "HOME": str(home),
            "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.full_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }


@dataclass
class LocalCluster:
    """Three RabbitMQ nodes on 127.0.0.1, joined; see the module docstring."""

    home: Path
    nodes: list[Node] = field(default_factory=list)

    # -- life cycle ---------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def started(cls, size: int = 3, timeout: float = 120.0) -> Iterator[LocalCluster]:
        """Start ``size`` joined nodes; stop them and delete everything on exit."""
        if not (SBIN / "rabbitmq-server").exists() or shutil.which("erl") is None:
            raise ClusterError(_HOW + f"{SBIN / 'rabbitmq-server'} or erl is missing")
        cluster = cls(Path(tempfile.mkdtemp(prefix="fanout-cluster-")))
        try:
            cluster._prepare(size)
            cluster._start_all(timeout)
            yield cluster
        finally:
            cluster.close()

    def _prepare(self, size: int) -> None:
        run = f"cf{os.getpid()}{secrets.token_hex(2)}"
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        (self.home / "rabbitmq-env.conf").write_text("")  # not the machine's (it names a node)
        (self.home / "enabled_plugins").write_text("[].\n")  # no plugin ports to collide
        for i in range(1, size + 1):
            node = Node(f"{run}-{i}", free_port(), free_port(), self.home / f"node{i}")
            (node.base / "log").mkdir(parents=True)
            self.nodes.append(node)
        for node in self.nodes:
            peers = "\n".join(
                f"cluster_formation.classic_config.nodes.{i} = {peer.full_name}"
                for i, peer in enumerate(self.nodes, 1)
            )
            (node.base / "rabbitmq.conf").write_text(
                f"listeners.tcp.1 = 127.0.0.1:{node.port}\n"
                "cluster_partition_handling = pause_minority\n"
                "cluster_formation.peer_discovery_backend = classic_config\n"
                f"{peers}\n"
                "vm_memory_high_watermark.relative = 0.2\n"
                "disk_free_limit.absolute = 50MB\n"
            )

    def _start_all(self, timeout: float) -> None:
        for node in self.nodes:
            self._spawn(node)
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda n: self.await_running(n, timeout), self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:  # peer discovery may have joined them already
            if first.full_name not in self.running_nodes(node):
                self.ctl(node, "stop_app")
                self.ctl(node, "join_cluster", first.full_name)
                self.ctl(node, "start_app")
        deadline = time.monotonic() + timeout
        while len(self.running_nodes(first)) < len(self.nodes):
            if time.monotonic() > deadline:
                raise ClusterError(f"the nodes did not join: {self.running_nodes(first)}")
            time.sleep(0.5)

    def _spawn(self, node: Node) -> None:
        node.pid_file.unlink(missing_ok=True)
        log = (node.base / "log" / "console.log").open("ab")
        node.process = subprocess.Popen(
            [str(SBIN / "rabbitmq-server")],
            env=node.env(self.home),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def await_running(self, node: Node, timeout: float = 60.0) -> None:
        """Block until ``node`` runs RabbitMQ; a clear error with its log tail if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            if node.process is not None and node.process.poll() is not None:
                raise ClusterError(f"{_HOW}node {node.full_name} exited:\n{self.log_tail(node)}")
            done = self._run(node, "rabbitmqctl", "await_startup", "--timeout", "5", check=False)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{_HOW}node {node.full_name} did not start in {timeout:.0f} s:\n"
                    f"{self.log_tail(node)}"
                )
            time.sleep(0.5)

    def log_tail(self, node: Node, lines: int = 15) -> str:
        text = ""
        for path in sorted((node.base / "log").glob("*.log")):
            text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Kill every node (no graceful stop: nothing here must survive) and delete it all."""
        for node in self.nodes:
            self._kill_node(node)
        shutil.rmtree(self.home, ignore_errors=True)

    # -- faults -------------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """``kill -9`` the node's Erlang VM; returns once it is gone."""
        self._kill_node(node)

    def restart(self, node: Node, timeout: float = 60.0) -> None:
        """Start a killed node again; it rejoins the cluster from its data directory."""
        self._spawn(node)
        self.await_running(node, timeout)

    def _kill_node(self, node: Node) -> None:
        pid = _read_pid(node.pid_file)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if node.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)  # the script and epmd-less children
            node.process.wait(timeout=30)
            node.process = None
        node.pid_file.unlink(missing_ok=True)

    # -- looking -----------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node_on_port(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def node_named(self, full_name: str) -> Node:
        return next(n for n in self.nodes if n.full_name == full_name)

    def running_nodes(self, via: Node) -> list[str]:
        """The running members of the cluster, as ``via`` sees them."""
        done = self._run(via, "rabbitmqctl", "cluster_status", "--formatter", "json", check=False)
        if done.returncode != 0:
            return []
        return list(json.loads(done.stdout).get("running_nodes", []))

    def leader_of(self, queue: str, via: Node | None = None) -> Node:
        """The node that leads quorum queue ``queue`` now."""
        for node in [via] if via else self.live_nodes():
            out = self.ctl(node, "list_queues", "name", "leader", "--no-table-headers", check=False)
            for line in out.splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == queue:
                    return self.node_named(parts[1])
        raise ClusterError(f"no leader found for {queue}")

    def members_of(self, queue: str, via: Node) -> list[str]:
        out = self.ctl(via, "list_queues", "name", "members", "--no-table-headers")
        for line in out.splitlines():
            name, _, rest = line.partition("\t")
            if name == queue:
                return [w.strip("[] ,") for w in rest.split(",") if "@" in w]
        raise ClusterError(f"no queue {queue} on {via.full_name}")

    def live_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def ctl(self, node: Node, *args: str, check: bool = True) -> str:
        return self._run(node, "rabbitmqctl", *args, check=check).stdout

    def queues_tool(self, node: Node, *args: str) -> str:
        return self._run(node, "rabbitmq-queues", *args, check=True).stdout

    def _run(
        self, node: Node, tool: str, *args: str, check: bool
    ) -> subprocess.CompletedProcess[str]:
        command: Sequence[str] = [str(SBIN / tool), "-q", "-n", node.full_name, *args]
        done = subprocess.run(
            command,
            check=False,
            env=node.env(self.home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise ClusterError(f"{tool} {' '.join(args)} on {node.full_name}: {done.stderr}")
        return done


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
