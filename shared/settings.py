"""The one typed settings object.

Parsed once at the edge and passed into every role. Each setting comes from, first to last:
its command-line flag ``--<name>``, its environment variable ``CALLBACK_FANOUT_<NAME>``, the
``[settings]`` table of the configuration file (``--config``), its default. Nothing deeper in
the code reads the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.config import JsonDict
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.configfile import ConfigFile, key_of, secret_fields
from shared.errors import ConfigError

__all__ = [
    "DEFAULT_AMQP_URL",
    "ENV_PREFIX",
    "RUN_ROLES",
    "AutoBool",
    "Settings",
    "mask_url",
    "read_by",
    "settings_of",
]

ENV_PREFIX = "CALLBACK_FANOUT_"
DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"
#: A switch that may also be left to the situation (``auto``).
AutoBool = bool | Literal["auto"]

#: The roles `run` holds in one process: it reads every setting they read.
RUN_ROLES = ("ingress", "router", "worker")


def _read_by(*commands: str) -> JsonDict:
    """The commands that read a setting (``json_schema_extra`` of its field)."""
    return {"commands": list(commands)}


# Who reads a setting, beside each field: a command's --help offers the settings it reads.
_INGRESS = _read_by("ingress")
_ROLES = _read_by(*RUN_ROLES)
# the consumers the workers load
_CONSUMERS = _read_by("worker", "declare", "status", "parked", "trace", "consumers", "console")
_BROKER = _read_by(*RUN_ROLES, "declare", "status", "parked", "trace", "consumers", "console")
_EVERY = _read_by(
    *RUN_ROLES,
    "declare",
    "status",
    "parked",
    "schema",
    "trace",
    "replay",
    "consumers",
    "console",
)

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _split_csv(value: object) -> object:
    """Let list settings come from one environment variable, comma separated."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):  # a repeated flag may itself carry a comma-separated list
        parts = [p for i in value for p in (i.split(",") if isinstance(i, str) else [i])]
        stripped = (p.strip() if isinstance(p, str) else p for p in parts)
        return [p for p in stripped if p != ""]
    return value


