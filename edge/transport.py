"""Modbus transport addresses: ``tcp://host:port`` and ``rtu:///dev/ttyX?baudrate=9600``.

One small parser shared by the edge config, the simulator and the CLI, so a
transport written in a config file means the same thing everywhere. Serial
settings not given in the URL come from the register map's ``link.serial``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from camperhub.edge.registermap import SerialSettings

_SERIAL_KEYS = {"baudrate": int, "bytesize": int, "parity": str, "stopbits": int}


@dataclass(frozen=True)
class Transport:
    """Where a Modbus device (or a simulator) is: a TCP endpoint or a serial port."""

    kind: Literal["tcp", "rtu"]
    host: str = ""
    port: int = 502
    device: str = ""
    serial: SerialSettings = SerialSettings()
    serial_given: frozenset[str] = frozenset()

    def __str__(self) -> str:
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}"
        return f"rtu://{self.device}?baudrate={self.serial.baudrate}"

    @property
    def bus_key(self) -> str:
        """Devices with the same key share one connection (one serial line, one TCP endpoint)."""
        return str(self) if self.kind == "tcp" else f"rtu://{self.device}"

    def with_serial_defaults(self, defaults: SerialSettings | None) -> "Transport":
        """Fill the serial settings the URL did not give from the device map."""
        if self.kind != "rtu" or defaults is None:
            return self
        merged = defaults.model_copy(update={k: getattr(self.serial, k) for k in self.serial_given})
        return replace(self, serial=merged)


def parse_transport(url: str, default_tcp_port: int = 502) -> Transport:
    """Parse a transport URL; ValueError says what is wrong and what is expected."""
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        if not parts.hostname:
            raise ValueError(f"{url!r}: tcp transport needs a host, e.g. tcp://127.0.0.1:502")
        try:
            port = parts.port or default_tcp_port
        except ValueError as exc:
            raise ValueError(f"{url!r}: bad port ({exc})") from exc
        return Transport("tcp", host=parts.hostname, port=port)
    if parts.scheme == "rtu":
        device = parts.path
        if parts.netloc or not device.startswith("/"):
            raise ValueError(f"{url!r}: rtu transport needs an absolute device path, e.g. rtu:///dev/ttyUSB0?baudrate=9600")
        query = parse_qs(parts.query, strict_parsing=False)
        values: dict[str, object] = {}
        for key, items in query.items():
            if key not in _SERIAL_KEYS:
                raise ValueError(f"{url!r}: unknown serial option {key!r} (allowed: {', '.join(_SERIAL_KEYS)})")
            try:
                values[key] = _SERIAL_KEYS[key](items[-1])
            except ValueError:
                raise ValueError(f"{url!r}: {key} must be a number") from None
        try:
            serial = SerialSettings(**values)
        except Exception as exc:  # pydantic ValidationError
            raise ValueError(f"{url!r}: {exc}") from exc
        return Transport("rtu", device=device, serial=serial, serial_given=frozenset(values))
    raise ValueError(f"{url!r}: transport must start with tcp:// or rtu://")
