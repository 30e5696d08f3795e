"""Nothing leaks: tokens and the broker password never reach a log line, an error, /readyz
or the command's output; bodies are logged only when a debug setting says so."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
from yarl import URL

from shared.logs import SecretValueFilter, get_logger, mask_values, redact_secret_values
from shared.settings import Settings
from tests.security.conftest import OCR_JSON, StartIngress, new_secret
from tests.support.broker import BrokerClient

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 20.0


async def _raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` as it is (malformed HTTP included); what came back before the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(DEADLINE):
            return await reader.read(65536)
    finally:
        writer.close()


def _malformed_requests(secret: str) -> list[bytes]:
    """Requests aiohttp refuses with 400 before routing, quoting their first line."""
    return [
        f"POST /callbacks/{secret} HTTP/1.1 extra\r\nHost: x\r\n\r\n".encode(),
        f"POST /callbacks/{secret}\x01 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        f"POST /callbacks?token={secret} HTTP/1.1\r\nBad\x01Header: y\r\n\r\n".encode(),
    ]


async def test_no_log_entry_carries_a_token_whatever_the_request(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret, other = new_secret(), new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], body_timeout=0.5, log_bodies=True)
    with structlog.testing.capture_logs() as logs:
        statuses = [
            (await ingress.post(f"/callbacks/{secret}", OCR_JSON)).status,
            (await ingress.post(f"/callbacks?token={secret}", OCR_JSON)).status,
            (await ingress.post(f"/callbacks/{other}", OCR_JSON)).status,
            (await ingress.post(f"/callbacks?token={other}", OCR_JSON)).status,
            (await ingress.request("GET", f"/callbacks/{secret}")).status,
            (
                await ingress.post(f"/callbacks/{secret}", b"x", headers={"Content-Encoding": "br"})
            ).status,
        ]
        for request in _malformed_requests(secret):
            assert (await _raw_request(ingress.port, request)).startswith(b"HTTP/1.0 400")
        slow = _raw_request(
            ingress.port,
            f"POST /callbacks/{secret} HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nx".encode(),
        )
        assert (await slow).startswith(b"HTTP/1.1 408")
        await ingress.readiness()

    assert statuses == [200, 200, 404, 404, 405, 415]
    assert secret not in repr(logs)
    assert other not in repr(logs)
    refusals = [e["reason"] for e in logs if e["event"] == "request refused"]
    assert sorted(refusals) == ["bad_encoding", "slow_body", "token", "token"]
    assert await broker.count(broker.topology.raw) == 2


@pytest.mark.parametrize("log_bodies", [False, True])
async def test_bodies_are_logged_only_when_the_debug_setting_says_so(
    start_ingress: StartIngress, log_bodies: bool
) -> None:
    marker = f"body-marker-{secrets.token_hex(8)}"
    ingress = await start_ingress(log_bodies=log_bodies)
    with structlog.testing.capture_logs() as logs:
        assert (await ingress.post("/callbacks", f'{{"m":"{marker}"}}'.encode())).status == 200
    assert any(e["event"] == "callback accepted" for e in logs)
    assert (marker in repr(logs)) is log_bodies


async def test_readyz_shows_counts_and_modes_but_no_secret(
    start_ingress: StartIngress, tmp_path: Path
) -> None:
    flag, filed = new_secret(), new_secret()
    token_file = tmp_path / "tokens"
    token_file.write_text(f"filed={filed}\n")
    ingress = await start_ingress(tokens=[f"flag={flag}"], token_file=token_file)
    await ingress.post(f"/callbacks/{new_secret()}")

    async with ingress.session().get(ingress.admin_url("/readyz")) as response:
        text = await response.text()

    assert flag not in text
    assert filed not in text
    assert "guest" not in text  # nothing of the broker URL
    assert json.loads(text)["roles"]["ingress"] == {
        "ready": True,
        "broker": True,
        "broker_blocked": None,
        "auth": "token",
        "tokens": 2,
        "allowlist": False,
        "rate_limit": False,
        "refused": {"token": 1},
        "warnings": [],
    }


def test_registered_secrets_are_masked_in_rendered_exceptions_and_library_logs() -> None:
    secret = new_secret()
    mask_values(secret)
    chain: list[structlog.typing.Processor] = [
        structlog.processors.format_exc_info,
        redact_secret_values,
    ]
    with structlog.testing.capture_logs(processors=chain) as logs:
        try:
            raise ValueError(f"cannot use {secret}")
        except ValueError:
            get_logger("test").exception("failed", detail=[f"x{secret}x"], url=f"/c/{secret}")
    [entry] = logs
    assert secret not in repr(entry)
    assert "cannot use ***" in entry["exception"]
    assert entry["url"] == "/c/***"

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretValueFilter())
    library = logging.getLogger(f"test.library.{secrets.token_hex(4)}")
    library.addHandler(handler)
    library.propagate = False
    try:
        try:
            raise RuntimeError(f"bad line b'POST /callbacks/{secret}'")
        except RuntimeError:
            library.exception("Error handling request from %s %s", "127.0.0.1", secret)
    finally:
        library.removeHandler(handler)
    printed = stream.getvalue()
    assert secret not in printed
    assert "Error handling request from 127.0.0.1 ***" in printed
    assert "bad line b'POST /callbacks/***'" in printed


@contextlib.asynccontextmanager
async def _cli(
    *args: str, env_extra: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``callback-fanout ARGS`` in a child process with a clean environment; SIGTERM at exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACK_FANOUT_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_extra or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callback_fanout",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), DEADLINE)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _lines_until(process: asyncio.subprocess.Process, event: str) -> list[str]:
    """Log lines on stderr up to the first whose event is ``event``."""
    assert process.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(DEADLINE):
        while line := (await process.stderr.readline()).decode():
            lines.append(line)
            if line.startswith("{") and json.loads(line).get("event") == event:
                return lines
    raise AssertionError(f"the command ended before {event!r}: {''.join(lines)}")


async def _rest(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = await asyncio.gather(process.stdout.read(), process.stderr.read())
    return out.decode() + err.decode()


async def test_the_command_never_prints_a_token_even_for_malformed_requests(
    settings: Settings, broker: BrokerClient
) -> None:
    import aiohttp

    secret = new_secret()
    args = ["ingress", "--token", f"ci={secret}", "--host", "127.0.0.1", "--port", "0"]
    args += ["--prefix", settings.prefix, "--amqp-url", settings.broker_url]
    async with _cli(*args) as process:
        printed = await _lines_until(process, "ingress listening")
        port = json.loads(printed[-1])["port"]
        printed += await _lines_until(process, "ingress publisher ready")
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for url, status in [
                (f"{base}/callbacks/{secret}", 200),
                (f"{base}/callbacks?token={secret}", 200),
                (f"{base}/callbacks/{new_secret()}", 404),
            ]:
                async with http.post(url, data=OCR_JSON) as response:
                    assert response.status == status
            async with http.get(f"{base}/readyz") as response:
                readyz = await response.text()
        for request in _malformed_requests(secret):
            assert (await _raw_request(port, request)).startswith(b"HTTP/1.0 400")
    everything = "".join(printed) + await _rest(process) + readyz

    assert process.returncode == 0
    assert "Error handling request" in everything  # aiohttp did quote the request lines
    assert "/callbacks/***" in everything
    assert '"reason": "token"' in everything
    assert secret not in everything
    assert await broker.count(broker.topology.raw) == 2


async def test_the_command_never_prints_the_broker_password(settings: Settings) -> None:
    password = f"pw-{secrets.token_hex(12)}"
    wrong = str(URL(settings.broker_url).with_password(password))
    args = ["ingress", "--host", "127.0.0.1", "--port", "0", "--prefix", settings.prefix]
    async with _cli(*args, "--amqp-url", wrong) as process:
        printed = await _lines_until(process, "broker unreachable, retrying")
    everything = "".join(printed) + await _rest(process)

    assert password not in everything
    assert ":***@" in everything


@pytest.mark.parametrize(
    "spec",
    ["ci=Sh0rtButSecret", "Unnamed0SecretValue0Given", "c i=An0therSecretValueHere"],
)
async def test_a_bad_token_flag_is_refused_without_printing_the_secret(spec: str) -> None:
    async with _cli("ingress", "--port", "0", "--token", spec) as process:
        everything = await _rest(process)
        await process.wait()
    assert process.returncode == 2
    assert "callback-fanout: token #1" in everything
    assert (spec.partition("=")[2] or spec) not in everything


async def test_the_help_lists_the_security_flags_without_any_configured_secret() -> None:
    secret = new_secret()
    env = {"CALLBACK_FANOUT_TOKENS": f"ci={secret}"}
    async with _cli("ingress", "--help", env_extra=env) as process:
        text = await _rest(process)
    for flag in ("--token ", "--token-file", "--allowed-networks", "--trusted-proxies"):
        assert flag in text
    assert secret not in text
