"""The ``forward`` built-in: each event POSTed to an HTTP endpoint as a signed webhook.

The body is the event's JSON (``body = "event"``) or the callback's raw body exactly as it
was sent, with its original Content-Type (``body = "raw"``). Signatures follow the Standard
Webhooks spec; ``webhook-id`` is the event's idempotency key, so a redelivery carries the
same id and the receiver can drop it.

How the answer maps to the runtime's outcomes:

- 2xx: done (acked);
- 408, 425, 429, 5xx, a timeout or a connection error: ``Retry`` through the consumer's
  delays; a ``Retry-After`` picks the delay step;
- a redirect (not followed) or any other 4xx: ``GiveUp``, parked at once with the status
  and the first 500 bytes of the answer in the reason.
"""

from __future__ import annotations

import email.utils
import re
import ssl
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    HttpUrl,
    SecretStr,
    field_serializer,
    field_validator,
)

from shared import otel
from shared.callbacks import CallbackEvent
from shared.errors import GiveUp, Retry
from shared.logs import get_logger, mask_values
from shared.settings import mask_url
from workers.builtin.signing import Signer, secret_key
from workers.consumer import Consumer, ConsumerSpec, LoadedConsumer

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "REQUEST_ID_HEADER",
    "ROUTING_KEY_HEADER",
    "ForwardConsumer",
    "Options",
    "build",
]

log = get_logger("consumer.forward")

ROUTING_KEY_HEADER = "X-Routing-Key"
REQUEST_ID_HEADER = "X-Request-Id"
#: Extra headers whose values are credentials, masked in every log line.
_CREDENTIAL_HEADER = re.compile(r"auth|token|key|secret|cookie|password|signature", re.IGNORECASE)
RETRIED_STATUSES = frozenset({408, 425, 429})
REASON_BODY_BYTES = 500
_OWN_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        ROUTING_KEY_HEADER.lower(),
        REQUEST_ID_HEADER.lower(),
    }
)


Secrets = SecretStr | list[SecretStr] | None


