"""InfluxStore on a real InfluxDB 1.x (Debian's influxd): what is specific to this backend.

The cross-backend behaviour is proven by the conformance suite; here: stored
field types, overwrite on replay, InfluxQL grouping and gaps, the row bound,
database creation, credentials, and failures sorted into StoreUnavailable
(transient) and StoreRejected (configuration or data).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

from camperhub.contract import ChargeState, Stream
from camperhub.settings import StoreSettings
from camperhub.store import influx
from camperhub.store.base import DeadLetter, StoredSample, StoreRejected, StoreUnavailable
from camperhub.store.influx import InfluxStore
from tests.fixtures.influxdb import InfluxServer, free_port

T0 = 1_700_000_040_000  # a whole minute since the epoch
MIN = 60_000


def ms(t: int) -> datetime:
    return datetime.fromtimestamp(t / 1000, tz=UTC)


def energy(camper: str, seq: int, ts: int, **fields: object) -> StoredSample:
    return StoredSample(camper, Stream.ENERGY, ts, {"seq": seq, **fields})


def field_types(server: InfluxServer, db: str, measurement: str) -> dict[str, str]:
    data = server.query(f'SHOW FIELD KEYS FROM "{measurement}"', db=db)
    return dict(data["results"][0]["series"][0]["values"])


# -- writing and reading back ---------------------------------------------


def test_round_trip_keeps_contract_types(influx_store: InfluxStore, influx_server: InfluxServer) -> None:
    influx_store.write([energy("van-1", 1, T0, battery_soc_pct=70, battery_cycles=12, charge_state=ChargeState.BULK, shore_power=True)])
    # a float field first given as int 70 is stored as float: 70.5 later is no type conflict
    influx_store.write([energy("van-1", 2, T0 + 1000, battery_soc_pct=70.5, pv_power_w=0)])

    types = field_types(influx_server, influx_store.database, "energy")
    assert types == {"seq": "integer", "battery_soc_pct": "float", "battery_cycles": "integer",
                     "charge_state": "string", "shore_power": "boolean", "pv_power_w": "float"}

    first = influx_store.series("van-1", Stream.ENERGY, ["seq"], ms(T0), ms(T0 + 1))
    assert list(first["seq"]) == [1.0]
    latest = influx_store.latest("van-1", Stream.ENERGY)
    assert latest == StoredSample("van-1", Stream.ENERGY, T0 + 1000, {"seq": 2, "battery_soc_pct": 70.5, "pv_power_w": 0.0})
    assert type(latest.fields["pv_power_w"]) is float and type(latest.fields["seq"]) is int

    influx_store.write([energy("van-1", 3, T0 + 2000, battery_soc_pct=70, battery_cycles=12, charge_state="float", shore_power=False)])
    latest = influx_store.latest("van-1", Stream.ENERGY)
    assert latest is not None
    assert latest.fields == {"seq": 3, "battery_soc_pct": 70.0, "battery_cycles": 12, "charge_state": "float", "shore_power": False}
    assert [type(latest.fields[k]) for k in ("seq", "battery_soc_pct", "battery_cycles", "charge_state", "shore_power")] == [int, float, int, str, bool]
    assert influx_store.latest("van-2", Stream.ENERGY) is None
    assert influx_store.latest("van-1", Stream.POSITION) is None


def test_wrong_type_rejects_the_whole_batch_before_sending(influx_store: InfluxStore) -> None:
    good = energy("van-1", 1, T0, battery_soc_pct=50.0)
    with pytest.raises(StoreRejected, match="battery_cycles"):
        influx_store.write([good, energy("van-1", 2, T0 + 1, battery_cycles=1.5)])
    with pytest.raises(StoreRejected, match="battery_soc_pct"):
        influx_store.write([good, energy("van-1", 2, T0 + 1, battery_soc_pct="full")])
    assert influx_store.latest("van-1", Stream.ENERGY) is None  # all or none


def test_other_streams_and_unknown_fields(influx_store: InfluxStore) -> None:
    influx_store.write([
        StoredSample("van-1", Stream.POSITION, T0, {"seq": 1, "lat": 48, "lon": 2.5, "sats": 7, "fix": 3}),
        StoredSample("van-1", Stream.STATUS, T0, {"seq": 1, "state": "online", "uptime_s": 10, "queue_depth": 0, "in_service": False}),
        StoredSample("van-1", Stream.EVENT, T0, {"seq": 1, "kind": "button"}),
    ])
    pos = influx_store.latest("van-1", Stream.POSITION)
    assert pos is not None and pos.fields == {"seq": 1, "lat": 48.0, "lon": 2.5, "sats": 7, "fix": 3}
    assert type(pos.fields["lat"]) is float and type(pos.fields["sats"]) is int
    status = influx_store.latest("van-1", Stream.STATUS)
    assert status is not None and type(status.fields["uptime_s"]) is float and status.fields["in_service"] is False
    event = influx_store.latest("van-1", Stream.EVENT)
    assert event is not None and event.fields == {"seq": 1, "kind": "button"}
    # a field outside the contract is refused, not stored with whatever type it came with
    with pytest.raises(StoreRejected, match="extra_ratio is not in the contract"):
        influx_store.write([StoredSample("van-1", Stream.EVENT, T0 + 1, {"seq": 2, "kind": "button", "extra_ratio": 2.0})])


def test_rewrite_is_idempotent(influx_store: InfluxStore, influx_server: InfluxServer) -> None:
    sample = energy("van-1", 7, T0, battery_voltage_v=13.2)
    influx_store.write([sample])
    influx_store.write([sample, sample])
    data = influx_server.query('SELECT COUNT("seq") FROM "energy"', db=influx_store.database)
    assert data["results"][0]["series"][0]["values"][0][1] == 1


def test_hostile_identifiers_are_escaped(influx_store: InfluxStore) -> None:
    influx_store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])
    assert influx_store.latest("x' OR camper =~ /.*/ OR camper = 'y", Stream.ENERGY) is None
    with pytest.raises(StoreRejected, match='bad"name: not a field'):
        influx_store.series("van-1", Stream.ENERGY, ['bad"name', "battery_voltage_v"], ms(T0), ms(T0 + 1))
    frame = influx_store.series("x' OR camper =~ /.*/ OR camper = 'y", Stream.ENERGY, ["battery_voltage_v"], ms(T0), ms(T0 + 1))
    assert frame.empty


# -- series ------------------------------------------------------------------


def _minutes(store: InfluxStore) -> None:
    # minute 0: two samples; minute 1: one; minute 2: nothing (a gap); minute 3: one
    store.write([
        energy("van-1", 1, T0, battery_voltage_v=12.0, pv_power_w=100, charge_state="bulk"),
        energy("van-1", 2, T0 + 30_000, battery_voltage_v=13.0, pv_power_w=300, charge_state="absorption"),
        energy("van-1", 3, T0 + MIN, battery_voltage_v=12.5, charge_state="float"),
        energy("van-1", 4, T0 + 3 * MIN + 5_000, battery_voltage_v=12.8, pv_power_w=50),
        energy("van-2", 1, T0 + 2 * MIN, battery_voltage_v=24.0),
    ])


def test_series_every_minute_mean_max_last_and_gaps(influx_store: InfluxStore) -> None:
    _minutes(influx_store)
    args = ("van-1", Stream.ENERGY, ["pv_power_w", "battery_voltage_v", "battery_soh_pct"], ms(T0), ms(T0 + 4 * MIN))
    expected_index = pd.DatetimeIndex([ms(T0), ms(T0 + MIN), ms(T0 + 3 * MIN)], name="time")

    mean = influx_store.series(*args, every=timedelta(seconds=60), aggregate="mean")
    assert mean.index.equals(expected_index) and str(mean.index.tz) == "UTC"
    assert list(mean.columns) == ["pv_power_w", "battery_voltage_v", "battery_soh_pct"]
    assert all(mean[c].dtype == "float64" for c in mean.columns)
    assert list(mean["battery_voltage_v"]) == [12.5, 12.5, 12.8]
    assert mean["pv_power_w"].iloc[0] == 200.0 and math.isnan(mean["pv_power_w"].iloc[1])
    assert mean["battery_soh_pct"].isna().all()

    top = influx_store.series(*args, every=timedelta(minutes=1), aggregate="max")
    assert list(top["battery_voltage_v"]) == [13.0, 12.5, 12.8]

    window = ("van-1", Stream.ENERGY, ["charge_state"], ms(T0), ms(T0 + 4 * MIN))
    last = influx_store.series(*window, every=timedelta(seconds=60), aggregate="last")
    assert last.index.equals(expected_index[:2])  # minute 3 has no charge_state: absent too
    assert list(last["charge_state"]) == ["absorption", "float"]
    first = influx_store.series("van-1", Stream.ENERGY, ["charge_state", "seq"], ms(T0), ms(T0 + 4 * MIN), every=timedelta(seconds=60), aggregate="first")
    assert first.index.equals(expected_index)  # an interval goes only when all fields are empty
    assert list(first["seq"]) == [1.0, 3.0, 4.0] and first["charge_state"].iloc[0] == "bulk" and pd.isna(first["charge_state"].iloc[2])


def test_series_window_is_half_open_and_per_camper(influx_store: InfluxStore) -> None:
    _minutes(influx_store)
    raw = influx_store.series("van-1", Stream.ENERGY, ["battery_voltage_v"], ms(T0), ms(T0 + MIN))
    assert list(raw["battery_voltage_v"]) == [12.0, 13.0]  # T0 + MIN itself is excluded
    assert list(raw.index) == [ms(T0), ms(T0 + 30_000)]
    other = influx_store.series("van-2", Stream.ENERGY, ["battery_voltage_v"], ms(T0), ms(T0 + 4 * MIN))
    assert list(other["battery_voltage_v"]) == [24.0]
    empty = influx_store.series("van-3", Stream.ENERGY, ["battery_voltage_v"], ms(T0), ms(T0 + 4 * MIN), every=timedelta(seconds=60))
    assert empty.empty and list(empty.columns) == ["battery_voltage_v"] and str(empty.index.tz) == "UTC"


def test_series_count_and_text_aggregates(influx_store: InfluxStore) -> None:
    _minutes(influx_store)
    counts = influx_store.series("van-1", Stream.ENERGY, ["charge_state", "seq"], ms(T0), ms(T0 + 4 * MIN), every=timedelta(seconds=60), aggregate="count")
    assert list(counts["seq"]) == [2.0, 1.0, 1.0]
    assert list(counts["charge_state"].fillna(0)) == [2.0, 1.0, 0.0]
    with pytest.raises(StoreRejected, match="numeric"):
        influx_store.series("van-1", Stream.ENERGY, ["charge_state"], ms(T0), ms(T0 + 4 * MIN), every=timedelta(seconds=60), aggregate="mean")


@pytest.mark.parametrize("every", [timedelta(0), timedelta(milliseconds=500), timedelta(seconds=90.5), timedelta(seconds=-60)])
def test_series_every_must_be_whole_seconds(influx_store: InfluxStore, every: timedelta) -> None:
    with pytest.raises(ValueError, match="whole number of seconds"):
        influx_store.series("van-1", Stream.ENERGY, ["seq"], ms(T0), ms(T0 + MIN), every=every)


def test_raw_series_is_bounded(influx_store: InfluxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    influx_store.write([energy("van-1", i, T0 + i * 1000, battery_voltage_v=12.0) for i in range(5)])
    monkeypatch.setattr(influx, "MAX_ROWS", 5)
    assert len(influx_store.series("van-1", Stream.ENERGY, ["battery_voltage_v"], ms(T0), ms(T0 + MIN))) == 5
    monkeypatch.setattr(influx, "MAX_ROWS", 4)
    with pytest.raises(StoreRejected, match="more than 4"):
        influx_store.series("van-1", Stream.ENERGY, ["battery_voltage_v"], ms(T0), ms(T0 + MIN))
    # an aggregate over the same window is fine
    assert len(influx_store.series("van-1", Stream.ENERGY, ["battery_voltage_v"], ms(T0), ms(T0 + MIN), every=timedelta(seconds=60))) == 1


def test_answers_beyond_the_servers_row_limit_come_whole(influx_store: InfluxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """InfluxDB 1.x stops a non-chunked answer at its [http] max-row-limit (10,000 by default);
    the store asks for chunked answers (CHUNK_ROWS a piece) and joins them. 12,500 rows, raw and
    per interval, in pieces of 3,000 (the server's own limit applies as well)."""
    n = 12_500
    influx_store.write([energy("van-1", i, T0 + i * 1000, battery_voltage_v=12.0 + (i % 100) / 100) for i in range(n)])
    monkeypatch.setattr(influx, "CHUNK_ROWS", 3_000)
    window = (ms(T0), ms(T0 + n * 1000))
    raw = influx_store.series("van-1", Stream.ENERGY, ["battery_voltage_v"], *window)
    assert len(raw) == n and raw.index.is_monotonic_increasing and raw.index[-1] == ms(T0 + (n - 1) * 1000)
    per_second = influx_store.series("van-1", Stream.ENERGY, ["battery_voltage_v"], *window, every=timedelta(seconds=1), aggregate="max")
    assert len(per_second) == n
    assert per_second["battery_voltage_v"].sum() == pytest.approx(sum(12.0 + (i % 100) / 100 for i in range(n)))


# -- campers and dead letters ---------------------------------------------------


def test_campers_lists_who_wrote(influx_store: InfluxStore) -> None:
    assert influx_store.campers() == []
    influx_store.write([energy("van-2", 1, T0, battery_voltage_v=12.0)])
    influx_store.write([StoredSample("van-1", Stream.POSITION, T0, {"seq": 1, "lat": 1.0, "lon": 2.0, "fix": 3})])
    influx_store.write_dead_letters([DeadLetter(T0, "camperhub/v1/van-9/energy", "bad", b"x", "van-9")])
    assert influx_store.campers() == ["van-1", "van-2"]


def test_dead_letters_round_trip(influx_store: InfluxStore) -> None:
    assert influx_store.dead_letters() == []
    binary = bytes(range(256)) + b"\xff\xfe not utf-8"
    letters = [
        DeadLetter(T0, "camperhub/v1/van-1/energy", "not UTF-8 JSON", binary, "van-1"),
        DeadLetter(T0, "camperhub/v1/van-1/energy", "same millisecond", b"{}", "van-1"),
        DeadLetter(T0 + 5, "strange/topic", "unknown topic", b"", None),
    ]
    influx_store.write_dead_letters(letters)
    influx_store.write_dead_letters([DeadLetter(T0, "camperhub/v1/van-1/energy", "same ms, later batch", b"[]", "van-1")])

    got = influx_store.dead_letters()
    assert len(got) == 4
    assert got[0] == letters[2]  # newest first
    assert {g.reason for g in got[1:]} == {"not UTF-8 JSON", "same millisecond", "same ms, later batch"}
    assert all(g.received_ms == T0 for g in got[1:])
    assert next(g for g in got if g.reason == "not UTF-8 JSON").payload == binary
    assert influx_store.dead_letters(limit=1) == [letters[2]]
    assert influx_store.dead_letters(since=ms(T0 + 1)) == [letters[2]]
    assert len(influx_store.dead_letters(since=ms(T0))) == 4
    assert influx_store.dead_letters(limit=0) == []


# -- database, credentials, settings --------------------------------------------


def test_database_is_created_when_missing(influx_server: InfluxServer) -> None:
    db = f"test_created_{free_port()}"
    try:
        with InfluxStore(influx_server.url, database=db) as store:
            store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])
            assert store.latest("van-1", Stream.ENERGY) is not None
        names = [v[0] for v in influx_server.query("SHOW DATABASES")["results"][0]["series"][0]["values"]]
        assert db in names
    finally:
        influx_server.query(f'DROP DATABASE "{db}"')


