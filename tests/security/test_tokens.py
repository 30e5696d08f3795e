"""Secret tokens at the running ingress: the right one gets in under its name, nothing
else does, and a refusal says nothing."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from ingress import auth
from ingress.app import create_app
from ingress.auth import TokenRegistry
from ingress.groupcommit import AmqpPublisher
from ingress.guard import OPEN_ENDPOINT_WARNING
from shared.errors import ConfigError
from shared.settings import Settings
from tests.security.conftest import OCR_JSON, StartIngress, new_secret, with_overrides
from tests.support.broker import BrokerClient
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


async def test_the_right_token_in_the_path_is_accepted_and_published_under_its_name(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"])

    reply = await ingress.post(f"/callbacks/{secret}", OCR_JSON)

    assert reply.status == 200
    [message] = await broker.take_all(broker.topology.raw)
    assert message.body == OCR_JSON
    assert message.message_id == reply.headers["X-Request-Id"]
    assert (message.headers or {})["x-token-name"] == "ci"


async def test_the_right_token_in_the_query_is_accepted_and_published_under_its_name(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"workflow={secret}"])

    reply = await ingress.post(f"/callbacks?token={secret}", OCR_JSON)

    assert reply.status == 200
    [message] = await broker.take_all(broker.topology.raw)
    assert message.body == OCR_JSON
    assert (message.headers or {})["x-token-name"] == "workflow"


async def test_wrong_and_missing_tokens_get_the_404_of_an_unknown_path_and_publish_nothing(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"])
    unknown = await ingress.post("/no-such-path", OCR_JSON)
    assert unknown.status == 404

    refused = [
        "/callbacks",  # no token
        "/callbacks?token=",  # empty token
        f"/callbacks/{new_secret()}",  # wrong token
        f"/callbacks?token={new_secret()}",
        f"/callbacks/{secret[:-1]}",  # a prefix of the right one
        f"/callbacks/{secret}x",  # the right one and more
        f"/callbacks/{secret.upper()}",
    ]
    for path in refused:
        reply = await ingress.post(path, OCR_JSON)
        assert (reply.status, reply.body) == (unknown.status, unknown.body), path
        assert reply.headers.get("Content-Type") == unknown.headers.get("Content-Type")
        assert "X-Request-Id" not in reply.headers

    assert await broker.count(broker.topology.raw) == 0
    ready = await ingress.readiness()
    assert ready["refused"] == {"token": len(refused)}
    assert ready["auth"] == "token"


async def test_two_tokens_are_valid_at_once_for_rotation_and_the_old_one_can_be_removed(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    old, new = new_secret(), new_secret()
    during = await start_ingress(tokens=[f"old={old}", f"new={new}"])
    assert (await during.post(f"/callbacks/{old}", b'{"n":1}')).status == 200
    assert (await during.post(f"/callbacks?token={new}", b'{"n":2}')).status == 200

    after = await start_ingress(tokens=[f"new={new}"])  # the sender has moved to the new one
    assert (await after.post(f"/callbacks/{old}", b'{"n":3}')).status == 404
    assert (await after.post(f"/callbacks/{new}", b'{"n":4}')).status == 200

    published = {
        m.body: (m.headers or {})["x-token-name"]
        for m in await broker.take_all(broker.topology.raw)
    }
    assert published == {b'{"n":1}': "old", b'{"n":2}': "new", b'{"n":4}': "new"}


async def test_the_token_name_reaches_the_consumer_in_the_event_envelope(
    start_ingress: StartIngress,
) -> None:
    secret = new_secret()
    everything = Recorder("everything", ["#"])
    ingress = await start_ingress([everything], full=True, tokens=[f"ci-prod={secret}"])

    assert (await ingress.post(f"/callbacks/{secret}", OCR_JSON)).status == 200

    await eventually(lambda: len(everything.events) == 1)
    [event] = everything.events
    assert event.envelope is not None
    assert event.envelope.token_name == "ci-prod"
    assert event.envelope.raw_body == OCR_JSON
    assert event.job_id == "j-security-1"


async def test_tokens_come_from_a_token_file_with_comments_or_a_bare_docker_secret(
    start_ingress: StartIngress, broker: BrokerClient, tmp_path: Path
) -> None:
    listed, bare, flag, second = new_secret(), new_secret(), new_secret(), new_secret()
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# rotated 2026-01\n\nci-listed={listed}\n ci-a={second}, \n")
    docker_secret = tmp_path / "ci_token"
    docker_secret.write_text(f"{bare}\n")

    from_file = await start_ingress(tokens=[f"flag={flag}"], token_file=token_file)
    from_secret = await start_ingress(token_file=docker_secret)

    assert (await from_file.post(f"/callbacks/{listed}", b"1")).status == 200
    assert (await from_file.post(f"/callbacks/{flag}", b"2")).status == 200
    assert (await from_file.post(f"/callbacks/{bare}", b"3")).status == 404
    assert (await from_file.post(f"/callbacks/{second}", b"5")).status == 200
    assert (await from_secret.post(f"/callbacks/{bare}", b"4")).status == 200
    names = {
        m.body: (m.headers or {})["x-token-name"]
        for m in await broker.take_all(broker.topology.raw)
    }
    assert names == {b"1": "ci-listed", b"2": "flag", b"4": "ci_token", b"5": "ci-a"}


async def test_methods_other_than_post_are_refused_with_405_and_publish_nothing(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"])
    for path in ("/callbacks", f"/callbacks/{secret}", f"/callbacks?token={secret}"):
        for method in ("GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"):
            reply = await ingress.request(method, path, OCR_JSON)
            assert reply.status == 405, (method, path)
            assert reply.headers["Allow"] == "POST"
    assert await broker.count(broker.topology.raw) == 0


async def test_an_open_endpoint_says_so_at_start_up_and_on_readyz(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    with structlog.testing.capture_logs() as logs:
        ingress = await start_ingress()
    assert {"event": OPEN_ENDPOINT_WARNING, "log_level": "warning"}.items() <= next(
        e for e in logs if e["event"] == OPEN_ENDPOINT_WARNING
    ).items()
    ready = await ingress.readiness()
    assert ready["ready"] is True
    assert ready["auth"] == "open"
    assert ready["warnings"] == [OPEN_ENDPOINT_WARNING]
    # open as before: the plain path takes callbacks, without a token name
    assert (await ingress.post("/callbacks", OCR_JSON)).status == 200
    [message] = await broker.take_all(broker.topology.raw)
    assert "x-token-name" not in (message.headers or {})


async def test_an_ingress_with_a_token_gives_no_open_endpoint_warning(
    start_ingress: StartIngress,
) -> None:
    with structlog.testing.capture_logs() as logs:
        ingress = await start_ingress(tokens=[f"ci={new_secret()}"])
    assert [e for e in logs if e["log_level"] == "warning"] == []
    ready = await ingress.readiness()
    assert (ready["auth"], ready["tokens"], ready["warnings"]) == ("token", 1, [])


def test_every_token_is_compared_with_compare_digest_whichever_matches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets_ = [new_secret() for _ in range(3)]
    registry = TokenRegistry(auth.parse_token(f"t{i}={s}", "test") for i, s in enumerate(secrets_))
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    for presented, name in [(secrets_[0], "t0"), (secrets_[2], "t2"), (new_secret(), None)]:
        compared.clear()
        assert registry.match(presented) == name
        assert len(compared) == 3  # no early exit on a match
        assert {len(a) for pair in compared for a in pair} == {32}  # digests: equal lengths


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("no-separator-at-all-here", "expected NAME=SECRET"),
        ("ci=short", "invalid secret"),
        ("ci=has space inside the secret", "invalid secret"),
        ("ci=has/slash/which/breaks/the/path", "invalid secret"),
        ("bad name=abcdefghijklmnopqrstuvwxyz", "invalid token name"),
        ("=abcdefghijklmnopqrstuvwxyz", "invalid token name"),
    ],
)
def test_an_invalid_token_is_a_config_error_that_never_quotes_the_secret(
    settings: Settings, spec: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(with_overrides(settings, tokens=[spec]), AmqpPublisher(settings))
    message = str(caught.value)
    assert problem in message
    assert "token #1" in message
    secret = spec.partition("=")[2] or spec
    assert secret not in message


def test_duplicate_names_secrets_and_empty_or_missing_token_files_are_config_errors(
    settings: Settings, tmp_path: Path
) -> None:
    one = new_secret()
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    cases: dict[str, dict[str, object]] = {
        "given twice": {"tokens": [f"ci={one}", f"ci={new_secret()}"]},
        "same secret": {"tokens": [f"a={one}", f"b={one}"]},
        "holds no token": {"token_file": empty},
        "cannot read token file": {"token_file": tmp_path / "missing"},
    }
    for problem, overrides in cases.items():
        with pytest.raises(ConfigError, match=problem) as caught:
            create_app(with_overrides(settings, **overrides), AmqpPublisher(settings))
        assert one not in str(caught.value)


def test_tokens_print_masked_in_settings_and_registry(settings: Settings) -> None:
    secret = new_secret()
    configured = with_overrides(settings, tokens=[f"ci={secret}"])
    registry = TokenRegistry.from_settings(configured)
    shown = [repr(configured), str(configured), configured.model_dump_json(), repr(registry)]
    assert all(secret not in text for text in shown)
    assert configured.tokens == [SecretStr(f"ci={secret}")]
    assert registry.names == ("ci",)