class Options(BaseModel):
    """Options of ``use = "forward"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: HttpUrl = Field(description="Where to POST each event (http or https).")
    secret: Secrets = Field(
        None,
        description="Standard Webhooks secret, `whsec_<base64>` (`{ env = ... }` or "
        "`{ file = ... }`), or a list of them during a rotation (one signature each). Unset: "
        "no `webhook-signature` header.",
    )
    body: Literal["event", "raw"] = Field(
        "event", description="`event`: the event JSON; `raw`: the callback body as sent."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra static headers sent with every request."
    )
    request_timeout: float = Field(10.0, gt=0, description="Seconds per request, in all.")
    max_response_bytes: int = Field(
        65536, ge=REASON_BODY_BYTES, description="At most this much of an answer is read."
    )
    ca_file: FilePath | None = Field(
        None, description="PEM file of the CA(s) that sign the endpoint's certificate."
    )
    tls_verify: bool = Field(True, description="Verify the endpoint's TLS certificate.")

    @field_validator("secret")
    @classmethod
    def _whsec(
        cls, value: SecretStr | list[SecretStr] | None
    ) -> SecretStr | list[SecretStr] | None:
        secrets = value if isinstance(value, list) else [value] if value is not None else []
        if isinstance(value, list) and not value:
            raise ValueError("give at least one secret, or leave `secret` out")
        for secret in secrets:
            secret_key(secret.get_secret_value())
        return value

    @field_validator("headers")
    @classmethod
    def _not_ours(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(name for name in value if name.lower() in _OWN_HEADERS)
        if taken:
            raise ValueError(f"header(s) {', '.join(taken)} are set by forward itself")
        return value

    @field_serializer("url")
    def _url_shown(self, url: HttpUrl) -> str:
        return mask_url(str(url))  # a password in the URL is not shown

    @field_serializer("headers")
    def _headers_shown(self, headers: dict[str, str]) -> dict[str, str]:
        return dict.fromkeys(headers, "***")  # values may be credentials: names only

    @property
    def secrets(self) -> list[str]:
        value = self.secret
        secrets = value if isinstance(value, list) else [value] if value is not None else []
        return [s.get_secret_value() for s in secrets]


class ForwardConsumer(Consumer):
    """POSTs each event; one connection pool (aiohttp session) per consumer."""

    def __init__(self, spec: ConsumerSpec, options: Options) -> None:
        self.spec = spec
        self.options = options
        self.url = str(options.url)
        self.signer = Signer([secret_key(s) for s in options.secrets]) if options.secret else None
        self._session: aiohttp.ClientSession | None = None

    async def startup(self) -> None:
        options = self.options
        tls: ssl.SSLContext | bool = True
        if not options.tls_verify:
            tls = False
        elif options.ca_file is not None:
            tls = ssl.create_default_context(cafile=str(options.ca_file))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.spec.concurrency or 0, ssl=tls),
            timeout=aiohttp.ClientTimeout(total=options.request_timeout),
            headers=options.headers,
            auto_decompress=False,
        )
        log.info("forwarding", consumer=self.spec.name, url=mask_url(self.url), body=options.body)

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def handle(self, event: CallbackEvent) -> None:
        body, content_type = self._body(event)
        headers = {
            "Content-Type": content_type,
            ROUTING_KEY_HEADER: event.routing_key,
            REQUEST_ID_HEADER: event.envelope.request_id if event.envelope else "",
        }
        now = int(time.time())
        if self.signer is not None:
            headers |= self.signer.headers(event.idempotency_key, now, body)
        else:
            headers |= {"webhook-id": event.idempotency_key, "webhook-timestamp": str(now)}
        if otel.STATE.on:  # a client span, only when tracing is on
            from workers.builtin.otel import forward_span

            with forward_span(self.url, headers) as span:
                return await self._post(body, headers, span)
        return await self._post(body, headers)

    async def _post(self, body: bytes, headers: dict[str, str], span: Span | None = None) -> None:
        """POST ``body``; ``Retry`` or ``GiveUp`` with why unless the answer is a 2xx. The
        answer's status goes to ``span``, when traced."""
        assert self._session is not None, "startup() was not called"
        timeout = self.options.request_timeout
        try:
            async with self._session.post(
                self.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                if span is not None:
                    span.set_attribute("http.response.status_code", status)
                # read (up to the bound) even a 2xx: an answer left unread closes the connection
                answer = await _read_bounded(response, self.options.max_response_bytes)
                if 200 <= status < 300:
                    return
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            raise Retry(f"no answer within {timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Retry(f"connection error: {type(exc).__name__}: {exc}") from None
        excerpt = answer[:REASON_BODY_BYTES].decode("utf-8", "replace")
        reason = f"HTTP {status}: {excerpt}"
        if status in RETRIED_STATUSES or status >= 500:
            raise Retry(reason, delay=retry_after)
        if 300 <= status < 400:
            reason = f"HTTP {status} redirect not followed: {excerpt}"
        raise GiveUp(reason)

    def _body(self, event: CallbackEvent) -> tuple[bytes, str]:
        if self.options.body == "event":
            return event.model_dump_json().encode(), "application/json"
        envelope = event.envelope
        if envelope is None:
            raise GiveUp("body = raw, but the event has no envelope (no raw body)")
        return envelope.raw_body, envelope.content_type or "application/octet-stream"


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the answer; the rest is left unread."""
    out = bytearray()
    while len(out) < limit:
        chunk = await response.content.read(limit - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` asks for (delta-seconds or an HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return max(float(value), 0.001)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.001)


def build(spec: ConsumerSpec, options: Options) -> LoadedConsumer:
    """A ``forward`` consumer for ``spec``; its secrets are masked in every log line."""
    credentials = [v for k, v in options.headers.items() if _CREDENTIAL_HEADER.search(k)]
    mask_values(*options.secrets, *credentials)
    if (password := urlsplit(str(options.url)).password) is not None:
        mask_values(password)
    return LoadedConsumer.from_instance(
        spec, ForwardConsumer(spec, options), f"built-in forward as {spec.name!r}"
    )
