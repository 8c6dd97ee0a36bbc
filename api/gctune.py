"""Keep Python's full garbage collections short in a process that holds thousands of streams.

Why: each server-sent-events client keeps a few hundred long-lived objects
(its task group, memory streams, response). A full collection walks every
tracked object, so with 5,000 clients one took about 1.2 s, and every update
that overlapped it missed the one-second delivery target
(tests/bench/test_bench_api.py). Those objects live as long as their
connection and need no collecting while it is open.

What it does (``gc.freeze``, made for long-running servers): after start-up
and then every ``freeze_every_s`` it collects the young generations and moves
every survivor into the permanent generation, which collections skip (often:
thousands of clients that connect within a minute set off full collections
before a once-a-minute freeze would see them); what became garbage is
still freed by reference counting when a connection closes. Only garbage
*cycles* among frozen objects wait, so every ``unfreeze_every_s`` the frozen
objects go back to the oldest generation and the next full collection (one
long pause per period, not one per burst of new clients) reclaims such cycles.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)


class GcFreezer:
    """Freezes the collector's survivors periodically; ``freeze_every_s`` 0 leaves the collector alone."""

    def __init__(self, freeze_every_s: float, unfreeze_every_s: float) -> None:
        if freeze_every_s < 0 or unfreeze_every_s < 0:
            raise ValueError("gc periods must be >= 0")
        self.freeze_every_s = freeze_every_s
        self.unfreeze_every_s = unfreeze_every_s
        self._task: asyncio.Task[None] | None = None
        self.freezes = 0
        self.unfreezes = 0

    @property
    def enabled(self) -> bool:
        return self.freeze_every_s > 0

    def freeze(self) -> None:
        """Collect the young generations (cheap: only what is new), then move every survivor
        into the permanent generation (collections skip it)."""
        gc.collect(1)
        gc.freeze()
        self.freezes += 1

    def unfreeze(self) -> None:
        """Give the frozen objects back to the oldest generation; the next full collection examines them."""
        gc.unfreeze()
        self.unfreezes += 1

    def start(self) -> None:
        """Freeze what start-up built (modules, app, settings) and run the periodic freezes (in a running loop)."""
        if not self.enabled:
            return
        gc.collect()  # leave start-up's garbage behind rather than freeze it
        self.freeze()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gc-freezer")

    async def _run(self) -> None:
        last_unfreeze = time.monotonic()
        while True:
            await asyncio.sleep(self.freeze_every_s)
            if self.unfreeze_every_s and time.monotonic() - last_unfreeze >= self.unfreeze_every_s:
                self.unfreeze()
                last_unfreeze = time.monotonic()
                log.debug("gc: unfrozen %d objects' generation for a full collection", gc.get_freeze_count())
            else:
                self.freeze()

    async def stop(self) -> None:
        """Stop the periodic freezes and give everything back to the collector."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.enabled:
            gc.unfreeze()
