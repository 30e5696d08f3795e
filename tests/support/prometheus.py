"""A real Prometheus (Debian's ``prometheus`` package) for a test: the deployment's scrape
jobs and alert rules from deploy/prometheus, pointed at the test's processes on 127.0.0.1,
scraping and evaluating every second, its storage in a temporary directory removed after."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support.processes import free_port
from tests.support.promql import ALERTS, PROMETHEUS_CONFIG

__all__ = ["PrometheusServer", "config_for", "promtool"]

INSTALL_HINT = (
    "apt-get install prometheus (Debian's package: prometheus and promtool; "
    "make test-setup installs it)"
)


def _binary(name: str) -> str:
    """The path of ``name``; a test that needs it fails, never skips, when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``promtool ARGS``; its output is in the result."""
    command = [_binary("promtool"), *(str(a) for a in args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def config_for(targets: Mapping[str, Sequence[str]], *, prefix: str) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with each job's targets replaced by ``targets[job]``
    (every job must get some), 1 s intervals, the shipped rules by absolute path, and RabbitMQ's
    per-queue series kept only for this test's ``prefix`` (the broker is shared)."""
    shipped = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = []
    for shipped_job in shipped["scrape_configs"]:
        name = shipped_job["job_name"]
        assert targets.get(name), f"the test gives no target for the job {name}"
        job = {
            k: v
            for k, v in shipped_job.items()
            if not k.endswith("_sd_configs") and k != "static_configs"
        }
        job["static_configs"] = [{"targets": list(targets[name])}]
        if "metric_relabel_configs" in job:
            keep = {"source_labels": ["prefix"], "regex": re.escape(prefix), "action": "keep"}
            job["metric_relabel_configs"] = [*job["metric_relabel_configs"], keep]
        jobs.append(job)
    unknown = set(targets) - {job["job_name"] for job in jobs}
    assert not unknown, f"no such job in {PROMETHEUS_CONFIG.name}: {sorted(unknown)}"
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS.resolve())],
        "scrape_configs": jobs,
    }


class PrometheusServer:
    """``prometheus`` started on a free port of 127.0.0.1 with a given config; ``stop()``
    ends it and removes its directory."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, home: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.home = home
        self.http = aiohttp.ClientSession()

    @classmethod
    async def start(cls, config: Mapping[str, Any]) -> PrometheusServer:
        binary = _binary("prometheus")
        home = Path(tempfile.mkdtemp(prefix="prometheus-"))
        config_file = home / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        checked = promtool("check", "config", config_file)
        assert checked.returncode == 0, f"promtool rejects the test config:\n{checked.stdout}"
        port = free_port()
        with (home / "log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                stdout=log,
                stderr=log,
            )
        server = cls(process, port, home)
        try:
            await server._wait_ready()
        except BaseException:
            await server.stop()
            raise
        return server

    async def _wait_ready(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a deadline
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.returncode is not None:
                pytest.fail(f"prometheus exited at start:\n{self.log()}", pytrace=False)
            try:
                async with self.http.get(f"{self.url}/-/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        pytest.fail(f"prometheus not ready within {timeout}s:\n{self.log()}", pytrace=False)

    def log(self) -> str:
        """The last lines prometheus wrote."""
        path = self.home / "log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else ""
        )

    async def _api(self, path: str, **params: str) -> Any:
        async with self.http.get(f"{self.url}/api/v1/{path}", params=params) as response:
            answer = await response.json()
        assert answer["status"] == "success", f"{path} {params}: {answer.get('error')}"
        return answer["data"]

    async def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar as one sample) ``expression`` gives now."""
        data = await self._api("query", query=expression)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    async def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now: labels, annotations, state, value."""
        alerts: list[dict[str, Any]] = (await self._api("alerts"))["alerts"]
        return alerts

    async def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its health and last error."""
        groups = (await self._api("rules"))["groups"]
        return [rule for group in groups for rule in group["rules"]]

    async def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets: job, URL, health, last error."""
        active: list[dict[str, Any]] = (await self._api("targets"))["activeTargets"]
        return active

    async def stop(self) -> None:
        await self.http.close()
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)
