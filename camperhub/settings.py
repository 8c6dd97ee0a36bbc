"""Server-side settings from ``CAMPERHUB_*`` environment variables (ARCHITECTURE.md §7).

One pydantic-settings object per component, validated at start-up without
opening any connection, so a typo in a URL stops the service with a message
that names the variable instead of failing later on the first write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    """Where data is stored: the embedded SQLite file, or an InfluxDB server."""

    model_config = SettingsConfigDict(env_prefix="CAMPERHUB_", extra="ignore")

    store: Literal["sqlite", "influx"] = "sqlite"
    sqlite_path: Path = Path("var/camperhub.sqlite")
    influx_url: str | None = Field(default=None, description="http://user:pass@host:8086 (1.x) or http://host:8086 with a token")
    influx_db: str = Field(default="camperhub", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    influx_token: SecretStr | None = None
    influx_timeout_s: float = Field(default=10.0, gt=0, le=300)
    raw_retention_days: float = Field(default=90, ge=0, description="Raw energy samples kept this long (rollups forever); 0 = forever")
    rollup_journal: Path | None = Field(
        default=Path("var/influx-rollup-journal.sqlite"),
        description="InfluxDB only: the local file of energy minutes still to fold, shared by the ingest and the API; empty = in memory",
    )

    @field_validator("rollup_journal", mode="before")
    @classmethod
    def _empty_is_memory(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("influx_url")
    @classmethod
    def _url_ok(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("CAMPERHUB_INFLUX_URL must look like http://user:pass@host:8086")
        return v

    @model_validator(mode="after")
    def _influx_needs_url(self) -> "StoreSettings":
        if self.store == "influx" and not self.influx_url:
            raise ValueError("CAMPERHUB_STORE=influx needs CAMPERHUB_INFLUX_URL")
        return self


class MqttClientSettings(BaseSettings):
    """The broker a server component (ingest, api) connects to."""

    model_config = SettingsConfigDict(env_prefix="CAMPERHUB_", extra="ignore")

    mqtt_url: str = Field(default="mqtt://127.0.0.1:1883", description="mqtt://user:pass@host:1883 or mqtts://...:8883")
    mqtt_ca_file: Path | None = None

    @field_validator("mqtt_url")
    @classmethod
    def _url_ok(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("CAMPERHUB_MQTT_URL must look like mqtt://user:pass@host:1883")
        return v