def test_missing_database_without_creation_is_rejected(influx_server: InfluxServer) -> None:
    with InfluxStore(influx_server.url, database="test_never_created", create_database=False) as store:
        with pytest.raises(StoreRejected, match="does not exist"):
            store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])
        with pytest.raises(StoreRejected, match="database not found"):  # the error inside the JSON body
            store.latest("van-1", Stream.ENERGY)


def test_wrong_password_is_rejected_without_leaking_it(influx_server: InfluxServer) -> None:
    secret = "Wr0ng-p@ss:word/!"
    url = influx_server.url_for("admin", secret)
    with InfluxStore(url, database="test_wrong_password") as store:
        assert secret not in repr(store) and "admin" not in repr(store)
        store.ping()  # /ping needs no credentials
        for call in (lambda: store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)]),
                     lambda: store.latest("van-1", Stream.ENERGY), store.campers):
            with pytest.raises(StoreRejected) as info:
                call()
            assert "CAMPERHUB_INFLUX_URL" in str(info.value)
            assert secret not in str(info.value) and "Wr0ng" not in repr(info.value.__cause__)


def test_credentials_as_url_query_parameters(influx_server: InfluxServer) -> None:
    url = f"{influx_server.url_without_credentials}/?u=admin&p={influx_server.admin_password}"
    with InfluxStore(url, database="test_query_params", create_database=False) as store:
        with pytest.raises(StoreRejected, match="does not exist"):  # got past auth: the database is missing
            store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])


