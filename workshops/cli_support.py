"""What the `camperhub workshop` verbs share: one way to fail (a message for stderr and its exit status), and opening the store.

Why: a leader at the camper must read what is wrong ("the period ends before it
starts"), never a traceback. Statuses: 2 a question that cannot be answered as
asked, 1 the store or the disk did not cooperate, 78 wrong settings (EX_CONFIG).
"""

from __future__ import annotations

import sys
from typing import Any


class CliFailure(Exception):
    """Raised anywhere inside a verb; :func:`report` prints it and gives its status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def report(prog: str, failure: CliFailure) -> int:
    """Print ``prog: message`` on stderr; the status to exit with."""
    print(f"{prog}: {failure}", file=sys.stderr)
    return failure.status


def open_store_or_fail() -> Any:
    """The store of the ``CAMPERHUB_*`` settings (a :class:`camperhub.store.base.Store`); wrong
    settings are a CliFailure with status 78 naming the problem."""
    from pydantic import ValidationError

    from camperhub.settings import StoreSettings
    from camperhub.store import open_store
    from camperhub.store.base import StoreError

    try:
        return open_store(StoreSettings())
    except ValidationError as exc:
        raise CliFailure("; ".join(str(err["msg"]) for err in exc.errors()), 78) from None
    except (StoreError, ValueError) as exc:
        raise CliFailure(str(exc), 78) from None
