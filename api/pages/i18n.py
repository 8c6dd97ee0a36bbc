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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).parent / "locales"
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


def po_path(code: str) -> Path:
    return LOCALES_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


def compile_catalogue(code: str) -> bytes:
    """The ``.mo`` image of a language's ``.po`` (fuzzy entries left out, as msgfmt does)."""
    with po_path(code).open("rb") as fh:
        catalog = read_po(fh, locale=babel_locale(code))
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    return buf.getvalue()


@lru_cache(maxsize=None)
def translations(code: str) -> gettext.GNUTranslations:
    """The compiled catalogue of ``code`` (a ``.mo`` beside the ``.po`` when present)."""
    if code not in LANGUAGES:
        raise KeyError(f"unsupported language {code!r}")
    mo = po_path(code).with_suffix(".mo")
    data = mo.read_bytes() if mo.exists() and mo.stat().st_mtime >= po_path(code).stat().st_mtime else compile_catalogue(code)
    return gettext.GNUTranslations(io.BytesIO(data))


def N_(message: str) -> str:
    """Marks a message for extraction; translated where it is shown."""
    return message
