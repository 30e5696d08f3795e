"""Console sessions: who a cookie says is signed in, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from callback_fanout.console.auth import OPEN_OPERATOR, Sessions
from shared.errors import ConfigError
from shared.settings import Settings

A = "alice=aaaaaaaaaaaaaaaa-1"
B = "bob=bbbbbbbbbbbbbbbb-2"


def sessions(*tokens: str, host: str = "127.0.0.1", ttl: float = 3600) -> Sessions:
    settings = Settings.load(
        console_token=[SecretStr(t) for t in tokens], console_host=host, console_session=ttl
    )
    return Sessions.from_settings(settings)


def test_a_token_signs_in_under_its_name_and_the_cookie_says_so() -> None:
    both = sessions(A, B)
    signed = both.login("bbbbbbbbbbbbbbbb-2")
    assert signed is not None
    session, cookie = signed
    assert session.operator == "bob"
    assert both.session(cookie) == session
    assert both.login("aaaaaaaaaaaaaaaa-1-but-longer") is None
    assert both.login("") is None


def test_a_forged_expired_or_retired_cookie_signs_nobody_in() -> None:
    both = sessions(A, B, ttl=60)
    session, cookie = both.issue("alice", now=1_000_000.0)
    name, expires, nonce, signature = cookie.split(":")
    assert both.session(cookie, now=1_000_059.0) == session
    assert both.session(cookie, now=1_000_060.0) is None  # expired
    assert both.session(f"bob:{expires}:{nonce}:{signature}", now=1_000_000.0) is None
    assert both.session(f"{name}:9999999999:{nonce}:{signature}", now=1_000_000.0) is None
    assert both.session("alice:1:2", now=1_000_000.0) is None
    assert both.session(None) is None
    # alice's token removed (rotation): her sessions end with it
    assert sessions(B).session(cookie, now=1_000_000.0) is None


def test_csrf_tokens_belong_to_their_session() -> None:
    both = sessions(A, B)
    first, _ = both.issue("alice")
    second, _ = both.issue("alice")
    assert both.csrf_ok(first, both.csrf(first))
    assert not both.csrf_ok(first, both.csrf(second))
    assert not both.csrf_ok(first, None)
    nonce = both.login_nonce()
    assert both.login_csrf_ok(nonce, nonce)
    assert not both.login_csrf_ok(nonce, both.login_nonce())
    assert not both.login_csrf_ok(None, nonce)


def test_a_token_file_adds_its_tokens(tmp_path: Path) -> None:
    tokens = tmp_path / "console_tokens"
    tokens.write_text("# rotation: the old one goes next week\ncarol=cccccccccccccccc-3\n")
    settings = Settings.load(console_token=[SecretStr(A)], console_token_file=tokens)
    both = Sessions.from_settings(settings)
    assert sorted(both.names) == ["alice", "carol"]
    signed = both.login("cccccccccccccccc-3")
    assert signed is not None
    assert signed[0].operator == "carol"


def test_without_a_token_the_console_is_open_on_loopback_only() -> None:
    open_ = sessions()
    assert open_.open
    assert open_.names == [OPEN_OPERATOR]
    assert sessions(host="::1").open
    with pytest.raises(ConfigError, match="no console token"):
        sessions(host="0.0.0.0")
    assert not sessions(A, host="0.0.0.0").open


@pytest.mark.parametrize(
    ("tokens", "said"),
    [
        (["alice=short"], "invalid secret"),
        (["no-equals-sign-here-long-enough"], "expected NAME=SECRET"),
        ([A, "alice=cccccccccccccccc-3"], "each name may be given once"),
    ],
)
def test_a_malformed_token_is_refused_without_quoting_it(tokens: list[str], said: str) -> None:
    with pytest.raises(ConfigError, match=said) as refused:
        sessions(*tokens)
    for token in tokens:  # never the secret itself
        assert token.rpartition("=")[2] not in str(refused.value)


@pytest.mark.parametrize(
    ("asked", "goes"),
    [
        ("/parked?job_id=1", "/parked?job_id=1"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("https://evil.example/", "/"),
        (None, "/"),
    ],
)
def test_after_the_login_only_a_path_of_the_console_is_followed(
    asked: str | None, goes: str
) -> None:
    from callback_fanout.console.pages.login import next_path

    assert next_path(asked) == goes
