"""MQTT broker URLs (``mqtt://user:pass@host:1883``, ``mqtts://...:8883``), shared by every MQTT client."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict


class MqttUrl(BaseModel):
    """``mqtt://user:pass@host:1883`` or ``mqtts://user:pass@host:8883``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Literal["mqtt", "mqtts"]
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> "MqttUrl":
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("needs a host, e.g. mqtt://user:pass@127.0.0.1:1883")
        try:
            port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError as exc:
            raise ValueError(f"bad port ({exc})") from None
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(scheme=parts.scheme, host=parts.hostname, port=port, username=user, password=password)

    def redacted(self) -> str:
        """The URL without its password, safe for logs."""
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"

    def configure(self, client: Any, ca_file: Path | str | None = None) -> None:
        """Give a paho client this URL's credentials and, for ``mqtts``, TLS with the host's certificate checked
        (against ``ca_file``, else the system's CAs)."""
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.scheme == "mqtts":
            client.tls_set(ca_certs=str(ca_file) if ca_file else None)