def test_user_without_admin_privilege_on_missing_database(influx_server: InfluxServer) -> None:
    url = influx_server.create_user("writer_no_admin", "pw-no-admin")
    with InfluxStore(url, database="test_nobody_created") as store:
        with pytest.raises(StoreRejected) as info:
            store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])
    message = str(info.value)
    assert "does not exist" in message and "CREATE DATABASE" in message and "admin privilege" in message
    assert "pw-no-admin" not in message


def test_read_only_user_reads_but_cannot_write(influx_server: InfluxServer, influx_store: InfluxStore) -> None:
    influx_store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])
    url = influx_server.create_user("reader_only", "pw-reader", grant_read_db=influx_store.database)
    with InfluxStore(url, database=influx_store.database) as reader:
        assert reader.latest("van-1", Stream.ENERGY) is not None  # CREATE DATABASE refusal is not fatal
        with pytest.raises(StoreRejected, match="not authorized to write"):
            reader.write([energy("van-1", 2, T0 + 1, battery_voltage_v=12.0)])


def test_token_is_sent_as_token_header(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    real_client = httpx.Client
    monkeypatch.setattr(influx.httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(handler), **kw))
    with InfluxStore("http://influx.example:8086", database="d", token="tok-123", create_database=False) as store:
        store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])
    assert seen[0].headers["Authorization"] == "Token tok-123"
    assert seen[0].url.params["db"] == "d" and seen[0].url.params["precision"] == "ms"
    assert seen[0].content == b"energy,camper=van-1 battery_voltage_v=12,seq=1i 1700000040000"


