"""``camperhub workshop report|whatif``: the verbs' arguments, kept light.

Why a module of its own: :mod:`camperhub.cli` builds every parser at start-up,
so this module and the ``*_cli`` modules it calls import nothing heavy (no
pandas, no pvlib); each verb imports its machinery when it runs.
"""

from __future__ import annotations

import argparse

from camperhub.workshops import report_cli, whatif_cli


def add_workshop_verbs(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``workshop`` with its verbs to the top-level subparsers of ``camperhub``."""
    w = sub.add_parser("workshop", help="workshop material: printable handouts and what-if replays").add_subparsers(
        dest="workshop_verb", required=True, metavar="VERB"
    )
    report_cli.add_parser(w)
    whatif_cli.add_parser(w)
