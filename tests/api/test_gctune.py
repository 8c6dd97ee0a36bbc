"""The garbage-collector freezer of the API process (api/gctune.py)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from camperhub.api.gctune import GcFreezer


def test_start_freezes_and_stop_gives_everything_back() -> None:
    async def run() -> tuple[int, int, int]:
        f = GcFreezer(freeze_every_s=0.02, unfreeze_every_s=0)
        f.start()
        after_start = gc.get_freeze_count()
        await asyncio.sleep(0.1)
        periodic = f.freezes
        await f.stop()
        return after_start, periodic, gc.get_freeze_count()

    after_start, freezes, after_stop = asyncio.run(run())
    assert after_start > 1000  # the interpreter's modules and this test's objects
    assert freezes >= 3  # the start-up freeze and periodic ones
    assert after_stop == 0


def test_unfreeze_period_returns_objects_to_the_collector() -> None:
    async def run() -> int:
        f = GcFreezer(freeze_every_s=0.01, unfreeze_every_s=0.03)
        f.start()
        await asyncio.sleep(0.2)
        await f.stop()
        return f.unfreezes

    assert asyncio.run(run()) >= 2
    assert gc.get_freeze_count() == 0


def test_zero_period_leaves_the_collector_alone() -> None:
    async def run() -> int:
        f = GcFreezer(0, 3600)
        f.start()
        count = gc.get_freeze_count()
        await f.stop()
        return count

    assert asyncio.run(run()) == 0


def test_negative_periods_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        GcFreezer(-1, 0)
