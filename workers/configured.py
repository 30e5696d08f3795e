"""Consumers declared in the configuration file, built from the built-ins.

``[consumers.<name>]``: the table's name is the consumer's name; ``use`` names the built-in;
the policy keys (``routes``, ``concurrency``, ``max_attempts``, ``retry_delays``, ``timeout``,
``dedupe``, ``dedupe_window``, ``breaker``, ``rate_limit``, ``filter``) become its
:class:`~workers.consumer.ConsumerSpec`; every other key goes, secret references resolved, to
the built-in's ``Options`` model. ``breaker = { failures = 20, cool_down = 30 }`` (or
``false`` to turn off a built-in's default breaker, as ``forward``'s).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import AfterValidator, ConfigDict, Field, PositiveFloat, PositiveInt, StrictBool

from shared.configfile import ConfigFile, key_of, secret_fields
from shared.errors import ConfigError, ConsumerDeclarationError
from shared.logs import get_logger
from shared.topology import valid_route
from workers.builtin.registry import BUILTINS
from workers.consumer import Breaker, ConsumerSpec, LoadedConsumer, filter_of

__all__ = ["POLICY_KEYS", "Configured", "build_configured", "configured_consumers"]

log = get_logger("config")
_M = TypeVar("_M", bound=pydantic.BaseModel)


def _route(pattern: str) -> str:
    if not valid_route(pattern):
        raise ValueError(
            f"{pattern!r} is not an AMQP topic pattern "
            "(dot-separated words of letters, digits, '_' or '-', or '*' and '#')"
        )
    return pattern


class _Breaker(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    failures: PositiveInt = 20
    cool_down: PositiveFloat = 30.0


class _Policy(pydantic.BaseModel):
    """The keys of a consumer table that the runtime, not the built-in, reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    use: str
    routes: list[Annotated[str, AfterValidator(_route)]] = Field(min_length=1)
    concurrency: PositiveInt | None = None
    max_attempts: PositiveInt | None = None
    retry_delays: list[PositiveFloat] | None = Field(None, min_length=1)
    timeout: PositiveFloat | None = None
    dedupe: StrictBool = False
    dedupe_window: PositiveFloat | None = None
    breaker: _Breaker | Literal[False] | None = None
    rate_limit: PositiveFloat | None = None
    filter: dict[str, Any] | None = None


POLICY_KEYS = frozenset(_Policy.model_fields)


@dataclass(frozen=True)
class Configured:
    """A consumer of the file, built, with the built-in and the options it was built from."""

    consumer: LoadedConsumer
    use: str
    options: pydantic.BaseModel

    def announce(self) -> None:
        """Log what was configured; secrets are ``SecretStr`` in the options, shown masked."""
        log.info(
            "consumer configured",
            consumer=self.consumer.spec.name,
            use=self.use,
            routes=list(self.consumer.spec.routes),
            options=self.options.model_dump(mode="json"),
        )


def build_configured(config: ConfigFile, environ: Mapping[str, str]) -> list[Configured]:
    """Every ``[consumers.<name>]`` of ``config``, built and ready to run.

    Raises a one-line :class:`~shared.errors.ConfigError` naming the key at the first problem:
    an unknown built-in or key, a bad route or policy value, a secret that cannot be read.
    ``environ`` is where ``{ env = "NAME" }`` references are looked up.
    """
    return [_build(config, name, table, environ) for name, table in config.consumers.items()]


def configured_consumers(config: ConfigFile, environ: Mapping[str, str]) -> list[LoadedConsumer]:
    """The consumers of :func:`build_configured`."""
    return [configured.consumer for configured in build_configured(config, environ)]


def _build(
    config: ConfigFile, name: str, table: Mapping[str, Any], environ: Mapping[str, str]
) -> Configured:
    where = f"consumers.{name}"
    policy_part = {k: v for k, v in table.items() if k in POLICY_KEYS}
    options_part = {k: v for k, v in table.items() if k not in POLICY_KEYS}
    policy = _validate(config, where, _Policy, policy_part)
    builtin = BUILTINS.get(policy.use)
    if builtin is None:
        known = ", ".join(sorted(BUILTINS))
        raise config.error(f"{where}.use", f"unknown built-in {policy.use!r} (known: {known})")
    try:
        spec = ConsumerSpec(
            name=name,
            routes=tuple(policy.routes),
            concurrency=policy.concurrency,
            max_attempts=policy.max_attempts,
            retry_delays=tuple(policy.retry_delays) if policy.retry_delays else None,
            timeout=policy.timeout,
            dedupe=policy.dedupe,
            dedupe_window=policy.dedupe_window,
            breaker=_breaker(policy.breaker, builtin.breaker),
            rate_limit=policy.rate_limit,
            filter=filter_of(name, policy.filter) if policy.filter is not None else None,
        )
    except ConsumerDeclarationError as exc:
        raise config.error(where, str(exc).removeprefix(f"consumer {name!r}: ")) from None
    secrets = secret_fields(builtin.options)
    resolved = {
        k: (config.resolve_secret if k in secrets else config.resolve)(v, f"{where}.{k}", environ)
        for k, v in options_part.items()
    }
    options = _validate(config, where, builtin.options, resolved)
    try:
        consumer = builtin.build(spec, options)
    except (ConfigError, ValueError) as exc:  # a check across options, made by the built-in
        raise config.error(where, str(exc)) from None
    origin = f"config {config.path}: {where}"
    return Configured(replace(consumer, origin=origin, target=None), builtin.name, options)


def _breaker(table: _Breaker | Literal[False] | None, default: Breaker | None) -> Breaker | None:
    """The table's breaker; none given: the built-in's default; ``false``: none."""
    if table is None:
        return default
    if table is False:
        return None
    return Breaker(table.failures, table.cool_down)


def _validate(config: ConfigFile, where: str, model: type[_M], values: Mapping[str, Any]) -> _M:
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required"
        raise config.error(key_of(where, err["loc"]), message) from None
