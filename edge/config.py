"""The edge agent's one YAML configuration file (ARCHITECTURE.md §7), validated at start-up.

Validation opens no connection: it checks shape, names, that each device's
register map exists and is valid, that its transport is one the device speaks,
and that no two devices feed the same contract field unless one of them
excludes it. Every problem is reported with file, line and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from camperhub.contract import CAMPER_ID_PATTERN
from camperhub.mqtturl import MqttUrl
from camperhub.edge.registermap import RegisterMap, load_register_map, map_path
from camperhub.edge.transport import Transport, parse_transport
from camperhub.yamlconf import ConfigError, PathKey, load_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Strict):
    url: str = Field(description="mqtt://user:pass@host:1883 or mqtts://... ; the user is the camper id")
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    keepalive_s: int = Field(
        default=60, ge=1, le=600,
        description="MQTT keepalive: the Last Will fires 1.5x this after the link dies; each idle period costs a PINGREQ/PINGRESP on 4G",
    )
    ca_file: Path | None = None
    max_inflight: int = Field(default=20, ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _url_ok(cls, v: str) -> str:
        MqttUrl.parse(v)
        return v

    @property
    def parsed(self) -> MqttUrl:
        return MqttUrl.parse(self.url)


class DeviceConfig(_Strict):
    """One Modbus device: which register map, where, and how often."""

    map: str = Field(description="Register map name in firmware-config/devices/ (or a path to one)")
    transport: str
    unit: int | None = Field(default=None, ge=0, le=255, description="Modbus unit id; the map's default when absent")
    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    interval_s: float = Field(default=5.0, ge=0.05, le=3600, description="Poll interval; below ~0.2 s only for time-compressed benchmarks")
    timeout_s: float | None = Field(default=None, gt=0, le=30)
    retries: int | None = Field(default=None, ge=0, le=10)
    exclude_fields: list[str] = Field(default_factory=list, description="Fields of the map not to publish from this device")

    @field_validator("transport")
    @classmethod
    def _transport_ok(cls, v: str) -> str:
        parse_transport(v)
        return v

    @field_validator("map")
    @classmethod
    def _map_exists(cls, v: str) -> str:
        if not map_path(v).is_file():
            raise ValueError(f"register map {v!r} not found at {map_path(v)}")
        return v


class GpsConfig(_Strict):
    gpsd: str | None = Field(default=None, description="host:port of gpsd")
    nmea: str | None = Field(default=None, description="rtu-style serial URL of a raw NMEA receiver when there is no gpsd")


class ClockConfig(_Strict):
    """Which clock to trust for reading times (edge/clock.py): the Pi has no real-time clock."""

    trust_system: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="auto: once the kernel says NTP synchronised it (as timedatectl); always: a machine with a real-time clock; never: GPS only",
    )


class NormalMode(_Strict):
    """The everyday mode: small on 4G (ARCHITECTURE.md §11: at most 150 MB a month)."""

    batch_interval_s: float = Field(default=300, ge=0, le=3600, description="Energy readings leave the queue together this often (0: at once)")
    compress: bool = Field(default=True, description="gzip the envelopes (contract: a payload starting 1f 8b is a gzip'd envelope)")
    status_interval_s: float = Field(default=300, ge=1, le=3600)


class LiveMode(_Strict):
    """The workshop mode: every device at 1 Hz, sent at once, for a while, then back to normal by itself."""

    interval_s: float = Field(default=1.0, ge=0.2, le=60, description="Poll interval of every device while live")
    compress: bool = False
    status_interval_s: float = Field(default=30, ge=1, le=3600)
    default_minutes: int = Field(default=60, ge=1, le=24 * 60, description="How long the workshop button switches live mode on")
    max_minutes: int = Field(default=240, ge=1, le=24 * 60, description="Longest live period a command may ask for")


class ModesConfig(_Strict):
    normal: NormalMode = NormalMode()
    live: LiveMode = LiveMode()


class PositionConfig(_Strict):
    """Position by distance and time (edge/position_filter.py): a parked camper sends a heartbeat, a moving one a trail."""

    min_distance_m: float = Field(default=100, ge=0, le=100_000)
    min_interval_s: float = Field(default=30, ge=0, le=86_400)
    max_interval_s: float = Field(default=900, ge=1, le=86_400)
    fast_speed_kmh: float | None = Field(default=20, gt=0, le=300, description="At or above this speed a moving camper is reported every fast_min_interval_s (null: never)")
    fast_min_interval_s: float = Field(default=10, ge=0, le=86_400, description="Capped at min_interval_s")
    max_speed_kmh: float = Field(default=200, gt=0, le=1000, description="A fix implying a faster move than this is a jump, dropped")
    parked_speed_kmh: float = Field(default=2, ge=0, le=20, description="Below this a camper near its held position is parked: jitter suppressed")
    jitter_radius_m: float = Field(default=30, ge=0, le=500, description="Jitter radius at HDOP 1 (scaled by HDOP up to 4x)")
    snap_speed_kmh: float = Field(default=10, ge=0, le=50, description="Below this, inside a stop's geofence, the position snaps to the stop")
    stops_file: Path | None = Field(default=None, description="YAML list of stops (firmware-config/demo/stops.yaml) whose geofences positions snap to")

    @field_validator("stops_file")
    @classmethod
    def _stops_ok(cls, v: Path | None) -> Path | None:
        if v is None:
            return v
        from camperhub.edge.stops import load_stops

        try:
            load_stops(v)
        except ConfigError as exc:
            raise ValueError("stops file is invalid: " + "; ".join(str(x) for x in exc.issues)) from exc
        return v

    @model_validator(mode="after")
    def _intervals_ok(self) -> "PositionConfig":
        if self.max_interval_s < self.min_interval_s:
            raise ValueError("max_interval_s must be at least min_interval_s")
        return self


class GpioConfig(_Strict):
    status_led: int | None = Field(default=None, ge=0, le=27)
    workshop_button: int | None = Field(default=None, ge=0, le=27)
    shore_power: int | None = Field(default=None, ge=0, le=27)
    in_service_switch: int | None = Field(default=None, ge=0, le=27)


#: Bytes one queued energy reading takes in the queue file (measured by
#: tests/bench/test_bench_queue.py: 517 B for a full reading with 1 KiB pages,
#: JSON body, row and b-tree overhead; rounded up for readings with more fields).
QUEUE_BYTES_PER_READING = 560
#: The normal rate: one merged energy reading per 5 s (DeviceConfig.interval_s default).
NORMAL_READINGS_PER_DAY = 86400 // 5
#: 30 days at the normal rate: 17,280/day x 30 x 560 B = 277 MiB (256 MiB measured), rounded up to 320 MiB.
DEFAULT_QUEUE_MB = 320


class QueueConfig(_Strict):
    """The durable queue (edge/queue.py): where, how big, how often it commits, how much in flight."""

    path: Path = Path("/var/lib/camperhub/queue.sqlite")
    max_mb: float = Field(default=DEFAULT_QUEUE_MB, gt=0, le=100_000, description="Disk budget; over it, old readings fold into 1-minute means")
    max_age_days: float = Field(default=30, gt=0, le=3650, description="Age budget of the oldest queued reading")
    commit_interval_s: float = Field(default=1.0, ge=0.05, le=60, description="Group commit period: a power cut loses at most this much")
    inflight: int = Field(default=20, ge=1, le=1000, description="Envelopes handed to paho at once (its ids wrap at 65,535)")
    delete_on: Literal["stored", "broker"] = Field(
        default="stored",
        description="stored: a reading leaves the queue at the server's receipt (cmd/stored); broker: at the broker's PUBACK",
    )
    resend_after_s: float = Field(default=600, ge=1, le=7 * 86400, description="A reading the broker took but the server never confirmed is sent again after this")


class EdgeConfig(_Strict):
    """The whole edge configuration file."""

    camper: str = Field(pattern=CAMPER_ID_PATTERN)
    mqtt: MqttSettings
    devices: list[DeviceConfig] = Field(default_factory=list)
    gps: GpsConfig | None = None
    gpio: GpioConfig | None = None
    queue: QueueConfig = QueueConfig()
    clock: ClockConfig = ClockConfig()
    modes: ModesConfig = ModesConfig()
    position: PositionConfig = PositionConfig()

    def cross_check(self) -> list[tuple[PathKey, str]]:
        """Across devices: loadable maps, transports the devices speak, unique names and fields."""
        problems: list[tuple[PathKey, str]] = []
        fed_by: dict[str, int] = {}
        names: dict[str, int] = {}
        for i, dev in enumerate(self.devices):
            try:
                rmap = load_register_map(dev.map)
            except ConfigError as exc:
                problems.append((("devices", i, "map"), f"register map {dev.map!r} is invalid: " + "; ".join(str(x) for x in exc.issues)))
                continue
            t = parse_transport(dev.transport, rmap.link.port)
            if t.kind not in rmap.link.transports:
                problems.append((("devices", i, "transport"), f"{rmap.model} speaks {'/'.join(rmap.link.transports)}, not {t.kind}"))
            name = device_name(dev, rmap)
            if name in names:
                problems.append((("devices", i, "name"), f"device name {name!r} is used by devices[{names[name]}] too; set name:"))
            names.setdefault(name, i)
            for f in dev.exclude_fields:
                if f not in rmap.fields:
                    problems.append((("devices", i, "exclude_fields"), f"{f!r} is not a field of {rmap.model}"))
            for f in rmap.fields:
                if f in dev.exclude_fields:
                    continue
                if f in fed_by:
                    problems.append(
                        (("devices", i, "map"), f"field {f} is fed by devices[{fed_by[f]}] too: list it under exclude_fields of one of them")
                    )
                fed_by.setdefault(f, i)
        return problems


def device_name(dev: DeviceConfig, rmap: RegisterMap) -> str:
    """A device's name in logs and counters: its own, else the map's model."""
    return dev.name or rmap.model


def resolved_transport(dev: DeviceConfig, rmap: RegisterMap) -> Transport:
    """The device's transport with the map's serial defaults and TCP port filled in."""
    return parse_transport(dev.transport, rmap.link.port).with_serial_defaults(rmap.link.serial)


def load_edge_config(path: str | Path) -> EdgeConfig:
    """Read and check an edge config file; ConfigError lists every problem with its line."""
    return load_model(EdgeConfig, path)
