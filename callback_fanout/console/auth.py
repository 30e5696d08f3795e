"""Who is at the console: login with a named token, then a signed session cookie.

A console token is ``NAME=SECRET`` (the ingress's token form, a secret of 16 characters or
more); several may be valid at once, for rotation. A login that presents one gets a session
cookie ``NAME:EXPIRES:NONCE:SIGNATURE``, the signature an HMAC-SHA256 keyed by that token's
secret: every console replica accepts it without shared state, and removing a token ends its
sessions. The cookie is HttpOnly, SameSite=Strict and expires with the session.

Every POST but the login carries a CSRF token, an HMAC of the session's nonce under the same
key: a page of another site can neither read it nor forge it. The login form carries one of
its own, equal to a pre-login cookie (double submit).

Without a console token the console is open on loopback only (the command refuses any other
address): each browser gets a session of the operator ``loopback``, signed with a key of
this process.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ingress.auth import NamedToken, parse_token, read_token_file
from shared.errors import ConfigError
from shared.settings import Settings

__all__ = [
    "LOGIN_COOKIE",
    "OPEN_OPERATOR",
    "SESSION_COOKIE",
    "Session",
    "Sessions",
    "is_loopback",
]

SESSION_COOKIE = "cf_console"
LOGIN_COOKIE = "cf_console_login"
#: The operator's name in the logs when the console has no token (loopback only).
OPEN_OPERATOR = "loopback"
_KEY_CONTEXT = b"callback-fanout console session\x00"


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in operator: the token's name, until when, and the session's nonce."""

    operator: str
    expires: int
    nonce: str


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _key(secret: str) -> bytes:
    return hashlib.sha256(_KEY_CONTEXT + secret.encode("utf-8", "surrogatepass")).digest()


def _sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


class Sessions:
    """The console's tokens and the sessions they sign."""

    def __init__(self, tokens: Sequence[NamedToken], ttl: float) -> None:
        self.ttl = ttl
        self._tokens = list(tokens)
        if tokens:
            self._keys = {t.name: _key(t.secret.get_secret_value()) for t in tokens}
        else:  # open on loopback: one key of this process
            self._keys = {OPEN_OPERATOR: secrets.token_bytes(32)}

    @classmethod
    def from_settings(cls, settings: Settings) -> Sessions:
        """The console's sessions; :class:`ConfigError` for a malformed token, or for a
        console without tokens that would listen beyond loopback."""
        tokens = [
            parse_token(t.get_secret_value(), f"console token #{i}")
            for i, t in enumerate(settings.console_token, 1)
        ]
        if settings.console_token_file is not None:
            tokens += read_token_file(settings.console_token_file)
        names = [t.name for t in tokens]
        if len(set(names)) != len(names):
            raise ConfigError("console tokens: each name may be given once")
        if not tokens and not is_loopback(settings.console_host):
            raise ConfigError(
                f"the console listens on {settings.console_host} but has no console token: "
                "give --console-token NAME=SECRET (or --console-token-file), or listen on "
                "127.0.0.1"
            )
        return cls(tokens, settings.console_session)

    @property
    def open(self) -> bool:
        """True when no token is configured: every loopback browser is let in."""
        return not self._tokens

    @property
    def names(self) -> list[str]:
        return list(self._keys)

    # -- sessions --------------------------------------------------------------------------

    def login(self, presented: str, now: float | None = None) -> tuple[Session, str] | None:
        """The session and its cookie value for a valid token; None for anything else."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        matched = None
        for token in self._tokens:  # every one compared, in constant time
            if hmac.compare_digest(token.digest, digest):
                matched = token.name
        if matched is None:
            return None
        return self.issue(matched, now)

    def issue(self, operator: str, now: float | None = None) -> tuple[Session, str]:
        """A new session of ``operator`` (a token's name, or the open console's)."""
        expires = int((time.time() if now is None else now) + self.ttl)
        session = Session(operator, expires, secrets.token_hex(16))
        said = f"{operator}:{expires}:{session.nonce}"
        return session, f"{said}:{_sign(self._keys[operator], said)}"

    def session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries; None when it is missing, forged, or expired, or
        its token is no longer configured."""
        if not cookie:
            return None
        parts = cookie.split(":")
        if len(parts) != 4:
            return None
        operator, expires, nonce, signature = parts
        key = self._keys.get(operator)
        if key is None or not expires.isdigit():
            return None
        if not hmac.compare_digest(_sign(key, f"{operator}:{expires}:{nonce}"), signature):
            return None
        if int(expires) <= (time.time() if now is None else now):
            return None
        return Session(operator, int(expires), nonce)

    # -- CSRF ------------------------------------------------------------------------------

    def csrf(self, session: Session) -> str:
        """The CSRF token of a session's forms."""
        return _sign(self._keys[session.operator], f"csrf:{session.nonce}")

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf(session), presented)

    @staticmethod
    def login_nonce() -> str:
        """The login form's CSRF token, also set as the pre-login cookie (double submit:
        any replica checks it)."""
        return secrets.token_hex(16)

    @staticmethod
    def login_csrf_ok(cookie: str | None, presented: str | None) -> bool:
        if not cookie or not presented or len(cookie) < 32:
            return False
        return hmac.compare_digest(cookie.encode(), presented.encode())
