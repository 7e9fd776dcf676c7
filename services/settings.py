"""One settings object per service process, read from the environment."""

from __future__ import annotations

import ipaddress
import sys
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORTS = {"a": 8001, "b": 8002}
DEFAULT_PARTNER = {"a": "http://127.0.0.1:8000/b/", "b": "http://127.0.0.1:8000/a/"}


class Settings(BaseSettings):
    """Environment variables (case-insensitive): SERVICE_NAME, PORT, HOST, PARTNER_URL,
    FAIL_RATE, SEED, MAX_HOPS, PARTNER_TIMEOUT, MAX_BODY_BYTES; the developer view (docs/dev-guide.md):
    LOG_LEVEL, LOG_FORMAT, LOG_PAYLOAD, SEQUENCE, HISTORY_PATH, HISTORY_MAX. Tracing export is
    OpenTelemetry's own OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    service_name: Literal["a", "b"] = "a"
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 means the service's default port")
    partner_url: str = ""
    fail_rate: float = Field(4 / 11, ge=0.0, le=1.0)
    seed: int | None = None
    max_hops: int = Field(100, ge=1, le=10_000)
    partner_timeout: float = Field(30.0, gt=0.0, le=3600.0)
    max_body_bytes: int = Field(1_000_000, ge=1_000)
    # developer view: logs, the payload's `sequence`, the run history
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"  # auto: console on a terminal, else JSON
    log_payload: Literal["full", "size"] = "full"
    sequence: bool = True
    history_path: str = ":memory:"
    history_max: int = Field(10_000, ge=1, le=10_000_000)

    @field_validator("log_level", "log_format", "log_payload", mode="before")
    @classmethod
    def _any_case(cls, v, info):
        if not isinstance(v, str):
            return v
        return v.upper() if info.field_name == "log_level" else v.lower()

    @model_validator(mode="after")
    def _defaults_and_urls(self) -> Settings:
        if not self.port:
            object.__setattr__(self, "port", DEFAULT_PORTS[self.service_name])
        if not self.partner_url:
            object.__setattr__(self, "partner_url", DEFAULT_PARTNER[self.service_name])
        if not self.partner_url.startswith(("http://", "https://")):
            raise ValueError(f"PARTNER_URL must be an http(s) URL, got {self.partner_url!r}")
        return self


def public_host_warning(host: str) -> str | None:
    """A warning when HOST is not a loopback address: the service is then reachable from other
    machines (compose does this on purpose, inside its own network)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return f"HOST={host}: listening beyond this machine; anyone who can reach it can drive the service"


def load_settings(service_name: str | None = None, **overrides) -> Settings:
    """Read the environment; on a bad value, exit with one clear line per problem."""
    if service_name is not None:
        overrides["service_name"] = service_name
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [f"invalid service settings ({exc.error_count()} problem(s)):"]
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            lines.append(f"  {field}: {err['msg']} (got {err.get('input')!r})")
        sys.exit("\n".join(lines))
