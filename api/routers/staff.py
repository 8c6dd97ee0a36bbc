"""Staff endpoints (bearer token, ARCHITECTURE.md §10): a camper's schedule and its service switch.

``PUT /api/v1/campers/{camper}/schedule`` takes the schedule as JSON (the
:class:`camperhub.schedule.Schedule` model), YAML (the same shape, as in
``firmware-config/demo/schedule.yaml``) or CSV (one row per visit, see
:mod:`camperhub.schedule_io`; the exceptions of the schedule it replaces are
kept), chosen by ``Content-Type``. Problems answer 422 naming the key path
(JSON), or the line and key (YAML) or line and column (CSV).

``PUT /api/v1/campers/{camper}/service`` switches the public service state by
hand (on: public outside a window; off: hidden inside one) until a given time,
at most seven days ahead (a forgotten switch must not publish the stops for
ever); ``DELETE`` gives it back to the schedule and the camper's GPIO switch.
Open location streams get the new view at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from camperhub.api.deps import BroadcasterDep, CamperIdDep, ClockDep, SchedulesDep, StaffDep
from camperhub.api.location import LocationHub
from camperhub.api.timefmt import LOCAL_TZ, iso_local, iso_utc, parse_instant
from camperhub.schedule import OVERRIDE_MAX, Schedule, ServiceOverride
from camperhub.schedule_io import parse_schedule_csv, parse_schedule_yaml
from camperhub.yamlconf import ConfigError

router = APIRouter(prefix="/api/v1", tags=["staff"])

JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
CSV_TYPES = ("text/csv",)
#: A schedule is a few KB; anything much larger is not one.
MAX_BODY = 1 << 20

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token, or not a valid one (see WWW-Authenticate)"},
    403: {"description": "The token's role may not do this"},
    413: {"description": "The body is larger than 1 MiB"},
    415: {"description": "Content-Type is not JSON, YAML or CSV"},
    422: {"description": "The schedule is invalid; `detail` names each problem's key path (JSON) or line (YAML, CSV)"},
}


class ScheduleProblems(Exception):
    """422: what is wrong with an uploaded schedule, each problem with where it is."""

    def __init__(self, detail: list[str], errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(detail))
        self.detail = "; ".join(detail)
        self.errors = errors

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": self.detail, "errors": self.errors}, status_code=422)


def _problems(detail: list[str], errors: list[dict[str, Any]]) -> ScheduleProblems:
    return ScheduleProblems(detail, errors)


def _from_json(body: bytes) -> Schedule:
    try:
        return Schedule.model_validate_json(body)
    except ValidationError as exc:
        detail, errors = [], []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            ctx = err.get("ctx") or {}
            msg = str(ctx["error"]) if err.get("type") == "value_error" and "error" in ctx else err.get("msg", "invalid")
            detail.append(f"{loc}: {msg}" if loc else msg)
            errors.append({"loc": list(err.get("loc", ())), "msg": msg, "type": err.get("type")})
        raise _problems(detail, errors) from None


def _config_problems(exc: ConfigError) -> ScheduleProblems:
    return _problems(
        [str(i) for i in exc.issues], [{"line": i.line, "key": i.key, "msg": i.message} for i in exc.issues]
    )


def _parse(camper: str, content_type: str, body: bytes, current: Schedule | None) -> Schedule:
    media = content_type.split(";")[0].strip().lower()
    if media in JSON_TYPES or media.endswith("+json"):
        return _from_json(body)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, detail=f"the body is not UTF-8 text: {exc}") from None
    try:
        if media in YAML_TYPES:
            return parse_schedule_yaml(text, "schedule.yaml")
        if media in CSV_TYPES:
            return parse_schedule_csv(
                text, camper, "schedule.csv", exceptions=current.exceptions if current is not None else (),
                timezone=current.timezone if current is not None else "Europe/Rome",
            )
    except ConfigError as exc:
        raise _config_problems(exc) from None
    raise HTTPException(
        415, detail=f"Content-Type {media or '(none)'!r} is not a schedule: use application/json, application/yaml or text/csv"
    )


@router.put(
    "/campers/{camper}/schedule", summary="Replace the camper's schedule (staff)", responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": Schedule.model_json_schema()},
                "application/yaml": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def put_schedule(
    token: StaffDep,
    request: Request,
    camper: CamperIdDep,
    schedules: SchedulesDep,
    broadcaster: BroadcasterDep,
    content_type: Annotated[str, Header(description="application/json, application/yaml or text/csv")] = "application/json",
) -> JSONResponse:
    """The whole schedule is replaced in one transaction (readers see the old or the new one) and
    kept across restarts. The camper in the path must be the body's ``camper`` (CSV: taken from
    the path; the exceptions of the replaced schedule are kept)."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, detail=f"the body has {len(body)} bytes; a schedule is at most {MAX_BODY}")
    current = await run_in_threadpool(schedules.get, camper)
    try:
        new = _parse(camper, content_type, body, current)
        if new.camper != camper:
            raise _problems(
                [f"camper: the body is the schedule of {new.camper!r}, the path names {camper!r}"],
                [{"loc": ["camper"], "msg": "differs from the camper in the path", "type": "value_error"}],
            )
        try:
            await run_in_threadpool(schedules.save, new)
        except ValidationError as exc:  # cross-field checks a loader deferred (they run there too: belt and braces)
            raise _problems([str(e.get("msg")) for e in exc.errors()], [{"loc": [], "msg": str(e.get("msg"))} for e in exc.errors()]) from None
    except ScheduleProblems as problems:
        return problems.response()
    LocationHub.of(broadcaster).reload(camper)
    return JSONResponse(
        {
            "camper": camper, "saved_by": token.name, "stops": len(new.stops), "visits": len(new.visits),
            "exceptions": len(new.exceptions), "schedule": new.model_dump(mode="json", exclude_none=True),
        },
        headers={"Cache-Control": "no-store"},
    )