def test_token_refused_by_influxdb_1_6(influx_server: InfluxServer) -> None:
    # InfluxDB 1.6 does not know the Token scheme (1.8+ does): a clear refusal, naming the setting
    with InfluxStore(influx_server.url_without_credentials, database="test_token", token="admin:x") as store:
        with pytest.raises(StoreRejected, match="CAMPERHUB_INFLUX_TOKEN"):
            store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])


def test_url_credentials_and_token_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        InfluxStore("http://u:p@127.0.0.1:8086", token="t")
    with pytest.raises(ValueError, match="http://"):
        InfluxStore("influx://127.0.0.1:8086")


def test_from_settings(influx_server: InfluxServer, tmp_path: Path) -> None:
    journal = tmp_path / "journal" / "rollups.sqlite"
    settings = StoreSettings(store="influx", influx_url=influx_server.url, influx_db="test_from_settings", influx_timeout_s=3, rollup_journal=journal)
    store = InfluxStore.from_settings(settings)
    try:
        assert store.database == "test_from_settings"
        assert store.url_without_credentials == influx_server.url_without_credentials
        store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])
        assert store.campers() == ["van-1"]
        assert journal.exists()  # the minute to fold is recorded on disk
    finally:
        store.close()
        influx_server.query('DROP DATABASE "test_from_settings"')
    assert StoreSettings(rollup_journal="").rollup_journal is None  # empty: an in-memory journal


