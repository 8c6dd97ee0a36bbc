"""InfluxDB backend of the store (ARCHITECTURE.md §5), over the v1-compatible HTTP API only.

Only ``/ping``, ``/write`` (line protocol) and ``/query`` (InfluxQL) are used,
so the same code serves InfluxDB 1.x natively and 2.x/3.x through their
compatibility endpoints. influxdb-client's ``write_api``/``query_api`` are not
used: they speak ``/api/v2`` and answer 404 on 1.x. Lines are written by
:mod:`lineprotocol`, kept byte-identical to influxdb-client's ``Point`` by a
property test (Point's own per-point cost would cap the ingest).

Mapping: measurement = stream, tag ``camper``, fields = the sample's fields
(``seq`` included), time = ``ts`` in ms. A point is identified by
measurement + tags + time, so a replayed sample overwrites itself.

Rollups and raw retention (camperhub/store/influx_rollup.py): per-minute
energy rollups go to measurement ``energy_1m`` (per-hour ones, computed from
them, to ``energy_1h``) of the database ``<database>_1m``, so the raw database may get a retention policy (1.x) or
bucket retention (2.x/3.x) while the rollups stay forever; the minutes still
to fold are kept in a local journal file (influx_journal.py). The seq
accounting of the completeness report (:meth:`InfluxStore.seq_summary`) is
in influx_seqs.py.

Field types are fixed by the contract models, not by the Python value: InfluxDB
refuses a field whose type changes (``battery_soc_pct`` written as integer 70
after float 70.5 is a "field type conflict"), and refuses it as a *partial*
write, the rest of the batch being stored. So every batch is coerced and
checked before anything is sent, which keeps writes all or none.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import secrets
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import httpx
import pandas as pd

from camperhub.contract import MIN_TS_MS, STORAGE_KINDS, Stream, is_valid_camper_id
from camperhub.settings import StoreSettings
from camperhub.store import base, influx_seqs, rollup
from camperhub.store.base import (
    AGGREGATES,
    Aggregate,
    DeadLetter,
    StoredSample,
    StoreRejected,
    StoreUnavailable,
    bounded_window,
    empty_frame,
)
from camperhub.store.influx_rollup import InfluxRollups
from camperhub.store.influxql import FIELD_KINDS, quote_ident, quote_literal
from camperhub.store.influxql import ns as _ns
from camperhub.store.lineprotocol import ESCAPE_STRING, encode_line

log = logging.getLogger(__name__)

#: Rows per piece of a chunked /query answer (see InfluxStore._query).
CHUNK_ROWS = 10_000
#: Most rows of a raw series; patching either this or base.MAX_ROWS lowers the bound (tests).
MAX_ROWS = base.MAX_ROWS
DEAD_LETTER_MEASUREMENT = "dead_letter"
_CREDENTIALS_HINT = "check CAMPERHUB_INFLUX_URL / CAMPERHUB_INFLUX_TOKEN"


def _column(values: list[Any]) -> Any:
    """Numbers (and all-null columns) as float64; text and booleans as object with NaN for missing,
    so a column's dtype does not depend on whether a value happens to be missing."""
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return pd.array([math.nan if v is None else float(v) for v in values], dtype="float64")
    return pd.Series([math.nan if v is None else v for v in values], dtype="object").to_numpy()


def _encode_sample(s: StoredSample) -> str:
    """One sample as a line, checked against the contract (the ingest's hot path).

    Contract field names, stream names and camper ids need no escaping
    ([a-z0-9_-]), so this is the line ``Point`` would write, built in one pass;
    anything outside the contract is refused rather than stored.
    """
    stream = s.stream if type(s.stream) is Stream else Stream(s.stream)
    if s.camper not in _VALID_CAMPERS:
        if not is_valid_camper_id(s.camper):
            raise StoreRejected(f"camper id {s.camper!r} is not valid")
        _VALID_CAMPERS.add(s.camper)
    if s.ts_ms < MIN_TS_MS:
        raise StoreRejected(f"{stream.value} sample of {s.camper}: ts {s.ts_ms} is before 2020")
    kinds = FIELD_KINDS[stream]
    parts = []
    for name in sorted(s.fields):
        value = s.fields[name]
        if value is None:
            continue
        kind = kinds.get(name)
        if kind is float and type(value) is float and math.isfinite(value):  # the common case, first
            text = repr(value)
            parts.append(f"{name}={text[:-2] if text.endswith('.0') else text}")
            continue
        parts.append(_encode_field(stream, s, name, kind, value))
    if not parts:
        raise StoreRejected(f"{stream.value} sample of {s.camper} at {s.ts_ms} has no field")
    return f"{stream.value},camper={s.camper} {','.join(parts)} {int(s.ts_ms)}"


