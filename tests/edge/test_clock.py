"""The clock without RTC (edge/clock.py), with time sources the test holds: a Pi that boots in 1970."""

from __future__ import annotations

import time

from camperhub.edge.clock import EdgeClock, boot_ms, kernel_ntp_synced, read_boot_id

TRUE_UTC_AT_BOOT_MS = 1_764_057_600_000  # 2025-11-25T08:00:00Z


class Pi:
    """A Pi's two clocks: ms since boot (always right) and a wall clock that starts in 1970."""

    def __init__(self) -> None:
        self.boot = 5_000
        self.ntp = False

    def boot_ms(self) -> int:
        return self.boot

    def wall_ms(self) -> int:
        return self.boot  # 1970 plus uptime: the clock was never set


def _clock(pi: Pi, trust: str = "auto", trusted: list | None = None) -> EdgeClock:
    return EdgeClock(
        trust, boot_id="boot-a", boot_clock=pi.boot_ms, wall_clock=pi.wall_ms, ntp_synced=lambda: pi.ntp,
        on_trusted=(lambda b, o: trusted.append((b, o))) if trusted is not None else None,
    )


def test_until_trusted_readings_are_undated_with_boot_id_and_time_since_boot():
    pi = Pi()
    clock = _clock(pi)
    stamp = clock.stamp()
    assert not stamp.dated and stamp.boot_id == "boot-a" and stamp.boot_ms == 5_000
    assert clock.source == "unsynced"


def test_gps_time_trusts_the_clock_once_and_dates_by_time_since_boot():
    pi, trusted = Pi(), []
    clock = _clock(pi, "never", trusted)
    pi.boot = 65_000
    clock.gps_time(TRUE_UTC_AT_BOOT_MS + 65_000, at_boot_ms=65_000)
    assert clock.source == "gps" and trusted == [("boot-a", TRUE_UTC_AT_BOOT_MS)]
    pi.boot = 70_000
    stamp = clock.stamp()
    assert stamp.dated and stamp.ts_ms == TRUE_UTC_AT_BOOT_MS + 70_000
    clock.gps_time(TRUE_UTC_AT_BOOT_MS + 70_200, at_boot_ms=70_000)  # receiver latency: not worth a change
    assert clock.offset_ms == TRUE_UTC_AT_BOOT_MS and len(trusted) == 1


def test_ntp_sync_trusts_the_system_clock_and_gps_no_longer_moves_it():
    pi, trusted = Pi(), []
    clock = _clock(pi, "auto", trusted)
    assert clock.source == "unsynced"
    pi.ntp = True
    clock._ntp_checked_at = -1e9  # noqa: SLF001 - skip the 10 s between looks at the kernel
    assert clock.source == "ntp" and len(trusted) == 1
    clock.gps_time(1, at_boot_ms=pi.boot)
    assert clock.stamp().ts_ms == pi.wall_ms(), "NTP wins over the GPS"


def test_the_real_kernel_sources_answer():
    assert isinstance(kernel_ntp_synced(), bool)
    assert len(read_boot_id()) >= 32
    before = boot_ms()
    time.sleep(0.01)
    assert boot_ms() >= before + 10
    assert EdgeClock("always").stamp().dated
