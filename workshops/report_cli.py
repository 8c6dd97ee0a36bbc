"""``camperhub workshop report``: a printable handout of a camper over some days.

``camperhub workshop report --camper ID --from DATE --to DATE [--lang it|en] --out FILE``
writes HTML (``FILE.html``) or PDF (``FILE.pdf``, printed by headless
Chromium when it is installed; without it the HTML is written beside and the
command says so, exit 1). Italian by default. The store is chosen as for the
other verbs (``CAMPERHUB_STORE``, ``CAMPERHUB_SQLITE_PATH``, ``CAMPERHUB_INFLUX_*``).
A progress bar (rich, on stderr) follows the days on windows longer than a week.

Kept light at import time (argparse only): :mod:`camperhub.cli` builds every
parser at start-up; pandas, Jinja2 and rich are imported when the verb runs.

Exit status: 0 done; 2 a question that cannot be answered as asked (bad or
inverted dates, an absurd window, an unknown camper, no data, a bad output
file name); 1 the store did not answer, or no PDF engine; 78 the store
settings are wrong.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from camperhub.workshops.cli_support import CliFailure, open_store_or_fail, report

PROG = "camperhub workshop report"
LANGS = ("it", "en")
#: Windows longer than this many days get a progress bar.
PROGRESS_DAYS = 7


def _day(text: str) -> date:
    """A YYYY-MM-DD argument, with a message that says what was expected."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``report`` verb (its arguments, and ``func`` that runs it)."""
    s = sub.add_parser(
        "report",
        help="a printable handout (HTML or PDF) of a camper's solar energy over some days",
        description="A handout for a workshop: energy made and used per Europe/Rome day, self-sufficiency, "
                    "battery, everyday equivalents, with charts; Italian by default.",
        epilog="Example: camperhub workshop report --camper varese-1 --from 2026-06-01 --to 2026-06-30 --out giugno.pdf",
    )
    s.add_argument("--camper", required=True, help="camper id, e.g. varese-1")
    s.add_argument("--from", dest="first_day", type=_day, required=True, metavar="DATE", help="first day (YYYY-MM-DD, Europe/Rome)")
    s.add_argument("--to", dest="last_day", type=_day, required=True, metavar="DATE", help="last day, included")
    s.add_argument("--lang", choices=LANGS, default="it", help="language of the handout (default it)")
    s.add_argument("--out", required=True, type=Path, metavar="FILE", help="output file: .html or .pdf")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the verb; every failure is a message on stderr and a non-zero status."""
    try:
        return _run(args)
    except CliFailure as exc:
        return report(PROG, exc)


def _check(args: argparse.Namespace) -> str:
    """Validate what needs no store; the output kind (``html`` or ``pdf``)."""
    from camperhub.contract import is_valid_camper_id
    from camperhub.workshops.analysis import LOCAL_TZ, MAX_DAYS

    if not is_valid_camper_id(args.camper):
        raise CliFailure(f"camper id {args.camper!r} is not valid (lower-case letters, digits and -, at most 32)")
    if args.last_day < args.first_day:
        raise CliFailure(f"the window is inverted: --to {args.last_day} is before --from {args.first_day}")
    days = (args.last_day - args.first_day).days + 1
    if days > MAX_DAYS:
        raise CliFailure(f"the window of {days} days is longer than {MAX_DAYS} days: ask for a shorter one")
    from datetime import datetime

    today = datetime.now(LOCAL_TZ).date()
    if args.first_day > today:
        raise CliFailure(f"the window starts in the future ({args.first_day}): there is nothing measured yet")
    kind = args.out.suffix.lower().lstrip(".")
    if kind not in ("html", "pdf"):
        raise CliFailure(f"--out {str(args.out)!r} must end in .html or .pdf")
    if args.out.exists() and args.out.is_dir():
        raise CliFailure(f"--out {str(args.out)!r} is a folder, not a file")
    return kind


def _run(args: argparse.Namespace) -> int:
    kind = _check(args)

    from camperhub.store.base import StoreError
    from camperhub.workshops.report import ReportError, build_handout, find_pdf_engine, html_to_pdf

    store = open_store_or_fail()
    try:
        known = store.campers()
        if args.camper not in known:
            raise CliFailure(f"unknown camper {args.camper!r}: the store knows {', '.join(sorted(known)) or 'none'}")
        days = (args.last_day - args.first_day).days + 1
        with _progress(days) as advance:
            handout = build_handout(store, args.camper, args.first_day, args.last_day, args.lang, progress=advance)
    except ReportError as exc:
        raise CliFailure(str(exc)) from None
    except StoreError as exc:
        raise CliFailure(f"the store did not answer: {exc}", 1) from None
    finally:
        store.close()
    out: Path = args.out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if kind == "html":
            out.write_text(handout.html, encoding="utf-8")
            print(f"{PROG}: wrote {out} (HTML, {days} days)", file=sys.stderr)
            return 0
        engine = find_pdf_engine()
        if engine is None:
            html_out = out.with_suffix(".html")
            html_out.write_text(handout.html, encoding="utf-8")
            raise CliFailure(f"no PDF engine found (install Debian's chromium): wrote the HTML to {html_out} instead; "
                        "print it to PDF from a browser", 1)
        html_to_pdf(handout.html, out, engine)
    except OSError as exc:
        raise CliFailure(f"cannot write {out}: {exc.strerror or exc}", 1) from None
    except ReportError as exc:
        raise CliFailure(str(exc), 1) from None
    print(f"{PROG}: wrote {out} (PDF, {days} days)", file=sys.stderr)
    return 0


class _progress:
    """A rich progress bar over the days on stderr for long windows; nothing for short ones."""

    def __init__(self, days: int) -> None:
        self.days = days
        self.bar = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        if self.days <= PROGRESS_DAYS:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("reading days"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=False)
        self.bar.start()
        task = self.bar.add_task("days", total=self.days)
        return lambda n: self.bar.advance(task, n)  # type: ignore[union-attr]

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