#: Camper ids already checked (a fleet has a few hundred; the regex per sample was measurable).
_VALID_CAMPERS: set[str] = set()


def _encode_field(stream: Stream, s: StoredSample, name: str, kind: type | None, value: Any) -> str:
    """Every case but a finite float for a float field: checked, with a message that names the field."""

    def refuse(why: str) -> StoreRejected:
        return StoreRejected(f"{stream.value} sample of {s.camper} at {s.ts_ms}: field {name}{why}")

    if kind is None:
        raise refuse(" is not in the contract")
    if kind is str:
        if not isinstance(value, str):
            raise refuse(f": {value!r} is not text")
        return f'{name}="{str(value).translate(ESCAPE_STRING)}"'
    if kind is bool:
        if not isinstance(value, bool):
            raise refuse(f": {value!r} is not true/false")
        return f"{name}={'true' if value else 'false'}"
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float)):
        raise refuse(f": {value!r} is not a number")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise refuse(f": {value!r} is not a whole number")
        return f"{name}={int(value)}i"
    v = float(value)
    if not math.isfinite(v):
        raise refuse(f": {value!r} is not a finite number")
    text = repr(v)
    return f"{name}={text[:-2] if text.endswith('.0') else text}"


class InfluxStore:
    """The :class:`~camperhub.store.base.Store` on InfluxDB (1.x native, 2.x/3.x via v1 compatibility).

    Credentials: ``user:pass`` in the URL (or ``?u=&p=``) go out as HTTP basic
    auth (1.x does not read them from a form body); a ``token`` goes out as
    ``Authorization: Token <token>`` (2.x/3.x, and 1.8+). Neither is ever
    logged nor shown in ``repr``.
    """

    def __init__(
        self,
        url: str,
        database: str = "camperhub",
        token: str | None = None,
        timeout_s: float = 10.0,
        create_database: bool = True,
        journal_path: Path | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("InfluxDB URL must look like http://user:pass@host:8086")
        query = parse_qs(parts.query)
        user = unquote(parts.username) if parts.username is not None else query.get("u", [None])[0]
        password = unquote(parts.password or "") if parts.username is not None else query.get("p", [""])[0]
        if user is not None and token is not None:
            raise ValueError("give InfluxDB credentials either in the URL (user:pass) or as a token, not both")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        self.url_without_credentials = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.database = database
        self.create_database = create_database
        self._client = httpx.Client(
            base_url=self.url_without_credentials,
            auth=None if user is None else httpx.BasicAuth(user, password),
            headers={} if token is None else {"Authorization": f"Token {token}"},
            timeout=httpx.Timeout(timeout_s),
        )
        self._databases_checked: set[str] = set()
        self._field_types: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._dead_letter_ns = secrets.randbelow(1_000_000)  # sub-ms offsets keep same-ms letters apart
        self._rollups = InfluxRollups(self, journal_path)

    @classmethod
    def from_settings(cls, s: StoreSettings) -> InfluxStore:
        if not s.influx_url:
            raise ValueError("CAMPERHUB_INFLUX_URL is not set")
        token = s.influx_token.get_secret_value() if s.influx_token is not None else None
        return cls(s.influx_url, database=s.influx_db, token=token, timeout_s=s.influx_timeout_s, journal_path=s.rollup_journal)

    def __repr__(self) -> str:
        return f"InfluxStore({self.url_without_credentials!r}, database={self.database!r})"

    def __enter__(self) -> InfluxStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Store interface ---------------------------------------------

    def ping(self) -> None:
        """GET /ping: 204 from 1.x/2.x (200 from 3.x); anything else is StoreUnavailable."""
        status, text = self._send("GET", "/ping")
        if status not in (200, 204):
            raise StoreUnavailable(f"InfluxDB at {self.url_without_credentials} answered /ping with {status}: {text}")

    def write(self, samples: Sequence[StoredSample]) -> None:
        """All or none: every sample is checked before anything is sent (InfluxDB itself
        would store the good points of a batch and drop the rest). Energy minutes are
        marked dirty in the rollup journal before the /write and again after it
        (influx_journal.py says why both)."""
        lines = [_encode_sample(s) for s in samples]
        minutes = self._rollups.minutes_of(samples)
        self._rollups.journal.mark(minutes)
        self._write_lines(lines, "ms")
        self._rollups.journal.mark(minutes)

    def latest(self, camper: str, stream: Stream) -> StoredSample | None:
        stream = Stream(stream)
        q = f"SELECT * FROM {quote_ident(stream.value)} WHERE \"camper\" = {quote_literal(camper)} ORDER BY time DESC LIMIT 1"
        series = self._select(q)
        if not series or not series[0].get("values"):
            return None
        columns, row = series[0]["columns"], series[0]["values"][0]
        raw = {c: v for c, v in zip(columns[1:], row[1:]) if v is not None and c != "camper"}
        return StoredSample(camper, stream, int(row[0]), self._decode(stream, raw))

    def series(
        self,
        camper: str,
        stream: Stream,
        fields: Sequence[str],
        start: datetime,
        end: datetime | None = None,
        every: timedelta | None = None,
        aggregate: Aggregate = "mean",
    ) -> pd.DataFrame:
        """See Store.series. Numeric columns (counts too) are float64; text and bool columns are object."""
        stream = Stream(stream)
        start, end = bounded_window(start, end)
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate {aggregate!r} is not one of {AGGREGATES}")
        if every is not None and (every < timedelta(seconds=1) or every % timedelta(seconds=1)):
            raise ValueError(f"every must be a whole number of seconds >= 1, got {every}")
        wanted = list(dict.fromkeys(fields))
        unknown = [f for f in wanted if f not in FIELD_KINDS[stream]]
        if unknown:
            raise StoreRejected(f"{', '.join(unknown)}: not a field of {stream.value} in the contract")
        if not wanted:
            return empty_frame(fields)
        if every is None:
            rows = self._raw_rows(camper, stream, wanted, start, end, None, aggregate)
        else:
            for f in wanted:
                kind = STORAGE_KINDS[stream][f]
                if not rollup.defined(kind, aggregate):  # what InfluxDB refuses on raw, refused on rollups too
                    raise StoreRejected(f"InfluxDB cannot compute {aggregate} of {kind} field {f!r}: mean/min/max/sum need numeric fields")
            segments = [rollup.Segment(start, end)]
            if rollup.served(stream, every):
                minutes, hours = self._rollups.horizon(camper, datetime.now(UTC), hours=rollup.hour_served(every))
                segments = rollup.split_window(start, end, every, minutes, hours)
            rows = []
            for seg in segments:
                if seg.from_rollups:
                    tier = rollup.HOUR_ROLLUP_NAME if seg.source == rollup.HOUR_TIER else rollup.ROLLUP_NAME
                    rows += self._rollups.buckets(camper, wanted, seg.start, seg.end, every, aggregate, tier)
                else:
                    rows += self._raw_rows(camper, stream, wanted, seg.start, seg.end, every, aggregate)
        if not rows:
            return empty_frame(fields)
        index = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], unit="ms", utc=True), name="time")
        data = {f: _column([r[i] for r in rows]) for i, f in enumerate(wanted, start=1)}
        frame = pd.DataFrame(data, index=index)[list(fields)]
        # pandas would infer a str dtype for text; text and bool stay object (base.py)
        return frame.astype({f: object for f, col in data.items() if col.dtype == object})

    def _raw_rows(
        self, camper: str, stream: Stream, wanted: list[str], start: datetime, end: datetime, every: timedelta | None, aggregate: str
    ) -> list[list[Any]]:
        """[time ms, one value per field] of raw samples (every=None) or per interval."""
        where = f"\"camper\" = {quote_literal(camper)} AND time >= {_ns(start)} AND time < {_ns(end)}"
        source = quote_ident(stream.value)
        max_rows = min(MAX_ROWS, base.MAX_ROWS)
        if every is None:
            selected = ", ".join(quote_ident(f) for f in wanted)
            q = f"SELECT {selected} FROM {source} WHERE {where} ORDER BY time ASC LIMIT {max_rows + 1}"
        else:
            fn = aggregate.upper()
            selected = ", ".join(f"{fn}({quote_ident(f)}) AS {quote_ident(f)}" for f in wanted)
            q = f"SELECT {selected} FROM {source} WHERE {where} GROUP BY time({every // timedelta(seconds=1)}s) fill(none)"
        try:
            series = self._select(q)
        except StoreRejected as exc:
            if "unsupported" not in str(exc):  # 1.x: "unsupported mean iterator type: *query.string..."
                raise
            raise StoreRejected(f"InfluxDB cannot compute {aggregate} of {wanted} in {stream.value}: mean/min/max/sum need numeric fields ({exc})") from exc
        rows = series[0].get("values", []) if series else []
        if every is None and len(rows) > max_rows:
            raise StoreRejected(f"more than {max_rows} raw rows in the window: ask for an aggregate interval (every=...)")
        position = {c: i for i, c in enumerate(series[0]["columns"])} if rows else {}
        return [[r[0], *(r[position[f]] if f in position else None for f in wanted)] for r in rows]

    def seq_summary(self, camper: str, stream: Stream, edges: Sequence[datetime]) -> base.SeqSummary:
        """See Store.seq_summary and camperhub/store/influx_seqs.py (the server walks the samples;
        only counts and breaks come back)."""
        return influx_seqs.seq_summary(self, camper, Stream(stream), base.check_edges(edges))

    def campers(self) -> list[str]:
        """Campers of every stream and of the rollups (a camper whose raw was pruned keeps its history)."""
        streams = ", ".join(quote_ident(s.value) for s in Stream)
        series = self._select(f'SHOW TAG VALUES FROM {streams} WITH KEY = "camper"')
        return sorted({row[1] for s in series for row in s.get("values", [])} | set(self._rollups.campers()))

    def rollup(self, now: datetime | None = None) -> int:
        """See Store.rollup and camperhub/store/influx_rollup.py."""
        return self._rollups.rollup(now)

    def prune_raw(self, older_than: datetime) -> int:
        """See Store.prune_raw and camperhub/store/influx_rollup.py."""
        return self._rollups.prune_raw(older_than)

    def prune_positions(self, older_than: datetime) -> int:
        """See Store.prune_positions and camperhub/store/influx_rollup.py (``DELETE FROM "position"``)."""
        return self._rollups.prune_positions(older_than)

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Payloads as base64 (InfluxDB strings must be valid text); time = received_ms plus a
        distinct sub-millisecond offset, so letters of the same ms do not overwrite each other
        and received_ms still reads back exactly."""
        lines = []
        for letter in letters:
            with self._lock:
                self._dead_letter_ns = (self._dead_letter_ns + 1) % 1_000_000
                t_ns = int(letter.received_ms) * 1_000_000 + self._dead_letter_ns
            fields = {"topic": letter.topic, "reason": letter.reason, "payload": base64.b64encode(letter.payload).decode("ascii")}
            lines.append(encode_line(DEAD_LETTER_MEASUREMENT, {"camper": letter.camper}, fields, t_ns))
        self._write_lines(lines, "ns")

    def dead_letters(self, since: datetime | None = None, limit: int = 100) -> list[DeadLetter]:
        if limit <= 0:
            return []
        where = ""
        if since is not None:
            if since.tzinfo is None:
                raise ValueError("since must be timezone-aware (UTC in storage)")
            since_ms = -(-_ns(since) // 1_000_000)  # received_ms >= since, rounded up to the ms
            where = f" WHERE time >= {since_ms * 1_000_000}"
        q = f"SELECT * FROM {quote_ident(DEAD_LETTER_MEASUREMENT)}{where} ORDER BY time DESC LIMIT {min(limit, MAX_ROWS)}"
        series = self._select(q, epoch="ns")
        if not series:
            return []
        columns = series[0]["columns"]
        out = []
        for row in series[0].get("values", []):
            r = dict(zip(columns, row))
            try:
                payload = base64.b64decode(r.get("payload") or "", validate=True)
            except (binascii.Error, ValueError):  # written by someone else, not base64
                payload = str(r.get("payload")).encode()
            out.append(DeadLetter(int(r["time"]) // 1_000_000, r.get("topic") or "", r.get("reason") or "", payload, r.get("camper")))
        return out

    def close(self) -> None:
        self._client.close()
        self._rollups.close()

    # -- internals ---------------------------------------------------------

    def _decode(self, stream: Stream, raw: dict[str, Any]) -> dict[str, Any]:
        """JSON gives float 70.0 as 70: put back the stored type (contract, else SHOW FIELD KEYS)."""
        kinds = FIELD_KINDS.get(stream, {})
        out = {}
        for name, value in raw.items():
            kind = kinds.get(name)
            if kind is None and isinstance(value, int) and not isinstance(value, bool):
                known = self._field_types.get(stream.value, {})
                if name not in known:
                    rows = self._select(f"SHOW FIELD KEYS FROM {quote_ident(stream.value)}")
                    known = {k: t for s in rows for k, t in s.get("values", [])}
                    self._field_types[stream.value] = known
                kind = float if known.get(name) == "float" else None
            out[name] = float(value) if kind is float and isinstance(value, (int, float)) else value
        return out

    def _ensure_database(self, db: str | None = None) -> None:
        """On first use of a database (the main one or the rollups'), CREATE DATABASE
        (idempotent in 1.x); a refusal is only logged: a user without admin privilege may
        still write to an existing database."""
        db = db or self.database
        if db in self._databases_checked or not self.create_database:
            return
        ok, reason = self._create_database(db)
        if not ok:
            log.warning("could not create InfluxDB database %r (%s); using it as it is", db, reason)
        self._databases_checked.add(db)

    def _create_database(self, db: str) -> tuple[bool, str]:
        try:
            self._query(f"CREATE DATABASE {quote_ident(db)}", method="POST", db=db)
        except StoreRejected as exc:
            return False, str(exc)
        return True, ""

    def _write_lines(self, lines: list[str], precision: str, db: str | None = None) -> None:
        if not lines:
            return
        db = db or self.database
        self._ensure_database(db)
        body = "\n".join(lines).encode("utf-8")
        params = {"db": db, "precision": precision}
        for attempt in (1, 2):
            status, text = self._send("POST", "/write", params=params, content=body)
            if status in (200, 204):
                return
            if status == 404 and "database not found" in text and attempt == 1:
                if not self.create_database:
                    raise StoreRejected(f"InfluxDB database {db!r} does not exist (create_database is off)")
                ok, reason = self._create_database(db)
                if not ok:
                    raise StoreRejected(
                        f"InfluxDB database {db!r} does not exist and this user may not create it "
                        f"({reason}); ask an admin to run CREATE DATABASE {quote_ident(db)}"
                    )
                continue
            raise StoreRejected(f"InfluxDB refused the write ({status}): {text}")

    def _select(self, q: str, epoch: str = "ms") -> list[dict[str, Any]]:
        """Run one read statement; its series (possibly none)."""
        self._ensure_database()
        return self._query(q, epoch=epoch)[0].get("series", [])

    def _query(self, q: str, *, method: str = "GET", epoch: str = "ms", db: str | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL; errors in the status, the body or any statement become StoreRejected."""
        # chunked: InfluxDB streams the answer in pieces of CHUNK_ROWS rows, which its [http]
        # max-row-limit (10,000 by default in 1.x) does not truncate; _parse_body joins them.
        params = {"db": db or self.database, "epoch": epoch, "chunked": "true", "chunk_size": str(CHUNK_ROWS)}
        if method == "GET":
            status, data = self._send("GET", "/query", params={**params, "q": q}, parse=True)
        else:
            status, data = self._send("POST", "/query", params=params, data={"q": q}, parse=True)
        if not isinstance(data, dict):
            raise StoreRejected(f"InfluxDB /query answered {status} with something that is not InfluxDB JSON: {str(data)[:200]}")
        results = data.get("results") or []
        errors = [data.get("error")] + [r.get("error") for r in results]
        if status != 200 or any(errors) or not results:
            raise StoreRejected(f"InfluxDB refused the query ({status}): {'; '.join(e for e in errors if e) or data}")
        if any(r.get("partial") or any(s.get("partial") for s in r.get("series", [])) for r in results):
            raise StoreRejected("InfluxDB truncated the answer (its [http] max-row-limit): ask for a shorter window or an interval")
        return results

    def _send(self, method: str, path: str, *, parse: bool = False, **kw: Any) -> tuple[int, Any]:
        """One HTTP exchange. Transport failures, timeouts, 5xx and 429 are StoreUnavailable;
        401/403 StoreRejected naming the settings. Returns (status, error text or parsed JSON)."""
        try:
            response = self._client.request(method, path, **kw)
        except httpx.TransportError as exc:  # connect/read errors, timeouts, protocol errors
            raise StoreUnavailable(f"InfluxDB at {self.url_without_credentials} is unreachable: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        try:
            data: Any = _parse_body(response.content) if response.content else {}
        except ValueError:
            data = {"error": response.text[:500]}
        text = (data.get("error") if isinstance(data, dict) else None) or response.headers.get("X-Influxdb-Error", "") or response.text[:500]
        if status >= 500 or status == 429:
            raise StoreUnavailable(f"InfluxDB at {self.url_without_credentials} answered {status}: {text}")
        if status == 401:
            raise StoreRejected(f"InfluxDB refused the credentials: {_CREDENTIALS_HINT} ({text})")
        if status == 403:
            raise StoreRejected(f"InfluxDB user is not allowed to do this: {text}; {_CREDENTIALS_HINT} or the user's privileges")
        return status, (data if parse else text)


def _parse_body(content: bytes) -> Any:
    """The JSON of an InfluxDB answer; a chunked /query answer (one JSON document per line, each
    result and series marked ``partial`` but the last) joined into one, as if it came whole.

    Why: a year of per-minute rollups is 525,600 rows, and a non-chunked query stops at the
    server's max-row-limit (marked partial, refused here as truncated)."""
    lines = [line for line in content.split(b"\n") if line.strip()]
    if len(lines) <= 1:
        return json.loads(content)
    docs = [json.loads(line) for line in lines]
    if any(not isinstance(d, dict) for d in docs):
        raise ValueError("an InfluxDB chunk is not a JSON object")
    error = next((d["error"] for d in docs if d.get("error")), None)
    merged: dict[int, dict[str, Any]] = {}
    for doc in docs:
        for result in doc.get("results") or []:
            sid = int(result.get("statement_id", 0))
            target = merged.setdefault(sid, {"statement_id": sid, "_series": {}})
            if result.get("error"):
                target["error"] = result["error"]
            for one in result.get("series") or []:
                key = (one.get("name"), json.dumps(one.get("tags"), sort_keys=True))
                seen = target["_series"].get(key)
                if seen is None:
                    target["_series"][key] = {k: v for k, v in one.items() if k != "partial"} | {"values": list(one.get("values") or [])}
                else:
                    seen["values"] += one.get("values") or []
    results = []
    for sid in sorted(merged):
        result = merged[sid]
        series = list(result.pop("_series").values())
        results.append(result | ({"series": series} if series else {}))
    return {"results": results, **({"error": error} if error else {})}