# -- the staff service switch -------------------------------------------------------------------


class ServiceSwitch(BaseModel):
    """Body of ``PUT .../service``."""

    model_config = ConfigDict(extra="forbid")

    in_service: bool = Field(description="true: public although no window runs; false: hidden although one does")
    until: str | None = Field(
        default=None, description="ISO 8601 with offset, or a Europe/Rome date (its midnight); default the end of today in Europe/Rome"
    )
    note: str | None = Field(default=None, max_length=200, description="Why, for the other staff")


def _switch_view(camper: str, o: ServiceOverride, now: datetime) -> dict[str, Any]:
    return {
        "camper": camper, "in_service": o.in_service, "active": o.active(now), "until_utc": iso_utc(o.until_utc),
        "until_local_time": iso_local(o.until_utc), "set_by": o.set_by, "set_at_utc": iso_utc(o.set_at_utc), "note": o.note,
    }


@router.put(
    "/campers/{camper}/service", summary="Switch the public service state by hand until a time (staff)",
    responses={k: v for k, v in _ERRORS.items() if k in (401, 403, 422)},
)
async def put_service(
    token: StaffDep, camper: CamperIdDep, body: ServiceSwitch, schedules: SchedulesDep, broadcaster: BroadcasterDep, clock: ClockDep,
) -> JSONResponse:
    """On: the public sees the camper at a stop or on the way although no window runs (an extra
    stop, a late visit); off: "not in service" although a window runs (a breakdown). Lasts until
    ``until`` (at most 7 days; default the end of today), replaces an earlier switch."""
    now = clock()
    if body.until is None:
        local = now.astimezone(LOCAL_TZ)
        until = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), LOCAL_TZ)
    else:
        try:
            until = parse_instant(body.until, "until")
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None
    if until <= now:
        raise HTTPException(422, detail=f"until: {iso_utc(until)} is not in the future")
    if until - now > OVERRIDE_MAX:
        raise HTTPException(422, detail=f"until: a staff switch lasts at most {OVERRIDE_MAX.days} days")
    override = ServiceOverride(in_service=body.in_service, until_utc=until, set_by=token.name, set_at_utc=now, note=body.note)
    await run_in_threadpool(schedules.set_override, camper, override)
    LocationHub.of(broadcaster).reload(camper)
    return JSONResponse(_switch_view(camper, override, now), headers={"Cache-Control": "no-store"})


@router.get(
    "/campers/{camper}/service", summary="The staff service switch in force, if any (staff)",
    responses={401: _ERRORS[401], 404: {"description": "No staff switch is set for this camper"}},
)
async def get_service(token: StaffDep, camper: CamperIdDep, schedules: SchedulesDep, clock: ClockDep) -> JSONResponse:
    override = await run_in_threadpool(schedules.override, camper)
    if override is None:
        raise HTTPException(404, detail=f"camper {camper!r} has no staff service switch: the schedule and its GPIO switch decide")
    return JSONResponse(_switch_view(camper, override, clock()), headers={"Cache-Control": "no-store"})


@router.delete("/campers/{camper}/service", summary="Give the service state back to the schedule and the GPIO switch (staff)",
               responses={401: _ERRORS[401], 404: {"description": "No staff switch is set for this camper"}}, status_code=204)
async def delete_service(token: StaffDep, camper: CamperIdDep, schedules: SchedulesDep, broadcaster: BroadcasterDep) -> None:
    if not await run_in_threadpool(schedules.clear_override, camper):
        raise HTTPException(404, detail=f"camper {camper!r} has no staff service switch to clear")
    LocationHub.of(broadcaster).reload(camper)