# -- rollups, their journal, raw retention -------------------------------------------


def _per_5s(store: InfluxStore, minutes: int, start: int = T0, camper: str = "van-1") -> None:
    store.write([energy(camper, i + 1, start + i * 5000, pv_power_w=float(i % 40), battery_cycles=3 + i // 100, charge_state="bulk", shore_power=i % 2 == 0)
                 for i in range(minutes * 12)])


def test_rollups_live_in_their_own_database_with_the_raw_types(influx_store: InfluxStore, influx_server: InfluxServer) -> None:
    _per_5s(influx_store, 3)
    assert influx_store.rollup() == 3
    databases = {v[0] for v in influx_server.query("SHOW DATABASES")["results"][0]["series"][0]["values"]}
    assert {influx_store.database, influx_store.database + "_1m"} <= databases  # raw may get a retention, rollups not
    types = field_types(influx_server, influx_store.database + "_1m", "energy_1m")
    assert {k: types[k] for k in ("pv_power_w__sum", "pv_power_w__count", "pv_power_w__first", "battery_cycles__sum", "battery_cycles__max",
                                  "charge_state__last", "shore_power__min", "seq__last")} == {
        "pv_power_w__sum": "float", "pv_power_w__count": "integer", "pv_power_w__first": "float", "battery_cycles__sum": "integer",
        "battery_cycles__max": "integer", "charge_state__last": "string", "shore_power__min": "boolean", "seq__last": "integer"}
    assert "charge_state__sum" not in types and "shore_power__sum" not in types
    raw = influx_server.query("SHOW MEASUREMENTS", db=influx_store.database)["results"][0]["series"][0]["values"]
    assert ["energy_1m"] not in raw


def test_the_journal_file_keeps_late_marks_across_a_restart(influx_server: InfluxServer, influx_store: InfluxStore, tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    with InfluxStore(influx_server.url, database=influx_store.database, journal_path=journal) as first:
        _per_5s(first, 3)
        assert first.rollup() == 3
        first.write([energy("van-1", 99, T0 + 2500, pv_power_w=39.0)])  # late, into minute 0; then the process stops
    with InfluxStore(influx_server.url, database=influx_store.database, journal_path=journal) as second:
        assert second.rollup() == 1  # minute 0 again, found in the journal
        assert second.prune_raw(ms(T0 + 3 * MIN)) == 37
        counted = second.series("van-1", Stream.ENERGY, ["pv_power_w"], ms(T0), ms(T0 + 3 * MIN), every=timedelta(minutes=1), aggregate="count")
        assert counted["pv_power_w"].tolist() == [13.0, 12.0, 12.0]
    with pytest.raises(StoreRejected, match="belongs to InfluxDB database"), InfluxStore(influx_server.url, database="other", journal_path=journal) as other:
        other.rollup()


def test_a_new_journal_folds_what_was_written_before_it(influx_server: InfluxServer, influx_store: InfluxStore) -> None:
    """An in-memory journal after a restart, or the first one after an upgrade: the minutes
    after each camper's newest rollup minute are found from the data and folded."""
    _per_5s(influx_store, 5)
    _per_5s(influx_store, 2, camper="van-2")
    assert influx_store.rollup(now=ms(T0 + 3 * MIN + 5000)) == 3 + 2  # van-1's last two minutes stay to fold
    with InfluxStore(influx_server.url, database=influx_store.database) as restarted:
        assert restarted.rollup() == 2
        assert restarted.rollup() == 0
        assert restarted.prune_raw(ms(T0 + 5 * MIN)) == 7 * 12
        counted = restarted.series("van-1", Stream.ENERGY, ["seq"], ms(T0), ms(T0 + 5 * MIN), every=timedelta(minutes=1), aggregate="count")
        assert counted["seq"].tolist() == [12.0] * 5


def test_a_reader_with_its_own_journal_reads_the_unfolded_minutes_from_raw(influx_server: InfluxServer, influx_store: InfluxStore) -> None:
    _per_5s(influx_store, 5)
    assert influx_store.rollup(now=ms(T0 + 3 * MIN + 5000)) == 3
    with InfluxStore(influx_server.url, database=influx_store.database) as reader:  # the API, say, with its own journal
        counted = reader.series("van-1", Stream.ENERGY, ["seq"], ms(T0), ms(T0 + 5 * MIN), every=timedelta(minutes=1), aggregate="count")
        assert counted["seq"].tolist() == [12.0] * 5  # its horizon stops at the newest rollup minute


def test_a_fold_overtaken_by_another_write_is_folded_again(influx_server: InfluxServer, influx_store: InfluxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another ingest (its own journal) writes into the minute while this fold is between reading
    raw and writing the rollup: the recount after the write sees it and marks the minute again."""
    _per_5s(influx_store, 1)
    other = InfluxStore(influx_server.url, database=influx_store.database)
    real_write = influx_store._write_lines

    def write_lines(lines: list[str], precision: str, db: str | None = None) -> None:
        if db == influx_store.database + "_1m" and other is not None:
            other.write([energy("van-1", 500, T0 + 59_500, pv_power_w=7.0)])
        real_write(lines, precision, db)

    monkeypatch.setattr(influx_store, "_write_lines", write_lines)
    try:
        assert influx_store.rollup() == 1
        assert influx_store._rollups.journal.oldest_dirty("van-1") == T0  # dirty again
    finally:
        other.close()
        monkeypatch.setattr(influx_store, "_write_lines", real_write)
    assert influx_store.rollup() == 1
    influx_store.prune_raw(ms(T0 + MIN))
    counted = influx_store.series("van-1", Stream.ENERGY, ["pv_power_w"], ms(T0), ms(T0 + MIN), every=timedelta(minutes=1), aggregate="count")
    assert counted["pv_power_w"].tolist() == [13.0]


def test_without_delete_raw_retention_is_left_to_the_server(influx_store: InfluxStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """InfluxDB 2.x/3.x through the v1 API: DELETE is refused; prune_raw deletes nothing, says so once."""
    _per_5s(influx_store, 2)
    real_query = influx_store._query

    def query(q: str, **kw: object) -> list[dict]:
        if q.startswith("DELETE"):
            raise StoreRejected("InfluxDB refused the query (400): error parsing query: found DELETE, expected SELECT, SHOW at line 1, char 1")
        return real_query(q, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(influx_store, "_query", query)
    with caplog.at_level("INFO", logger="camperhub.store.influx_rollup"):
        assert influx_store.prune_raw(ms(T0 + 2 * MIN)) == 0
        assert influx_store.prune_raw(ms(T0 + 2 * MIN)) == 0
    assert len([r for r in caplog.records if "retention policy or bucket retention" in r.getMessage()]) == 1
    assert len(influx_store.series("van-1", Stream.ENERGY, ["seq"], ms(T0), ms(T0 + 2 * MIN))) == 24
    assert influx_store.rollup() == 2  # nothing recorded as pruned: all minutes fold


# -- the server down, hung, and back --------------------------------------------


def test_closed_port_is_unavailable() -> None:
    with InfluxStore(f"http://admin:pw@127.0.0.1:{free_port()}", timeout_s=2) as store:
        with pytest.raises(StoreUnavailable):
            store.ping()
        with pytest.raises(StoreUnavailable):
            store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])
        with pytest.raises(StoreUnavailable):
            store.series("van-1", Stream.ENERGY, ["seq"], ms(T0), ms(T0 + MIN))


def test_down_and_back_keeps_the_data(tmp_path: Path) -> None:
    with InfluxServer(tmp_path / "influx") as server, InfluxStore(server.url, database="camperhub", timeout_s=3) as store:
        store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])
        server.kill()
        with pytest.raises(StoreUnavailable):
            store.ping()
        with pytest.raises(StoreUnavailable):
            store.write([energy("van-1", 2, T0 + 1000, battery_voltage_v=12.1)])
        server.restart()
        store.ping()
        store.write([energy("van-1", 2, T0 + 1000, battery_voltage_v=12.1)])  # the retry of the same batch
        frame = store.series("van-1", Stream.ENERGY, ["battery_voltage_v"], ms(T0), ms(T0 + MIN))
        assert list(frame["battery_voltage_v"]) == [12.0, 12.1]


def test_hung_server_times_out_as_unavailable(tmp_path: Path) -> None:
    with InfluxServer(tmp_path / "influx") as server, InfluxStore(server.url, timeout_s=0.5) as store:
        store.write([energy("van-1", 1, T0, battery_voltage_v=12.0)])
        server.pause()
        try:
            with pytest.raises(StoreUnavailable, match="Timeout"):
                store.write([energy("van-1", 2, T0 + 1000, battery_voltage_v=12.0)])
            with pytest.raises(StoreUnavailable):
                store.ping()
        finally:
            server.resume()
        store.ping()
        assert store.latest("van-1", Stream.ENERGY) is not None
