"""Named secret tokens: who may post a callback, and under which name it travels.

The sender signs nothing, so the callback URL itself carries a secret:
``POST /callbacks/<secret>`` or ``POST /callbacks?token=<secret>``. Several tokens may be
valid at once, each with a name (rotation: add the new one, move the sender, remove the old
one); the name of the matching token travels with the message. Secrets are compared in
constant time and never kept in a form that prints.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from pydantic import SecretStr

from shared.errors import ConfigError
from shared.settings import Settings

__all__ = [
    "MIN_SECRET_LENGTH",
    "NamedToken",
    "TokenRegistry",
    "parse_token",
    "presented_token",
    "read_token_file",
]

#: Shortest secret accepted: a guessable URL is no protection.
MIN_SECRET_LENGTH = 16
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# RFC 3986 unreserved characters: the secret goes into a URL path as it is.
_SECRET_RE = re.compile(r"[A-Za-z0-9._~-]+")
_FORM = (
    f"expected NAME=SECRET, NAME of letters, digits, '_', '.', '-' (up to 64), SECRET of "
    f"at least {MIN_SECRET_LENGTH} letters, digits, '_', '.', '-', '~'"
)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class NamedToken:
    """One valid token. Only its name prints; the secret is a :class:`SecretStr`."""

    name: str
    secret: SecretStr
    digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", _digest(self.secret.get_secret_value()))


def parse_token(spec: str, where: str, *, default_name: str | None = None) -> NamedToken:
    """``NAME=SECRET`` (or a bare secret when ``default_name`` is given) as a token.

    Errors say ``where`` the token came from and never quote it.
    """
    name, sep, secret = spec.strip().partition("=")
    if not sep:
        name, secret = default_name or "", spec.strip()
        if default_name is None:
            raise ConfigError(f"{where}: {_FORM}")
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: invalid token name; {_FORM}")
    if len(secret) < MIN_SECRET_LENGTH or not _SECRET_RE.fullmatch(secret):
        raise ConfigError(f"{where} (name {name!r}): invalid secret; {_FORM}")
    return NamedToken(name, SecretStr(secret))


def read_token_file(path: Path) -> list[NamedToken]:
    """The tokens of a file: ``NAME=SECRET`` per line (or several on a line, comma
    separated, as an environment variable holds them); blank lines and ``#`` comments skipped.

    A bare secret is named after the file (a Docker secret holding one token:
    ``/run/secrets/ci_token`` gives the name ``ci_token``).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read token file {path}: {reason}") from None
    tokens = [
        parse_token(spec, f"token file {path}, line {number}", default_name=path.stem)
        for number, line in enumerate(text.splitlines(), 1)
        if not line.lstrip().startswith("#")
        for spec in line.split(",")
        if spec.strip()
    ]
    if not tokens:
        raise ConfigError(f"token file {path} holds no token")
    return tokens


class TokenRegistry:
    """The valid tokens; empty means the endpoint is open."""

    def __init__(self, tokens: Iterable[NamedToken] = ()) -> None:
        self._tokens: tuple[NamedToken, ...] = tuple(tokens)
        names = [t.name for t in self._tokens]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"token names must be unique: {', '.join(twice)} given twice")
        if len({t.digest for t in self._tokens}) != len(self._tokens):
            raise ConfigError("two tokens share the same secret; give each its own")

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenRegistry:
        """``settings.tokens`` plus the tokens of ``settings.token_file``."""
        tokens = [
            parse_token(spec.get_secret_value(), f"token #{index}")
            for index, spec in enumerate(settings.tokens, 1)
        ]
        if settings.token_file is not None:
            tokens += read_token_file(settings.token_file)
        return cls(tokens)

    @property
    def open(self) -> bool:
        """True when no token is configured: anyone may post."""
        return not self._tokens

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self._tokens)

    def secrets(self) -> Sequence[str]:
        """The secret values, for the log redactor only."""
        return [t.secret.get_secret_value() for t in self._tokens]

    def match(self, presented: str | None) -> str | None:
        """The name of the token ``presented`` is, or None.

        Every token is compared, in constant time, on SHA-256 digests (equal lengths), so
        neither the position of a match nor a common prefix shows in the timing.
        """
        if presented is None:
            return None
        digest = _digest(presented)
        found: str | None = None
        for token in self._tokens:
            if hmac.compare_digest(token.digest, digest):
                found = token.name
        return found

    def __repr__(self) -> str:
        return f"TokenRegistry(names={list(self.names)!r})"


def presented_token(request: web.Request) -> str | None:
    """The token a request presents: its ``{token}`` path part, else its ``token`` query."""
    in_path = request.match_info.get("token")
    if in_path:
        return in_path
    return (request.query.get("token") or None) if request.query_string else None
