"""The store (ARCHITECTURE.md §5): one narrow interface, two backends.

``open_store()`` picks the backend from ``CAMPERHUB_STORE``; the InfluxDB
backend is imported only when asked for, so the embedded SQLite default (demo,
laptop, kiosk) needs neither httpx nor influxdb-client.
"""

from __future__ import annotations

from camperhub.settings import StoreSettings
from camperhub.store.base import Store


def open_store(settings: StoreSettings | None = None) -> Store:
    """The configured store: SQLite at ``sqlite_path`` or InfluxDB at ``influx_url``."""
    settings = settings if settings is not None else StoreSettings()
    if settings.store == "influx":
        from camperhub.store.influx import InfluxStore

        return InfluxStore.from_settings(settings)
    from camperhub.store.sqlite import SqliteStore

    return SqliteStore.from_settings(settings)


__all__ = ["Store", "open_store"]
