"""Normal and live mode (edge/modes.py): pure state, driven by a clock the test holds."""

from __future__ import annotations

from camperhub.contract import ModeCommand
from camperhub.edge.config import LiveMode, ModesConfig, NormalMode
from camperhub.edge.modes import ModeController

T0_MS = 1_764_057_600_000


class Clock:
    def __init__(self) -> None:
        self.s = 1000.0

    def mono(self) -> float:
        return self.s

    def wall_ms(self) -> int:
        return T0_MS + int((self.s - 1000.0) * 1000)


def _modes(changes: list[tuple[str, str]] | None = None) -> tuple[ModeController, Clock]:
    clock = Clock()
    config = ModesConfig(normal=NormalMode(batch_interval_s=300, compress=True), live=LiveMode(interval_s=1, default_minutes=60, max_minutes=120))
    ctl = ModeController(config, monotonic=clock.mono, wall_ms=clock.wall_ms, on_change=(lambda m, w: changes.append((m, w))) if changes is not None else None)
    return ctl, clock


def test_live_mode_falls_back_to_normal_by_itself():
    changes: list[tuple[str, str]] = []
    ctl, clock = _modes(changes)
    assert ctl.mode == "normal" and ctl.live_until_ms() is None
    ctl.command(ModeCommand(mode="live", minutes=10))
    assert ctl.mode == "live" and ctl.live_until_ms() == T0_MS + 600_000
    clock.s += 599
    assert ctl.mode == "live"
    clock.s += 2
    assert ctl.mode == "normal" and ctl.live_until_ms() is None
    assert [m for m, _ in changes] == ["live", "normal"] and "over" in changes[-1][1]


def test_live_mode_polls_at_1_hz_and_sends_at_once_normal_mode_batches_and_compresses():
    ctl, _ = _modes()
    assert ctl.poll_interval(5) == 5 and ctl.send_policy().batch_interval_s == 300 and ctl.send_policy().compress
    ctl.live(5, "test")
    assert ctl.poll_interval(5) == 1 and ctl.poll_interval(0.5) == 0.5, "never slower than configured"
    assert ctl.send_policy().batch_interval_s == 0 and not ctl.send_policy().compress
    assert ctl.status_interval_s() == 30


def test_the_workshop_button_toggles_and_a_long_command_is_capped():
    ctl, clock = _modes()
    assert ctl.button() == "live" and ctl.live_until_ms() == T0_MS + 60 * 60_000
    assert ctl.button() == "normal"
    ctl.command(ModeCommand(mode="live", minutes=600))
    assert ctl.live_until_ms() == T0_MS + 120 * 60_000, "capped at live.max_minutes"
    ctl.command(ModeCommand(mode="normal"))
    assert ctl.mode == "normal"


def test_a_command_delivered_late_counts_from_when_it_was_issued():
    ctl, clock = _modes()
    clock.s += 3600  # the camper was offline for an hour; the broker kept the command
    issued = clock.wall_ms() - 20 * 60_000
    assert ctl.command(ModeCommand(mode="live", minutes=30, issued_ts=issued)).startswith("live for 10.0")
    assert ctl.live_until_ms() == clock.wall_ms() + 10 * 60_000
    ctl.normal("test")
    stale = ModeCommand(mode="live", minutes=30, issued_ts=clock.wall_ms() - 31 * 60_000)
    assert ctl.command(stale).startswith("ignored") and ctl.mode == "normal"
