"""``GET /recap/{share_token}``: a workshop session's recap as a page (and printable handout).

Why a page module apart from the router: the route stays thin and the page's
language rule lives with the page. The page is rendered server-side by
:func:`camperhub.workshops.report.render_recap` (template ``recap.html``,
which extends the handout's, so the same page prints as an A4 handout); it has
no script and asks for nothing beyond its own HTML (charts are inline SVG), so
it works offline and on any phone. Languages: Italian and English (the
``workshop`` catalogues), Italian unless ``?lang=`` or the browser asks for
English before Italian.
"""

from __future__ import annotations

from datetime import datetime

from camperhub.api.pages import i18n
from camperhub.store.base import Store
from camperhub.workshops.sessions import Session

LANGS: tuple[str, ...] = ("it", "en")


def negotiate(query: str | None, accept_language: str | None) -> str:
    """``?lang=`` first, then the first of the browser's languages the recap has, then Italian."""
    for candidate in (query, *i18n.parse_accept_language(accept_language)):
        code = i18n.supported(candidate)
        if code in LANGS:
            return code
    return "it"


def render(store: Store, session: Session, now: datetime, lang: str = "it") -> str:
    """The recap page's HTML (blocking: it reads the store; run it in a worker thread)."""
    from camperhub.workshops.report import render_recap

    return render_recap(store, session, now, lang)[0]
