"""``CAMPERHUB_API_*`` settings of the API process (ARCHITECTURE.md §7).

One pydantic-settings object, validated at start-up without opening any
connection (the store's settings are :class:`camperhub.settings.StoreSettings`,
the broker's :class:`camperhub.settings.MqttClientSettings`, read from their own
``CAMPERHUB_*`` variables): a typo stops the process with a message that names
the variable.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Where the API listens and how it treats its public clients."""

    model_config = SettingsConfigDict(env_prefix="CAMPERHUB_API_", extra="ignore")

    host: str = Field(default="127.0.0.1", min_length=1, description="Address to listen on")
    port: int = Field(default=8000, ge=1, le=65535)
    rate_per_s: float = Field(
        default=5.0, gt=0, le=10_000, description="Public endpoints: sustained requests per second per client address"
    )
    rate_burst: int = Field(default=60, ge=1, le=100_000, description="Public endpoints: requests a client may make at once")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (JSON list); empty = CORS off (pages are same-origin)"
    )
    cache_max_age_s: int = Field(default=10, ge=0, le=86_400, description="Cache-Control max-age of public GETs")
    live: bool = Field(default=True, description="Subscribe to the broker (CAMPERHUB_MQTT_URL) for the live streams")
    mqtt_protocol: str = Field(
        default="auto", pattern=r"^(auto|5|3\.1\.1)$", description="MQTT version of the live listener: auto tries 5, then 3.1.1"
    )
    sse_queue: int = Field(default=64, ge=1, le=10_000, description="Messages one SSE client may lag behind before it is dropped")
    sse_replay: int = Field(default=2048, ge=0, le=1_000_000, description="Recent messages kept for Last-Event-ID replay")
    sse_ping_s: float = Field(default=15.0, ge=0, le=3600, description="Keep-alive comment interval of SSE streams (0 = none)")
    sse_send_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="A stalled SSE client is closed after this long")
    tile_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s]+$",
        description="Map tiles of the public page, e.g. https://tiles.example/{z}/{x}/{y}.png; unset = no tiles, no external request",
    )
    location_cache_s: int = Field(default=5, ge=0, le=3600, description="Cache-Control max-age of the public location")
    location_fresh_s: float = Field(
        default=1.0, ge=0, le=60, description="GET /location computes a camper's view at most this often and serves the copy meanwhile (0 = every request)"
    )
    location_refresh_s: float = Field(
        default=30.0, gt=0, le=3600, description="The location stream recomputes its view at least this often (ETA, windows starting or ending)"
    )
    gc_freeze_s: float = Field(
        default=5.0, ge=0, le=86_400,
        description="Freeze the garbage collector's survivors this often, so that full collections skip long-lived streams (0 = off; api/gctune.py)",
    )
    fleet_cache_s: float = Field(
        default=10.0, ge=0, le=3600,
        description="GET /api/v1/fleet serves a camper's line computed at most this long ago (0 = every request); completeness is kept 6x longer",
    )
    gc_unfreeze_s: float = Field(
        default=3600.0, ge=0, le=604_800, description="Give frozen objects back to the collector this often, to reclaim garbage cycles (0 = never)"
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins_ok(cls, v: list[str]) -> list[str]:
        for origin in v:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"CAMPERHUB_API_CORS_ORIGINS: {origin!r} is not http(s)://host[:port] or *")
        return v


class AuthSettings(BaseSettings):
    """Staff tokens (ARCHITECTURE.md §10): where their hashes are kept (``CAMPERHUB_TOKENS_PATH``)."""

    model_config = SettingsConfigDict(env_prefix="CAMPERHUB_", extra="ignore")

    tokens_path: Path = Field(default=Path("var/tokens.sqlite"), description="SQLite file of the staff tokens' SHA-256 hashes")
    audit_path: Path = Field(
        default=Path("var/audit.sqlite"), description="SQLite file of the append-only audit log of staff reads of position history"
    )
