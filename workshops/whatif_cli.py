"""``camperhub workshop whatif``: replay a real period with another panel, battery or load.

For workshop leaders: Italian by default (``--lang en`` for English), texts
from the ``workshop`` catalogues (api/pages/locales/*/LC_MESSAGES/workshop.po);
``--json`` gives the same figures for scripts, language-independent. The store
is chosen as for the other verbs (``CAMPERHUB_STORE``, ``CAMPERHUB_SQLITE_PATH``,
``CAMPERHUB_INFLUX_*``).

Kept light at import time (argparse only): :mod:`camperhub.cli` builds every
parser at start-up; pandas and pvlib are imported when the verb runs.

Exit status: 0 done; 2 a question that cannot be answered as asked (bad dates,
an unknown camper, a period without data, a bad option); 1 the store did not
answer; 78 the store settings are wrong.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from camperhub.workshops.cli_support import CliFailure, open_store_or_fail, report

PROG = "camperhub workshop whatif"
LANGS = ("it", "en")


def _day(text: str) -> date:
    """A YYYY-MM-DD argument, with a message that says what was expected."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _number(low: float, high: float, unit: str):  # type: ignore[no-untyped-def]
    """An argparse type for a number inside [low, high] (units named in the message)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value:g} {unit} is outside {low:g}..{high:g} {unit}")
        return value

    return parse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``whatif`` verb (its arguments, and ``func`` that runs it)."""
    s = sub.add_parser(
        "whatif",
        help="replay a real period with another panel, battery or load",
        description=(
            "Replay the measured load and sun of a camper over whole Europe/Rome days with a changed "
            "system, side by side with the system as it is: self-sufficiency, hours with the battery empty, "
            "energy from shore power, solar energy wasted."
        ),
        epilog=(
            "loads: induction-hob (2000 W, 15:00-16:00 Mon-Fri), kettle (2000 W, 10:30-10:33 Mon-Fri), "
            "fridge (18 W average, always), laptop (30 W, 9-18 Mon-Fri), led-lamp (10 W, 9-18 Mon-Fri), "
            "or W (always) or W@HH:MM-HH:MM (every day; add /mon-fri for Monday to Friday). Example: camperhub workshop whatif --camper varese-1 "
            "--from 2026-06-01 --to 2026-06-30 --add-panel-w 200 --add-load induction-hob"
        ),
    )
    s.add_argument("--camper", required=True, help="camper id, e.g. varese-1")
    s.add_argument("--from", dest="first_day", type=_day, required=True, metavar="DATE", help="first day (YYYY-MM-DD, Europe/Rome)")
    s.add_argument("--to", dest="last_day", type=_day, required=True, metavar="DATE", help="last day, included")
    s.add_argument("--panel-w", type=_number(1, 100_000, "Wp"), default=None, metavar="WP", help="panels on the van now (default 400 Wp)")
    s.add_argument("--add-panel-w", type=_number(-100_000, 100_000, "Wp"), default=0.0, metavar="WP", help="panel peak power added (negative: removed)")
    bat = s.add_mutually_exclusive_group()
    bat.add_argument("--battery-ah", type=_number(1, 100_000, "Ah"), metavar="AH", help="scenario battery, amp-hours at --battery-v")
    bat.add_argument("--battery-kwh", type=_number(0.01, 1000, "kWh"), metavar="KWH", help="scenario battery, nameplate kWh")
    s.add_argument("--battery-v", type=_number(1, 1000, "V"), default=12.8, metavar="V", help="nominal voltage for --battery-ah (default 12.8)")
    s.add_argument("--usable-pct", type=_number(1, 100, "%"), default=90.0, metavar="PCT", help="usable share of the battery (default 90)")
    s.add_argument("--inverter-w", type=_number(0, 100_000, "W"), default=None, metavar="W", help="most the battery side can feed the loads (default 3000)")
    s.add_argument("--add-load", action="append", default=[], metavar="LOAD", help="an added load (repeatable); see below")
    s.add_argument("--model-sun", action="store_true", help="use the modelled sun (typical year at Varese) instead of the measured PV")
    s.add_argument("--json", action="store_true", help="print the figures as JSON")
    s.add_argument("--lang", choices=LANGS, default="it", help="language of the text output (default it)")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the verb; every failure is a message on stderr and a non-zero status."""
    from camperhub.api.pages import i18n

    t = i18n.translations(args.lang, "workshop")
    try:
        result, ctx = _compute(args, t.gettext)
    except CliFailure as exc:
        return report(PROG, exc)
    if args.json:
        print(_to_json(result, ctx))
    else:
        print(render(result, ctx, args.lang), end="")
    return 0


def _compute(args: argparse.Namespace, _: Any) -> tuple[Any, dict[str, Any]]:
    """Validate the question, read the store, replay; raise CliFailure with a translated message."""
    from datetime import UTC, datetime, timedelta


    from camperhub.contract import is_valid_camper_id
    from camperhub.store.base import StoreError
    from camperhub.workshops import whatif as w
    from camperhub.workshops.analysis import day_window

    if not is_valid_camper_id(args.camper):
        raise CliFailure(_("camper id {camper} is not valid (lower-case letters, digits and -, at most 32)").format(camper=repr(args.camper)))
    if args.last_day < args.first_day:
        raise CliFailure(_("the period ends ({last}) before it starts ({first})").format(last=args.last_day, first=args.first_day))
    days = (args.last_day - args.first_day).days + 1
    if days > w.MAX_DAYS:
        raise CliFailure(_("the period of {days} days is longer than {max} days: ask for a shorter one").format(days=days, max=w.MAX_DAYS))
    start, _unused = day_window(args.first_day)
    _unused, end = day_window(args.last_day)
    now = datetime.now(UTC)
    if start >= now:
        raise CliFailure(_("the period starts in the future ({first}): there is nothing measured yet").format(first=args.first_day))
    end = min(end, now.replace(second=0, microsecond=0) + timedelta(minutes=1))
    try:
        loads = tuple(w.parse_appliance(text) for text in args.add_load)
    except w.WhatIfError:
        bad = next(text for text in args.add_load if not _parses(w, text))
        raise CliFailure(
            _("unknown load {load}: use one of {names}, or W, or W@HH:MM-HH:MM[/mon-fri] (e.g. 300@09:00-12:00)").format(
                load=repr(bad), names=", ".join(w.APPLIANCES)
            )
        ) from None
    panel_w = args.panel_w if args.panel_w is not None else w.CAMPER.pv_kwp * 1000.0
    if panel_w + args.add_panel_w < 0:
        raise CliFailure(_("cannot remove {removed} Wp of panels from a {panel} Wp roof").format(removed=f"{-args.add_panel_w:g}", panel=f"{panel_w:g}"))
    try:
        usable = args.usable_pct / 100.0
        system = w.System(
            pv_kwp=panel_w / 1000.0,
            battery=w.Battery(w.CAMPER.battery.capacity_kwh, usable_frac=usable),
            mppt_max_w=w.CAMPER.mppt_max_w * panel_w / (w.CAMPER.pv_kwp * 1000.0),
            max_discharge_w=args.inverter_w if args.inverter_w is not None else w.CAMPER.max_discharge_w,
        )
        battery = None
        if args.battery_ah is not None:
            battery = w.Battery.from_ah(args.battery_ah, args.battery_v, usable_frac=usable)
        elif args.battery_kwh is not None:
            battery = w.Battery(args.battery_kwh, usable_frac=usable)
        scenario = w.Scenario(add_pv_w=args.add_panel_w, battery=battery, loads=loads)
    except w.WhatIfError as exc:
        raise CliFailure(str(exc)) from None

    store = open_store_or_fail()
    try:
        known = store.campers()
        if args.camper not in known:
            raise CliFailure(
                _("unknown camper {camper}: the store knows {known}").format(
                    camper=repr(args.camper), known=", ".join(sorted(known)) or "-"
                )
            )
        result = w.whatif_from_store(store, args.camper, start, end, scenario, system, model_sun=args.model_sun)
    except w.NoDataError:
        raise CliFailure(
            _("camper {camper} has no readings from {first} to {last}: choose days with data").format(
                camper=args.camper, first=args.first_day, last=args.last_day
            )
        ) from None
    except w.WhatIfError as exc:
        raise CliFailure(str(exc)) from None
    except StoreError as exc:
        raise CliFailure(_("the store did not answer: {error}").format(error=exc), 1) from None
    finally:
        store.close()
    ctx = {"camper": args.camper, "first_day": args.first_day, "last_day": args.last_day, "add_panel_w": args.add_panel_w}
    return result, ctx


def _parses(w: Any, text: str) -> bool:
    try:
        w.parse_appliance(text)
    except w.WhatIfError:
        return False
    return True


def _to_json(result: Any, ctx: dict[str, Any]) -> str:
    """The result as JSON: UTC instants in ISO 8601, energies in Wh, shares in %."""
    import dataclasses
    import json

    body = dataclasses.asdict(result)
    body["start"], body["end"] = result.start.isoformat(), result.end.isoformat()
    body["added_loads"] = list(result.added_loads)
    out = {"camper": ctx["camper"], "first_day": ctx["first_day"].isoformat(), "last_day": ctx["last_day"].isoformat(), **body}
    return json.dumps(out, indent=2, ensure_ascii=False)


def N_(message: str) -> str:
    """Marks a message for extraction (as ``i18n.N_``, without importing Babel here)."""
    return message


#: Names of the appliances on screen (msgids; translated when shown).
_APPLIANCE_NAMES = {
    "induction-hob": N_("induction hob"),
    "kettle": N_("kettle"),
    "fridge": N_("second fridge"),
    "laptop": N_("laptop"),
    "led-lamp": N_("LED lamp"),
}


def render(result: Any, ctx: dict[str, Any], lang: str = "it") -> str:
    """The side-by-side table for the workshop leader, in ``lang``."""
    from babel.dates import format_date
    from babel.numbers import format_decimal

    from camperhub.api.pages import i18n

    _ = i18n.translations(lang, "workshop").gettext
    loc = i18n.babel_locale(lang)

    def num(x: float | None, digits: int = 0) -> str:
        if x is None:
            return "-"
        return format_decimal(round(x, digits), format="#,##0" + ("." + "0" * digits if digits else ""), locale=loc)

    def kwh(wh: float) -> str:
        return f"{num(wh / 1000.0, 1)} kWh"

    b, s = result.baseline, result.scenario
    if result.pv_source == "model":
        sun = _("modelled (a typical year at Varese)")
    elif result.pv_source == "measured+model":
        sun = _("measured; {minutes} minutes without readings taken from the model").format(minutes=num(result.minutes_pv_modelled))
    else:
        sun = _("measured")
    added = ", ".join(_(_APPLIANCE_NAMES[k]) if k in _APPLIANCE_NAMES else k for k in result.added_loads) or _("none")
    rows = [
        ("", _("As it is"), _("With the change")),
        (_("Panels"), f"{num(b.pv_kwp * 1000)} Wp", f"{num(s.pv_kwp * 1000)} Wp"),
        (_("Battery"), f"{num(b.battery_kwh, 2)} kWh", f"{num(s.battery_kwh, 2)} kWh"),
        (_("Added loads"), _("none"), added),
        (_("Solar energy used"), kwh(b.pv_used_wh), kwh(s.pv_used_wh)),
        (_("Consumption"), kwh(b.load_wh), kwh(s.load_wh)),
        (_("Self-sufficiency"), f"{num(b.self_sufficiency_pct)} %", f"{num(s.self_sufficiency_pct)} %"),
        (_("Hours with the battery empty"), f"{num(b.empty_hours, 1)} h", f"{num(s.empty_hours, 1)} h"),
        (_("From shore power"), kwh(b.shore_wh), kwh(s.shore_wh)),
        (_("Solar energy wasted"), kwh(b.curtailed_wh), kwh(s.curtailed_wh)),
        (_("Lowest battery level"), f"{num(b.soc_min_pct)} %", f"{num(s.soc_min_pct)} %"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    lines = [
        _("What if? Camper {camper}, {first} to {last}").format(
            camper=ctx["camper"],
            first=format_date(ctx["first_day"], "d MMM y", locale=loc),
            last=format_date(ctx["last_day"], "d MMM y", locale=loc),
        ),
        _("Data: {pct} of the minutes; sun: {sun}").format(pct=f"{num(result.coverage_pct)} %", sun=sun),
        (_("Battery at the start: {soc} % (measured)") if result.soc_start_source == "measured" else _("Battery at the start: {soc} % (assumed: no reading)")).format(
            soc=num(b.soc_start_pct)
        ),
    ]
    if result.minutes_pv_raised:
        lines.append(
            _("While the battery was full ({minutes} minutes), the sun it did not take is estimated from the model.").format(
                minutes=num(result.minutes_pv_raised)
            )
        )
    lines.append("")
    lines += [f"{a:<{w0}}  {c1:>{w1}}  {c2:>{w2}}" for a, c1, c2 in rows]
    if result.soc_start_source != "measured":  # without SoC readings the full-battery minutes are unknown
        lines += ["", _("Measured sun is what the charger took: while the battery was full, the sun offered more.")]
    return "\n".join(lines) + "\n"
