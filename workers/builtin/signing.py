"""Standard Webhooks signatures (https://www.standardwebhooks.com).

A signature is ``v1,<base64 HMAC-SHA256>`` of ``"{webhook-id}.{webhook-timestamp}.{body}"``
with the secret's key (the base64 text after ``whsec_``). During a rotation several secrets
are configured: the header carries one signature per secret, separated by spaces, and the
receiver accepts the message when any of them matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = ["SECRET_PREFIX", "Signer", "secret_key"]

SECRET_PREFIX = "whsec_"
_MIN_KEY_BYTES = 24  # the spec asks for 24 to 64 bytes of key


def secret_key(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret; ValueError (without the secret) if malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a webhook secret must be {SECRET_PREFIX!r} and base64 text") from None
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"a webhook secret's key must be at least {_MIN_KEY_BYTES} bytes")
    return key


class Signer:
    """Signs message bodies with every configured key."""

    __slots__ = ("_keys",)

    def __init__(self, keys: list[bytes]) -> None:
        self._keys = tuple(keys)

    def __repr__(self) -> str:
        return f"Signer({len(self._keys)} keys)"

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The three ``webhook-*`` headers for ``body`` sent at ``timestamp`` (epoch seconds)."""
        signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
        signatures = " ".join(
            "v1," + base64.b64encode(hmac.digest(key, signed, hashlib.sha256)).decode()
            for key in self._keys
        )
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
        }