class Settings(BaseSettings):
    """Every setting of callback-fanout. The README's settings table lists each one."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # The configuration file
    config: Path | None = Field(
        None,
        description="Configuration file (TOML): consumers built from the built-ins "
        "(`[consumers.<name>]`) and settings (`[settings]`; flags and environment variables "
        "override it).",
        json_schema_extra=_EVERY,
    )
    # Broker and naming
    amqp_url: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=lambda: [SecretStr(DEFAULT_AMQP_URL)],
        description="RabbitMQ URL; several for a cluster (repeatable flag; comma separated in "
        "the environment): each process starts on one of them in random order and moves to "
        "the next when its node is lost (passwords are masked wherever they are shown).",
        json_schema_extra=_EVERY,
    )
    quorum_initial_group_size: int = Field(
        3,
        ge=1,
        description="Members (RabbitMQ nodes) a quorum queue gets when it is first declared; "
        "RabbitMQ caps it at the cluster's size, and it does not change existing queues.",
        json_schema_extra=_BROKER,
    )
    heartbeat: int = Field(
        10,
        ge=0,
        description="AMQP heartbeat timeout in seconds: a broker that stops answering without "
        "closing the connection (a frozen proxy, a partition) is given up within two of them "
        "and the next URL tried (0: no heartbeats, such a broker is never noticed).",
        json_schema_extra=_ROLES,
    )
    prefix: str = Field(
        "callbacks",
        description="Name prefix of every exchange and queue, so deployments share a broker.",
        json_schema_extra=_EVERY,
    )
    # Ingress
    host: str = Field(
        "0.0.0.0", description="Address the ingress listens on.", json_schema_extra=_ROLES
    )
    port: int = Field(
        8080, ge=0, le=65535, description="Port the ingress listens on.", json_schema_extra=_INGRESS
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        gt=0,
        description="Largest callback body accepted (413 above).",
        json_schema_extra=_read_by("ingress", "router"),
    )
    confirm_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds to wait for the broker's confirm before answering 503.",
        json_schema_extra=_INGRESS,
    )
    retry_after: int = Field(
        5, ge=1, description="Retry-After seconds sent with a 503.", json_schema_extra=_INGRESS
    )
    # Ingress spool
    spool_dir: Path | None = Field(
        None,
        description="Directory of the ingress's local spool: while the broker is away, bodies "
        "are fsynced there, answered 200 and forwarded in order once it is back (empty: no "
        "spool, 503 while the broker is away).",
        json_schema_extra=_INGRESS,
    )
    spool_max_bytes: int = Field(
        1024**3,
        gt=0,
        description="Most bytes the spool directory holds (503 when full).",
        json_schema_extra=_INGRESS,
    )
    # Ingress security
    tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Secret callback tokens as NAME=SECRET: POST /callbacks/SECRET or "
        "/callbacks?token=SECRET (repeatable flag; comma separated in the environment; "
        "none and no token file: the endpoint is open).",
        json_schema_extra=_INGRESS,
    )
    token_file: Path | None = Field(
        None,
        description="File of NAME=SECRET lines (a Docker secret), read at start; "
        "its tokens add to `tokens`.",
        json_schema_extra=_INGRESS,
    )
    allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Client networks (CIDRs) allowed to post; others get 403 (empty: any).",
        json_schema_extra=_INGRESS,
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxies (CIDRs) whose forwarded-for header names the real client.",
        json_schema_extra=_INGRESS,
    )
    forwarded_header: str = Field(
        "X-Forwarded-For",
        description="Header a trusted proxy puts the client address in.",
        json_schema_extra=_INGRESS,
    )
    rate_limit: float = Field(
        0.0,
        ge=0,
        description="Requests per second allowed per client address (0: no limit).",
        json_schema_extra=_INGRESS,
    )
    rate_burst: int = Field(
        20, ge=1, description="Requests a client may send at once.", json_schema_extra=_INGRESS
    )
    rate_limit_clients: int = Field(
        100_000,
        ge=1,
        description="Client addresses the rate limiter remembers at most.",
        json_schema_extra=_INGRESS,
    )
    header_timeout: float = Field(
        75.0,
        gt=0,
        description="Seconds a connection may take to send a complete request head, and "
        "how long an idle keep-alive connection stays open (keep it above the idle timeout "
        "of a proxy in front: 60 s for nginx and most load balancers).",
        json_schema_extra=_INGRESS,
    )
    body_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a request may take to send its whole body (408 after).",
        json_schema_extra=_INGRESS,
    )
    max_header_bytes: int = Field(
        8190,
        ge=256,
        description="Longest request line or header field accepted.",
        json_schema_extra=_INGRESS,
    )
    max_headers: int = Field(
        64, ge=8, description="Most header fields a request may carry.", json_schema_extra=_INGRESS
    )
    health_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Admin port of every role (in `run`, of the process): /healthz, /readyz "
        "and /metrics, never on the callback port (on --host; unset: none).",
        json_schema_extra=_ROLES,
    )
    metrics: bool = Field(
        True,
        description="Count Prometheus metrics and serve them at /metrics on the admin port "
        "(false: nothing counted, no /metrics; for measuring their cost).",
        json_schema_extra=_ROLES,
    )
    # Router
    router_prefetch: int = Field(
        64,
        ge=1,
        description="Raw messages a router holds unacked (a batch message carries up to 256 "
        "bodies).",
        json_schema_extra=_read_by("router"),
    )
    event_format: Literal["framed", "json"] = Field(
        "framed",
        description="How the router publishes events: `framed` (events that share a routing "
        "key and wait at the same moment travel as one message, the raw body beside each "
        "event's JSON) or `json` (one event per message, its JSON with the raw body inside "
        "in base64, the format before 0.2.0). Workers read both.",
        json_schema_extra=_read_by("router", "schema"),
    )
    event_batch_max: int = Field(
        100,
        ge=1,
        le=10_000,
        description="Most events in one framed event message.",
        json_schema_extra=_read_by("router"),
    )
    # Consumer workers
    consumers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Consumers to load: `pkg.module`, `pkg.module:attr` or a built-in name "
        "(repeatable flag; comma separated in the environment).",
        json_schema_extra=_CONSUMERS,
    )
    entry_points: bool = Field(
        True,
        description="Also load consumers from the `callback_fanout.consumers` group.",
        json_schema_extra=_CONSUMERS,
    )
    concurrency: int = Field(
        8,
        ge=1,
        description="Default handlers run at once per consumer.",
        json_schema_extra=_read_by("worker"),
    )
    retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0],
        description="Default backoff delays in seconds between attempts (comma separated).",
        json_schema_extra=_read_by("worker", "declare", "status"),
    )
    max_attempts: int = Field(
        5,
        ge=1,
        description="Default attempts per event before it goes to the dead queue.",
        json_schema_extra=_read_by("worker", "status"),
    )
    handler_timeout: float = Field(
        60.0,
        gt=0,
        description="Default seconds a handler may run before it is cut off.",
        json_schema_extra=_read_by("worker"),
    )
    shutdown_grace: float = Field(
        30.0,
        ge=0,
        description="Seconds in-flight handlers get to finish on SIGTERM.",
        json_schema_extra=_ROLES,
    )
    # Duplicates
    redis_url: SecretStr | None = Field(
        None,
        description="Redis URL of the dedupe store and the consumers' rate budgets, shared by "
        "all workers (unset: in-process, each worker its own).",
        json_schema_extra=_read_by("worker"),
    )
    dedupe_window: float = Field(
        86400.0,
        gt=0,
        description="Default seconds a handled idempotency key is remembered.",
        json_schema_extra=_read_by("worker"),
    )
    # Delivery history
    history_dsn: SecretStr | None = Field(
        None,
        description="PostgreSQL DSN of the delivery history (`postgresql://user:password@host/"
        "db`): every outcome a worker decides is written there in batches, beside the work, "
        "and `trace` reads it (unset: no history; in the configuration file `[history]` "
        "`dsn`, a secret).",
        json_schema_extra=_read_by("worker", "trace", "console"),
    )
    history_retention: float = Field(
        7 * 86400.0,
        gt=0,
        description="How long the delivery history keeps an outcome: seconds, or a number "
        "with a unit (`90m`, `36h`, `7d`); older rows are removed every few minutes "
        "(in the configuration file `[history]` `retention`).",
        json_schema_extra=_read_by("worker"),
    )
    tracing_ui_url: str | None = Field(
        None,
        description="The tracing UI's page of a trace, with `{trace_id}` where its id goes "
        "(`https://jaeger.example/trace/{trace_id}`): `trace` links each trace it shows "
        "(unset: no link). Traces themselves are configured by the `OTEL_*` variables "
        "(see tracing).",
        json_schema_extra=_read_by("trace", "console"),
    )
    # Operator console
    console_host: str = Field(
        "127.0.0.1",
        description="Address the console listens on; anything but loopback needs a console token.",
        json_schema_extra=_read_by("console"),
    )
    console_port: int = Field(
        8088,
        ge=0,
        le=65535,
        description="Port of the console.",
        json_schema_extra=_read_by("console"),
    )
    console_token: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Console login tokens as NAME=SECRET, SECRET of 16 characters or more "
        "(repeatable flag; comma separated in the environment; several for rotation). The "
        "name is logged with every action taken (none: the console is open, on loopback only).",
        json_schema_extra=_read_by("console"),
    )
    console_token_file: Path | None = Field(
        None,
        description="File of NAME=SECRET lines (a Docker secret), read at start; its tokens "
        "add to `console_token`.",
        json_schema_extra=_read_by("console"),
    )
    console_session: float = Field(
        12 * 3600.0,
        gt=0,
        description="How long a console login lasts: seconds, or a number with a unit "
        "(`90m`, `12h`, `1d`).",
        json_schema_extra=_read_by("console"),
    )
    console_role_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Admin ports of the roles (http://host:port, repeatable; comma separated in "
        "the environment) whose readiness and /metrics the console shows (rates, handler p99, "
        "lag).",
        json_schema_extra=_read_by("console"),
    )
    # Operations
    management_url: SecretStr = Field(
        SecretStr("auto"),
        description="RabbitMQ management API that `status` reads unacknowledged counts, rates "
        "and every consumer queue from: a URL (http://user:password@host:15672/), `auto` (the "
        "broker's host on port 15672 with the broker's credentials, used when it answers) or "
        "`off` (AMQP only).",
        json_schema_extra=_read_by("status", "console"),
    )
    log_level: str = Field(
        "info", description="Log level: debug, info, warning, error.", json_schema_extra=_EVERY
    )
    log_json: AutoBool = Field(
        "auto",
        description="JSON log lines: true, false (readable lines), or auto (JSON when stderr "
        "is not a terminal, readable coloured lines when it is).",
        json_schema_extra=_EVERY,
    )
    log_bodies: bool = Field(
        False, description="Log callback bodies (debug only).", json_schema_extra=_INGRESS
    )

    @field_validator(
        "amqp_url",
        "consumers",
        "retry_delays",
        "tokens",
        "console_token",
        "console_role_urls",
        "allowed_networks",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _lists_from_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("history_retention", "console_session", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return _seconds_of(value) if isinstance(value, str) else value

    @field_validator("spool_dir", mode="before")
    @classmethod
    def _empty_spool_dir_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not _PREFIX_RE.fullmatch(value):
            raise ValueError(
                "prefix must be 1-64 characters of letters, digits, '_', '-', '.', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("amqp_url")
    @classmethod
    def _broker_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        if not value:
            raise ValueError("at least one broker URL is needed")
        for url in value:
            problem = _url_problem(url.get_secret_value())
            if problem:
                raise ValueError(f"{mask_url(url.get_secret_value())}: {problem}")
        return value

    @field_validator("retry_delays")
    @classmethod
    def _positive_delays(cls, value: list[float]) -> list[float]:
        if any(d <= 0 for d in value):
            raise ValueError("retry delays must be positive seconds")
        return value

    @field_validator("management_url")
    @classmethod
    def _management_url(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if text.lower() in ("auto", "off"):
            return SecretStr(text.lower())
        if not re.match(r"^https?://[^/\s]+", text):
            raise ValueError("management_url must be auto, off or an http(s):// URL")
        return SecretStr(text)

    @field_validator("log_json", mode="before")
    @classmethod
    def _auto_or_bool(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        word = value.strip().lower()
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off"):
            return False
        if word == "auto":
            return "auto"
        raise ValueError("log_json must be auto, true or false")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level must be one of debug, info, warning, error")
        return level

    @property
    def broker_urls(self) -> list[str]:
        """Every broker URL with its password, for the client library only."""
        return [url.get_secret_value() for url in self.amqp_url]

    @property
    def broker_url(self) -> str:
        """The first broker URL (for tools that talk to one node)."""
        return self.broker_urls[0]

    @property
    def masked_broker_url(self) -> str:
        """Every broker URL safe to show (passwords replaced by ``***``), comma separated."""
        return ",".join(mask_url(url) for url in self.broker_urls)

    @classmethod
    def load(cls, *, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Flags (``overrides``) over the environment over the configuration file's
        ``[settings]`` over the defaults; one clear line if anything is invalid.

        ``environ`` is where ``{ env = "NAME" }`` secret references in the file are looked up
        (the process environment unless given).
        """
        first = cls._validated(overrides)
        if first.config is None:
            return first
        config = ConfigFile.read(first.config)
        environ = os.environ if environ is None else environ
        from_file: dict[str, Any] = {}
        for name, key, value in config.setting_values():
            if name not in cls.model_fields:
                raise config.error(key, "unknown setting")
            if name == "config":
                raise config.error(key, "the configuration file cannot name another one")
            if name not in first.model_fields_set:  # a flag or a variable says otherwise
                secret = name in secret_fields(cls)
                resolve = config.resolve_secret if secret else config.resolve
                from_file[name] = resolve(value, key, environ)
        if not from_file:
            return first
        return cls._validated({**from_file, **overrides}, config, set(from_file))

    @classmethod
    def _validated(
        cls,
        values: Mapping[str, object],
        config: ConfigFile | None = None,
        from_file: set[str] | None = None,
    ) -> Settings:
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            for err in errors:
                if config is not None and from_file and err["loc"] and err["loc"][0] in from_file:
                    raise config.error(key_of("settings", err["loc"]), _message(err)) from None
            problems = "; ".join(
                f"{key_of('', err['loc']) or 'settings'}: {_message(err)}" for err in errors
            )
            raise ConfigError(f"invalid settings: {problems}") from None


