"""Languages of the tenants' page: negotiation (``?lang=``, cookie, Accept-Language) and catalogues.

Why in-memory compilation: the catalogues are kept as ``.po`` text in the
repository (reviewable, no binaries); at first use each is read with Babel and
compiled to a GNU ``.mo`` image in memory, so nothing is written next to the
installed package. A ``.mo`` file that does exist beside its ``.po`` (built by
``pybabel compile``) is used as is.
"""

from __future__ import annotations

import gettext
import io
import re
import math
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo
from functools import lru_cache
from pathlib import Path

import jinja2
from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).parent / "locales"
TEMPLATES_DIR = Path(__file__).parent / "templates"
DOMAIN = "messages"
DEFAULT = "it"
#: The communities served, Italian first; ``zh`` is Simplified Chinese.
LANGUAGES: tuple[str, ...] = ("it", "en", "fr", "ar", "es", "uk", "ro", "sq", "zh")
RTL = frozenset({"ar"})
COOKIE = "lang"
_TAG_RE = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True)
class Language:
    code: str
    autonym: str
    rtl: bool

    @property
    def direction(self) -> str:
        return "rtl" if self.rtl else "ltr"

    @property
    def babel_locale(self) -> Locale:
        return babel_locale(self.code)


@lru_cache(maxsize=None)
def babel_locale(code: str) -> Locale:
    return Locale.parse("zh_Hans" if code == "zh" else code)


def language(code: str) -> Language:
    name = babel_locale(code).get_display_name(babel_locale(code)) or code
    if code == "zh":
        name = "中文"
    return Language(code, name[:1].upper() + name[1:] if code not in ("ar", "zh") else name, code in RTL)


def supported(code: str | None) -> str | None:
    """The supported language of a tag (``fr-CH`` -> ``fr``, ``zh-Hans-CN`` -> ``zh``), else None."""
    if not code or not _TAG_RE.match(code.strip()):
        return None
    primary = re.split(r"[-_]", code.strip())[0].lower()
    return primary if primary in LANGUAGES else None


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an Accept-Language header, best first (q=0 dropped; stable for equal q)."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if tag and q > 0:
            ranked.append((-q, i, tag))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """``?lang=`` first, then the cookie, then the browser's languages, then Italian."""
    for candidate in (query, cookie, *parse_accept_language(accept_language)):
        code = supported(candidate)
        if code is not None:
            return code
    return DEFAULT


def po_path(code: str, domain: str = DOMAIN) -> Path:
    """The catalogue of a language in a domain: ``messages`` (tenants' page), ``workshop`` (kiosk, recaps, handouts)."""
    return LOCALES_DIR / code / "LC_MESSAGES" / f"{domain}.po"


def compile_catalogue(code: str, domain: str = DOMAIN) -> bytes:
    """The ``.mo`` image of a language's ``.po`` (fuzzy entries left out, as msgfmt does)."""
    with po_path(code, domain).open("rb") as fh:
        catalog = read_po(fh, locale=babel_locale(code))
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    return buf.getvalue()


@lru_cache(maxsize=None)
def translations(code: str, domain: str = DOMAIN) -> gettext.GNUTranslations:
    """The compiled catalogue of ``code`` in ``domain`` (a ``.mo`` beside the ``.po`` when present)."""
    if code not in LANGUAGES:
        raise KeyError(f"unsupported language {code!r}")
    po = po_path(code, domain)
    mo = po.with_suffix(".mo")
    data = mo.read_bytes() if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime else compile_catalogue(code, domain)
    return gettext.GNUTranslations(io.BytesIO(data))


def N_(message: str) -> str:
    """Marks a message for extraction; translated where it is shown."""
    return message


#: Where people read times (storage is UTC).
SCREEN_TZ = ZoneInfo("Europe/Rome")


class Words:
    """Translation and local formatting of one language in one catalogue domain, for the pages and
    handouts that show figures (the kiosk, recaps, handouts): ``1.234,5`` in Italian, times in
    Europe/Rome, a dash for a value that is not known (never a fake 0).

    Subclasses set how many decimals a number gets by default (``digits``) and whether
    trailing zeros are dropped (``optional_decimals``: "1,5" rather than "1,50")."""

    dash = "–"
    digits = 0
    optional_decimals = False

    def __init__(self, lang: str, domain: str) -> None:
        self.lang = lang
        self.locale = babel_locale(lang)
        self.tr = translations(lang, domain)

    def _(self, message: str, **kw: object) -> str:
        text = self.tr.gettext(message)
        return text.format(**kw) if kw else text

    def num(self, value: float | None, digits: int | None = None) -> str:
        """A number as the language writes it, rounded to ``digits`` decimals; the dash when unknown."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.dash
        d = self.digits if digits is None else digits
        pattern = "#,##0" + ("." + ("#" if self.optional_decimals else "0") * d if d else "")
        return format_decimal(round(value, d) if d else round(value), format=pattern, locale=self.locale)

    def time(self, moment: datetime) -> str:
        """``HH:mm`` in Europe/Rome."""
        return format_datetime(moment, "HH:mm", tzinfo=SCREEN_TZ, locale=self.locale)

    def day(self, day: date, fmt: str = "full") -> str:
        return format_date(day, fmt, locale=self.locale)


@lru_cache(maxsize=None)
def environment(lang: str, domain: str = DOMAIN) -> jinja2.Environment:
    """The pages' and handouts' Jinja2 environment for one language, its gettext bound to that
    language's catalogue in ``domain`` (one per language and domain, built once)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True, extensions=["jinja2.ext.i18n"],
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_translations(translations(lang, domain), newstyle=True)  # type: ignore[attr-defined]
    return env
