"""The agent's clock, for a Raspberry Pi that has no real-time clock.

A Pi boots with whatever time fake-hwclock saved at the last shutdown (or
1970), and only learns the real time from NTP once the 4G link is up, or from
the GPS once it has a fix. A reading stamped with the boot-time clock would
land hours or years away from where it belongs. So every reading is taken with
two times:

* the boot id (``/proc/sys/kernel/random/boot_id``) and the milliseconds since
  boot (``CLOCK_BOOTTIME``, which keeps counting through suspend and never
  jumps), which are always right;
* a UTC timestamp, which is *dated* (trustworthy) only once the clock is
  trusted.

The clock is trusted when the kernel says NTP synchronised it (the same test
``timedatectl`` makes: ``adjtimex`` does not return ``TIME_ERROR`` and
``STA_UNSYNC`` is clear) or when gpsd reports a fix with a time. From then on
``utc = boot_ms + offset`` for the rest of this boot, and the queue restamps the
readings taken before, while still in this boot, with the same offset
(:meth:`camperhub.edge.queue.DurableQueue.restamp`). Readings of an earlier boot
whose clock was never trusted cannot be dated any more: the queue removes and
counts them (``queue_unsynced``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

ClockSource = Literal["gps", "ntp", "unsynced"]
TrustSystemClock = Literal["auto", "always", "never"]

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
#: How long one look at the kernel's NTP state is reused (adjtimex is cheap, but not free at 1 Hz x devices).
NTP_CHECK_EVERY_S = 10.0
#: GPS time and the moment gpsd's report arrived differ by the receiver's and gpsd's latency;
#: a new offset that differs from the one in use by less than this is not worth a change.
GPS_OFFSET_TOLERANCE_MS = 500

_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """``struct timex`` of <sys/timex.h> (Linux), as far as the status word, padded to full size."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long), ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long), ("status", ctypes.c_int), ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


def kernel_ntp_synced() -> bool:
    """True when the kernel's clock discipline says the time is synchronised (what timedatectl shows).

    systemd-timesyncd, chrony and ntpd all clear ``STA_UNSYNC`` once they
    have set the clock; a read-only ``adjtimex`` needs no privilege.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return False
    return state != -1 and state != _TIME_ERROR and not tx.status & _STA_UNSYNC


def read_boot_id() -> str:
    """This boot's id; a random one where the kernel does not say (then every start is a new boot)."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return str(uuid.uuid4())


def boot_ms() -> int:
    """Milliseconds since boot, suspend included (never jumps, unlike the wall clock)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * 1000)


def system_ms() -> int:
    """The wall clock, in Unix epoch milliseconds (whatever it is set to)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Stamp:
    """When a reading was taken: always the boot id and time since boot; UTC, trustworthy when ``dated``."""

    ts_ms: int
    boot_id: str
    boot_ms: int
    dated: bool


class EdgeClock:
    """Stamps readings and knows which clock it trusts; tells the queue when it starts trusting one.

    ``trust_system`` is the edge config's ``clock.trust_system``: ``auto`` asks
    the kernel (NTP), ``always`` is for a machine with a real-time clock (a
    laptop running the demo), ``never`` trusts only the GPS. The time sources
    are injectable so tests can play a Pi that boots in 1970.
    """

    def __init__(
        self,
        trust_system: TrustSystemClock = "auto",
        *,
        boot_id: str | None = None,
        boot_clock: Callable[[], int] = boot_ms,
        wall_clock: Callable[[], int] = system_ms,
        ntp_synced: Callable[[], bool] = kernel_ntp_synced,
        on_trusted: Callable[[str, int], None] | None = None,
    ) -> None:
        self.trust_system = trust_system
        self.boot_id = boot_id or read_boot_id()
        self._boot_clock = boot_clock
        self._wall_clock = wall_clock
        self._ntp_synced = ntp_synced
        #: called once, as (boot_id, offset_ms), when this boot's clock first becomes trusted
        self.on_trusted = on_trusted
        self._lock = threading.Lock()
        self._source: ClockSource = "unsynced"
        self._offset_ms: int | None = None  # utc - boot_ms, once trusted
        self._ntp_checked_at: float = -NTP_CHECK_EVERY_S
        self._ntp_ok = False

    @property
    def source(self) -> ClockSource:
        """Which clock stamps readings now (status ``clock``)."""
        self._check_system()
        return self._source

    @property
    def offset_ms(self) -> int | None:
        """UTC minus time since boot, once trusted."""
        return self._offset_ms

    def stamp(self) -> Stamp:
        """The time of a reading taken now."""
        self._check_system()
        b = self._boot_clock()
        with self._lock:
            if self._source == "ntp":
                return Stamp(self._wall_clock(), self.boot_id, b, True)
            if self._offset_ms is not None:
                return Stamp(b + self._offset_ms, self.boot_id, b, True)
        return Stamp(self._wall_clock(), self.boot_id, b, False)

    def gps_time(self, utc_ms: int, at_boot_ms: int) -> None:
        """gpsd reported ``utc_ms`` (a fix with a time) at ``at_boot_ms`` since boot."""
        offset = utc_ms - at_boot_ms
        with self._lock:
            if self._source == "ntp":
                return
            first = self._offset_ms is None
            if not first and abs(offset - self._offset_ms) < GPS_OFFSET_TOLERANCE_MS:  # type: ignore[operator]
                return
            self._offset_ms, self._source = offset, "gps"
        if first:
            log.info("clock trusted from the GPS (offset to boot time %d ms)", offset)
            self._trusted(offset)

    def _check_system(self) -> None:
        if self.trust_system == "never" or self._source == "ntp":
            return
        now = time.monotonic()
        if self.trust_system == "auto" and now - self._ntp_checked_at < NTP_CHECK_EVERY_S:
            return
        self._ntp_checked_at = now
        if self.trust_system == "always" or self._ntp_synced():
            with self._lock:
                first = self._offset_ms is None
                self._offset_ms = self._wall_clock() - self._boot_clock()
                self._source = "ntp"
            log.info("clock trusted: %s", "system clock (trust_system: always)" if self.trust_system == "always" else "NTP synchronised")
            if first:
                self._trusted(self._offset_ms)

    def _trusted(self, offset_ms: int) -> None:
        if self.on_trusted is not None:
            self.on_trusted(self.boot_id, offset_ms)
