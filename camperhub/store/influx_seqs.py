"""Seq accounting of the InfluxDB backend (:meth:`Store.seq_summary`; base.py says what it answers).

Why not simply read every sample: on Debian's InfluxDB 1.6.7, a week of 5-s
readings of one camper (121,000 points, 15 fields) takes 0.35 s to hand over
just ``seq`` as JSON, 1.4 s with every field (needed to tell a device fault,
a sample with no measured field, from a reading). The report needs neither:
it needs per-day counts and the few places where ``seq`` jumps. So the server
does the walking, in InfluxQL (subqueries and these transformations are
documented for 2.x and 3.x too; tested here on 1.6.7 only):

* breaks: a subquery computes, for every sample but the first,
  ``DIFFERENCE(seq)``, ``MOVING_AVERAGE(seq, 2)`` and ``ELAPSED(seq, 1ms)``,
  and the outer query keeps the rows where the difference is not 1. From the
  difference d and the mean a of a sample and its predecessor,
  ``seq = (2a + d) / 2`` and ``prev_seq = (2a - d) / 2`` exactly (a float
  mean of two integers is exact below 2**52; checked), and the predecessor's
  time is the sample's time minus the elapsed time;
* the window's first sample is compared with the last one before the window
  (two ``LIMIT 1`` reads), folded samples are read with a field condition
  (``readings_n >= 1``: only those rows come back);
* counts per hour: ``COUNT(seq)`` beside the counts of a few "witness" fields
  that nearly every sample has. An hour where a witness is in every sample has
  data in every sample; the other hours (a device fault, or a camper whose
  devices report disjoint fields) are counted again, per period one
  statement over their span grouped by hour, with a condition that holds
  when any measured field has a value (``"f" = "f"`` is true exactly
  where ``f`` has a value, whatever its type, and matches nothing for a name
  that is no field).

Statements go out in batches of STATEMENTS_PER_REQUEST: the breaks in one
thread, the counts in another (the server answers both at once), then the
rare follow-ups. The answer is the same as the SQLite backend's (conformance
suite, tests/camperhub/store/test_seq_summary.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from camperhub.contract import SAMPLE_MODELS, Stream
from camperhub.store.base import SeqSummary, StoreRejected, breaks_frame, periods_frame
from camperhub.store.influxql import FIELD_KINDS, ns, quote_ident, quote_literal

if TYPE_CHECKING:
    from camperhub.store.influx import InfluxStore

#: InfluxQL statements sent in one /query request.
STATEMENTS_PER_REQUEST = 50
HOUR_NS = 3_600_000_000_000
#: Fields that say how a sample was made rather than what was measured.
NOT_DATA = ("seq", "readings_n")
#: Energy fields present in nearly every sample (no energy field is required by the contract).
ENERGY_WITNESSES = ("battery_voltage_v", "pv_power_w", "battery_soc_pct", "load_power_w")


def witnesses(stream: Stream) -> tuple[str, ...]:
    """Fields whose count, when it equals the samples', proves every sample has data: the
    contract's required fields where a stream has them, else the common energy fields."""
    required = tuple(n for n, f in SAMPLE_MODELS[stream].model_fields.items() if f.is_required() and n not in ("seq", "ts"))
    return required[:2] or ENERGY_WITNESSES


def _rows(result: dict[str, Any]) -> list[list[Any]]:
    return [v for s in result.get("series", []) for v in s.get("values", [])]


def _run(store: InfluxStore, statements: Sequence[str]) -> list[dict[str, Any]]:
    """One result per statement, STATEMENTS_PER_REQUEST statements per request."""
    results: list[dict[str, Any]] = []
    if not statements:
        return results
    store._ensure_database()
    for i in range(0, len(statements), STATEMENTS_PER_REQUEST):
        results += store._query(";".join(statements[i : i + STATEMENTS_PER_REQUEST]), method="POST")
    return results


