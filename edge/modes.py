"""Normal and live mode: what the agent polls and sends, and when live mode ends by itself.

Normal mode keeps mobile data small (ARCHITECTURE.md §11: at most 150 MB a
month): devices are polled at their configured interval, energy readings wait
in the queue and leave together every ``batch_interval_s`` as gzip'd envelopes.
Live mode is for a workshop's demo: every device at 1 Hz, each reading sent at
once. It is switched on by the ``cmd/mode`` downlink (with a duration) or the
workshop button, and always falls back to normal by itself when its time is
up: a forgotten live mode must not eat the month's data plan.

Pure state, no I/O: the agent asks it, the publisher's ``cmd/mode`` handler
and the GPIO button drive it, and it is tested without a clock to wait for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from camperhub.contract import ModeCommand
from camperhub.edge.config import ModesConfig

log = logging.getLogger(__name__)

Mode = Literal["normal", "live"]


@dataclass(frozen=True)
class SendPolicy:
    """How the outbox sends energy readings in the current mode."""

    batch_interval_s: float
    compress: bool


class ModeController:
    """The current mode, its end, and the transitions (command, button, expiry)."""

    def __init__(
        self,
        config: ModesConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        on_change: Callable[[Mode, str], None] | None = None,
    ) -> None:
        self.config = config
        self._monotonic = monotonic
        self._wall_ms = wall_ms
        #: called as (new mode, why) after every change, from whichever thread caused it
        self.on_change = on_change
        self._lock = threading.Lock()
        self._mode: Mode = "normal"
        self._until: float | None = None  # monotonic end of live mode

    @property
    def mode(self) -> Mode:
        """The mode now (live mode past its end has already fallen back)."""
        self.expire()
        return self._mode

    def live_until_ms(self) -> int | None:
        """While live: when it ends, as Unix epoch ms (status ``live_until_ts``)."""
        with self._lock:
            if self._mode != "live" or self._until is None:
                return None
            return self._wall_ms() + int((self._until - self._monotonic()) * 1000)

    def expire(self) -> bool:
        """Fall back to normal when live mode's time is up; True when it just did."""
        with self._lock:
            if self._mode != "live" or self._until is None or self._monotonic() < self._until:
                return False
            self._mode, self._until = "normal", None
        self._changed("normal", "live period over")
        return True

    def live(self, minutes: float, why: str) -> None:
        """Live for ``minutes`` from now (capped at ``live.max_minutes``); extends or shortens a running period."""
        minutes = max(0.0, min(minutes, self.config.live.max_minutes))
        with self._lock:
            self._mode, self._until = "live", self._monotonic() + minutes * 60
        self._changed("live", f"{why}: live for {minutes:g} min")

    def normal(self, why: str) -> None:
        with self._lock:
            was = self._mode
            self._mode, self._until = "normal", None
        if was != "normal":
            self._changed("normal", why)

    def command(self, cmd: ModeCommand) -> str:
        """Apply a ``cmd/mode`` downlink; returns what was done (for the log).

        A command that waited in the broker while the camper was offline
        counts its minutes from when it was issued (``issued_ts``), so a
        late one asks for less, and an expired one is ignored.
        """
        if cmd.mode == "normal":
            self.normal("cmd/mode normal")
            return "normal"
        minutes = float(cmd.minutes or self.config.live.default_minutes)
        if cmd.issued_ts is not None:
            minutes -= max(0, self._wall_ms() - cmd.issued_ts) / 60000
            if minutes <= 0:
                return f"ignored: live for {cmd.minutes} min issued at {cmd.issued_ts} has already ended"
        self.live(minutes, "cmd/mode")
        return f"live for {minutes:.1f} min"

    def button(self) -> Mode:
        """The workshop button: normal → live for the default time; live → normal (the demo is over)."""
        if self.mode == "live":
            self.normal("workshop button")
        else:
            self.live(self.config.live.default_minutes, "workshop button")
        return self._mode

    def poll_interval(self, configured_s: float) -> float:
        """A device's poll interval in the current mode."""
        return min(configured_s, self.config.live.interval_s) if self.mode == "live" else configured_s

    def send_policy(self) -> SendPolicy:
        if self.mode == "live":
            return SendPolicy(0.0, self.config.live.compress)
        n = self.config.normal
        return SendPolicy(n.batch_interval_s, n.compress)

    def status_interval_s(self) -> float:
        return self.config.live.status_interval_s if self.mode == "live" else self.config.normal.status_interval_s

    def _changed(self, mode: Mode, why: str) -> None:
        log.info("mode %s (%s)", mode, why)
        if self.on_change is not None:
            self.on_change(mode, why)
