"""The public pages (ARCHITECTURE.md §1, §6): ``/`` for tenants, server-rendered, translated, offline-capable."""

from pathlib import Path

#: CSS and script of the pages, served by the app at /static (no CDN: the pages work offline).
STATIC_DIR = Path(__file__).parent / "static"