def read_by(name: str) -> tuple[str, ...]:
    """The commands that read the setting ``name`` (``run`` aside: it reads its roles')."""
    extra = Settings.model_fields[name].json_schema_extra
    assert isinstance(extra, dict), f"setting {name} does not say which commands read it"
    commands = extra["commands"]
    assert isinstance(commands, list)
    return tuple(str(command) for command in commands)


def settings_of(command: str) -> list[str]:
    """The settings ``command`` reads, in the order of their fields; ``run``: its roles'."""
    readers = set(RUN_ROLES) if command == "run" else {command}
    return [name for name in Settings.model_fields if readers.intersection(read_by(name))]


def _message(err: Any) -> str:
    """pydantic's message without its ``Value error,`` preamble."""
    return str(err["msg"]).removeprefix("Value error, ")


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _seconds_of(text: str) -> object:
    """``"36h"`` as seconds; text that is not a duration is left for pydantic to refuse."""
    match = _DURATION_RE.fullmatch(text.lower())
    if match is None:
        return text
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _url_problem(url: str) -> str | None:
    """Why ``url`` is not a broker URL, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        return "a broker URL starts with amqp:// or amqps://"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "the port is not a number from 0 to 65535"
    if not parts.hostname:
        return "a broker URL names a host"
    return None


def mask_url(url: str) -> str:
    """Replace the password of a ``scheme://user:password@host`` URL with ``***``."""
    return re.sub(r"(?<=://)([^:/@]*):[^@/]*@", r"\1:***@", url)