def seq_summary(store: InfluxStore, camper: str, stream: Stream, edges: Sequence[datetime]) -> SeqSummary:
    """See the module docstring; ``edges`` are already checked. The counts are asked for in a
    second thread while this one asks for the breaks: two requests the server runs on two cores."""
    m = quote_ident(stream.value)
    cam = f'"camper" = {quote_literal(camper)}'
    bounds = [ns(e) for e in edges]
    window = f"{cam} AND time >= {bounds[0]} AND time < {bounds[-1]}"
    has_n = "readings_n" in FIELD_KINDS[stream]
    statements = [
        f'SELECT "seq" FROM {m} WHERE {cam} AND time < {bounds[0]} ORDER BY time DESC LIMIT 1',
        f'SELECT "seq" FROM {m} WHERE {window} ORDER BY time ASC LIMIT 1',
        f'SELECT "d", "a", "e" FROM (SELECT DIFFERENCE("seq") AS "d", MOVING_AVERAGE("seq", 2) AS "a", ELAPSED("seq", 1ms) AS "e" '
        f'FROM {m} WHERE {window}) WHERE "d" <> 1',
    ]
    if has_n:
        statements.append(f'SELECT "seq", "readings_n" FROM {m} WHERE {window} AND "readings_n" >= 1')
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="influx-seq-counts") as pool:
        counted = pool.submit(_counts, store, m, cam, stream, bounds)
        results = _run(store, statements)
        counts = counted.result()
    before, first, jumps = (_rows(r) for r in results[:3])
    folded = _rows(results[3]) if has_n else []

    # breaks by time: the jumps the server found, the first sample, folded samples
    breaks: dict[int, list[Any]] = {}  # ts -> [seq, prev_seq, prev_ts]
    for t, d, a, e in jumps:
        two_a = 2 * a
        if two_a != int(two_a) or (int(two_a) + int(d)) % 2:
            raise StoreRejected(f"seq of {camper} near {t} ms is too large to account for exactly ({a}, {d})")
        breaks[int(t)] = [(int(two_a) + int(d)) // 2, (int(two_a) - int(d)) // 2, int(t) - int(e)]
    n_of = {int(t): int(n) for t, _, n in folded}
    if first:
        t1, s1 = int(first[0][0]), int(first[0][1])
        if not before:
            breaks[t1] = [s1, None, None]
        elif s1 != int(before[0][1]) + 1 or t1 in n_of:
            breaks[t1] = [s1, int(before[0][1]), int(before[0][0])]
    # a folded sample whose seq goes on by one is a break too; its predecessor's time is asked for
    lookups = [int(t) for t, _, _ in folded if int(t) not in breaks]
    for t, seq, _ in folded:
        breaks.setdefault(int(t), [int(seq), int(seq) - 1, None])
    answers = _run(store, [f'SELECT "seq" FROM {m} WHERE {cam} AND time < {t * 1_000_000} ORDER BY time DESC LIMIT 1' for t in lookups])
    for t, result in zip(lookups, answers):
        rows = _rows(result)
        breaks[t][2] = int(rows[0][0]) if rows else None
    rows_out = [(t, b[0], n_of.get(t), b[1], b[2]) for t, b in sorted(breaks.items())]
    return SeqSummary(periods_frame(edges, counts), breaks_frame(rows_out))


def _counts(store: InfluxStore, m: str, cam: str, stream: Stream, bounds: Sequence[int]) -> list[tuple[int, int]]:
    """(samples, samples with data) per period: hourly counts of seq and of the witnesses; the hours
    where no witness is in every sample are counted again, per period one statement over their span."""
    wit = [f for f in witnesses(stream) if f in FIELD_KINDS[stream]]
    counted = ", ".join(['COUNT("seq") AS "n"', *(f'COUNT({quote_ident(f)}) AS "w{i}"' for i, f in enumerate(wit))])
    hourly = _run(store, [
        f"SELECT {counted} FROM {m} WHERE {cam} AND time >= {lo} AND time < {hi} GROUP BY time(1h) fill(none)"
        for lo, hi in zip(bounds, bounds[1:])
    ])
    counts: list[list[int]] = []
    unsettled: dict[int, set[int]] = {}  # period -> hour labels (ms) to count again
    for p, result in enumerate(hourly):
        samples = with_data = 0
        for row in _rows(result):
            n = int(row[1] or 0)
            samples += n
            if max((int(w or 0) for w in row[2:]), default=0) >= n:
                with_data += n
            else:
                unsettled.setdefault(p, set()).add(int(row[0]))
        counts.append([samples, with_data])
    any_data = " OR ".join(f"{quote_ident(f)} = {quote_ident(f)}" for f in FIELD_KINDS[stream] if f not in NOT_DATA) or "false"
    spans = [(p, max(min(h) * 1_000_000, bounds[p]), min(max(h) * 1_000_000 + HOUR_NS, bounds[p + 1])) for p, h in unsettled.items()]
    again = _run(store, [
        f'SELECT COUNT("seq") FROM {m} WHERE {cam} AND time >= {lo} AND time < {hi} AND ({any_data}) GROUP BY time(1h) fill(none)'
        for _, lo, hi in spans
    ])
    for (p, _, _), result in zip(spans, again):
        counts[p][1] += sum(int(row[1] or 0) for row in _rows(result) if int(row[0]) in unsettled[p])
    return [(c[0], c[1]) for c in counts]
