"""``GET /fleet``: the fleet staff page (issue 7 part 5). The HTML is a shell; the data come from
``/api/v1/fleet/...`` with the staff member's bearer token.

Why the page itself is public and holds no data: the token is what authorises, and
a browser does not send a bearer token when it loads a page. So the page is the
same for everybody (a sign-in form, an empty table) and ``static/fleet.js`` asks
the staff API with ``Authorization: Bearer`` once signed in.

Where the token is kept, and why: in ``sessionStorage`` of this tab. It is gone when
the tab closes, it is never put in a URL (no history, no server log, no Referer) and
never in a cookie, so a browser never sends it by itself: no cross-site request can
use it (no CSRF) and no other site can read it. What can read sessionStorage is a
script of this origin, and the Content-Security-Policy allows only this origin's
own files (no inline script, no eval, ``connect-src 'self'``), the same policy as the
other pages. A 401 from the API clears it and shows the form again.

Charts: drawn in the browser as inline SVG from ``/api/v1/fleet/{camper}/series``
(battery voltage, current and temperature over 24 h or 7 days). The server-side
``camperhub.workshops.charts.power_chart`` was not reused: its axis starts at zero
and clamps below it, which fits power but not a discharge current (negative) or a
winter temperature; the page also redraws on every refresh without a round trip.
English only (staff); times shown in Europe/Rome.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from camperhub.api.deps import RateLimited
from camperhub.api.pages import i18n
from camperhub.api.pages.router import _csp

#: Seconds between refreshes of the table (and of an open camper's detail).
REFRESH_S = 30

router = APIRouter(tags=["pages"], dependencies=[RateLimited])


@router.get("/fleet", include_in_schema=False, response_model=None)
async def fleet_page() -> Response:
    """The staff page shell: sign-in form, fleet table, a camper's detail (filled by fleet.js)."""
    # the staff page is in English and uses no catalogue texts
    body = i18n.environment("en").get_template("fleet.html").render(refresh_s=REFRESH_S)
    headers = {
        "Cache-Control": "no-cache", "Content-Language": "en", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": _csp(None), "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(body, headers=headers)
