"""All settings in one Struct, read from the environment (and an optional .env) at start-up."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from domain.events import Priority, SlaTargets
from domain.sla import DEFAULT_SLA_TARGETS, parse_targets

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    redis_url: str | None = None
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    consistency_wait_ms: int = 500
    timezone: str = "UTC"
    sla_targets: str = DEFAULT_SLA_TARGETS
    sla_sweep_seconds: float = 30.0
    rate_limit_per_minute: int = 600
    attachment_max_bytes: int = 10 * 1024 * 1024
    body_max_bytes: int = 1024 * 1024
    pool_min_size: int = 2
    pool_max_size: int = 10
    data_dir: str = ".ticketing"
    log_level: str = "INFO"

    @property
    def sla_policy(self) -> dict[Priority, SlaTargets]:
        return parse_targets(self.sla_targets)

    def validate(self) -> Settings:
        try:
            self.sla_policy  # noqa: B018 - parse to fail fast
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"TICKETING_TIMEZONE={self.timezone!r} is not a known IANA time zone"
            ) from None
        if self.sla_sweep_seconds <= 0:
            raise SettingsError("TICKETING_SLA_SWEEP_SECONDS must be positive")
        if self.rate_limit_per_minute < 0:
            raise SettingsError("TICKETING_RATE_LIMIT_PER_MINUTE must be 0 (off) or positive")
        if self.consistency_wait_ms < 0:
            raise SettingsError("TICKETING_CONSISTENCY_WAIT_MS must not be negative")
        if self.jwt_public_key:
            _check_public_key(self.jwt_public_key)
        self._check_process_settings()
        return self

    def _check_process_settings(self) -> None:
        if not 1 <= self.port <= 65535:
            raise SettingsError(f"TICKETING_PORT={self.port} is not a port (1-65535)")
        if self.workers < 1:
            raise SettingsError("TICKETING_WORKERS must be at least 1")
        for name in ("attachment_max_bytes", "body_max_bytes"):
            if getattr(self, name) < 1:
                raise SettingsError(f"TICKETING_{name.upper()} must be positive")
        if self.pool_min_size < 1 or self.pool_max_size < self.pool_min_size:
            raise SettingsError(
                f"TICKETING_POOL_MIN_SIZE ({self.pool_min_size}) and TICKETING_POOL_MAX_SIZE "
                f"({self.pool_max_size}) must satisfy 1 <= min <= max"
            )
        if self.log_level.upper() not in LOG_LEVELS:
            raise SettingsError(
                f"TICKETING_LOG_LEVEL={self.log_level!r}: use one of {', '.join(LOG_LEVELS)}"
            )


def _check_public_key(pem: str) -> None:
    """A key that cannot verify anything would turn every RS256/ES256 token into a 500:
    refuse it at start-up instead."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise SettingsError(
            f"TICKETING_JWT_PUBLIC_KEY is not a PEM public key (-----BEGIN PUBLIC KEY-----): {exc}"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise SettingsError("TICKETING_JWT_PUBLIC_KEY must be an RSA or EC key (RS256/ES256)")


_FIELDS: dict[str, type] = {
    "database_url": str,
    "redis_url": str,
    "jwt_secret": str,
    "jwt_public_key": str,
    "host": str,
    "port": int,
    "workers": int,
    "consistency_wait_ms": int,
    "timezone": str,
    "sla_targets": str,
    "sla_sweep_seconds": float,
    "rate_limit_per_minute": int,
    "attachment_max_bytes": int,
    "body_max_bytes": int,
    "pool_min_size": int,
    "pool_max_size": int,
    "data_dir": str,
    "log_level": str,
}


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def load_settings(env: dict[str, str] | None = None, *, dotenv: Path | None = None) -> Settings:
    """Build Settings from TICKETING_* variables; the environment wins over .env."""
    source: dict[str, str] = {}
    if env is None:
        source.update(_read_dotenv(dotenv or Path(".env")))
        source.update(os.environ)
    else:
        source.update(env)
    kwargs: dict[str, object] = {}
    for name, kind in _FIELDS.items():
        raw = source.get(f"TICKETING_{name.upper()}")
        if raw is None or raw == "":
            continue
        try:
            kwargs[name] = kind(raw)
        except ValueError:
            raise SettingsError(
                f"TICKETING_{name.upper()}={raw!r} is not a valid {kind.__name__}"
            ) from None
    return Settings(**kwargs).validate()  # type: ignore[arg-type]
