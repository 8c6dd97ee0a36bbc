"""``camperhub workshop whatif`` against a real SQLite store file with constructed data:
the table in Italian and English, the JSON, and bad input (a message, exit status 2)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from camperhub.api.pages import i18n
from camperhub.cli import main
from camperhub.workshops import whatif_cli
from camperhub.contract import Stream
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import smp

#: Monday 2026-05-04 and Tuesday 2026-05-05, whole Europe/Rome days (UTC+2)
DAY0 = datetime(2026, 5, 3, 22, 0, tzinfo=UTC)
MINUTES = 2 * 24 * 60
LOAD_W = 80.0


def _pv_w(t: datetime) -> float:
    """A clear-ish May day: a sine from 06:00 to 20:00 local, 350 W at its top."""
    h = (t.hour + 2 + t.minute / 60) % 24
    return max(0.0, 350.0 * math.sin(math.pi * (h - 6) / 14)) if 6 <= h <= 20 else 0.0


@pytest.fixture
def store_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two days of per-minute readings of camper van-1 in a SQLite file the CLI is pointed at."""
    path = tmp_path / "camperhub.sqlite"
    store = SqliteStore(path)
    try:
        samples = []
        for k in range(MINUTES):
            t = DAY0 + timedelta(minutes=k)
            fields = {"pv_power_w": _pv_w(t), "load_power_w": LOAD_W}
            if k % 15 == 0:
                fields["battery_soc_pct"] = 40.0
            samples.append(smp(Stream.ENERGY, int(t.timestamp() * 1000), camper="van-1", **fields))
        store.write(samples)
        store.rollup(datetime(2026, 6, 1, tzinfo=UTC))
    finally:
        store.close()
    monkeypatch.setenv("CAMPERHUB_STORE", "sqlite")
    monkeypatch.setenv("CAMPERHUB_SQLITE_PATH", str(path))
    return path


def whatif(*args: str) -> list[str]:
    return ["workshop", "whatif", "--camper", "van-1", "--from", "2026-05-04", "--to", "2026-05-05", *args]


def test_italian_table_side_by_side(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(whatif("--add-panel-w", "200", "--add-load", "induction-hob")) == 0
    out = capsys.readouterr().out
    assert "Camper van-1, dal 4 mag 2026 al 5 mag 2026" in out
    for label in ("Com'è oggi", "Con la modifica", "Autosufficienza", "Ore con la batteria scarica", "Dalla rete (colonnina)", "Energia solare sprecata"):
        assert label in out
    assert "400 Wp" in out and "600 Wp" in out
    assert "piano a induzione" in out
    assert "Dati: 100 % dei minuti; sole: misurato" in out
    assert "Batteria all'inizio: 40 % (misurata)" in out


def test_english_on_request(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(whatif("--lang", "en", "--add-load", "kettle")) == 0
    out = capsys.readouterr().out
    assert "What if? Camper van-1, 4 May 2026 to 5 May 2026" in out
    assert "Hours with the battery empty" in out and "kettle" in out


def test_json_figures_match_the_constructed_data(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(whatif("--add-panel-w", "200", "--battery-ah", "300", "--json")) == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["camper"], body["first_day"], body["last_day"]) == ("van-1", "2026-05-04", "2026-05-05")
    assert body["minutes_replayed"] == MINUTES and body["coverage_pct"] == pytest.approx(100.0)
    assert body["pv_source"] == "measured" and body["soc_start_source"] == "measured"
    base, scen = body["baseline"], body["scenario"]
    assert base["load_wh"] == pytest.approx(LOAD_W * 48)
    expected_pv_wh = sum(_pv_w(DAY0 + timedelta(minutes=k)) for k in range(MINUTES)) / 60
    assert base["pv_available_wh"] == pytest.approx(expected_pv_wh, rel=1e-6)
    assert scen["pv_available_wh"] == pytest.approx(1.5 * expected_pv_wh, rel=1e-6)
    assert (base["pv_kwp"], scen["pv_kwp"]) == (pytest.approx(0.4), pytest.approx(0.6))
    assert scen["battery_kwh"] == pytest.approx(3.84)
    assert scen["self_sufficiency_pct"] >= base["self_sufficiency_pct"]
    assert scen["empty_hours"] <= base["empty_hours"]
    assert datetime.fromisoformat(body["start"]) == DAY0


def test_a_heavy_load_empties_the_battery_and_a_bigger_one_helps(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(whatif("--add-load", "400", "--battery-kwh", "20", "--json")) == 0
    heavy_big = json.loads(capsys.readouterr().out)["scenario"]
    assert main(whatif("--add-load", "400", "--json")) == 0
    heavy_small = json.loads(capsys.readouterr().out)["scenario"]
    assert heavy_small["empty_hours"] > 0 and heavy_small["self_sufficiency_pct"] < 100
    assert heavy_big["empty_hours"] < heavy_small["empty_hours"]
    assert heavy_small["added_load_wh"] == pytest.approx(400 / 0.9 * 48)


def test_model_sun_is_said(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(whatif("--model-sun")) == 0
    assert "sole: dal modello (un anno tipico a Varese)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--camper", "van-1", "--from", "2026-05-05", "--to", "2026-05-04"], "finisce (2026-05-04) prima di cominciare (2026-05-05)"),
        (["--camper", "van-9", "--from", "2026-05-04", "--to", "2026-05-05"], "camper 'van-9' sconosciuto: l'archivio conosce van-1"),
        (["--camper", "van-1", "--from", "2026-04-01", "--to", "2026-04-02"], "il camper van-1 non ha letture dal 2026-04-01 al 2026-04-02"),
        (["--camper", "van-1", "--from", "2020-01-01", "--to", "2026-05-05"], "più lungo di 400 giorni"),
        (["--camper", "van-1", "--from", "2999-01-01", "--to", "2999-01-02"], "comincia nel futuro"),
        (["--camper", "Van_1", "--from", "2026-05-04", "--to", "2026-05-05"], "'Van_1' non è valido"),
        ([*whatif()[2:], "--add-load", "toaster"], "carico 'toaster' sconosciuto: usa uno tra induction-hob"),
        ([*whatif()[2:], "--add-panel-w", "-1000"], "non si possono togliere 1000 Wp di pannelli da un tetto di 400 Wp"),
    ],
)
def test_bad_questions_get_a_message_and_status_2(store_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(["workshop", "whatif", *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.startswith("camperhub workshop whatif: ")
    assert captured.out == "" and "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "2026-13-01"], "'2026-13-01' is not a date YYYY-MM-DD"),
        (["--battery-ah", "300", "--battery-kwh", "4"], "not allowed with argument"),
        (["--usable-pct", "150"], "150 % is outside 1..100 %"),
        (["--lang", "de"], "invalid choice"),
    ],
)
def test_malformed_options_are_usage_errors(store_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*whatif(), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_the_installed_entry_point(store_file: Path) -> None:
    """The real ``camperhub`` script: JSON on stdout, and a clear message with status 2 without a traceback."""
    exe = Path(sys.executable).with_name("camperhub")
    env = {**os.environ, "CAMPERHUB_STORE": "sqlite", "CAMPERHUB_SQLITE_PATH": str(store_file)}
    ok = subprocess.run([str(exe), *whatif("--json", "--add-panel-w", "100")], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["scenario"]["pv_kwp"] == pytest.approx(0.5)
    bad = subprocess.run(
        [str(exe), "workshop", "whatif", "--camper", "nobody", "--from", "2026-05-04", "--to", "2026-05-05"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert bad.returncode == 2 and "sconosciuto" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("code", ["it", "en"])
def test_every_message_of_the_verb_is_in_the_workshop_catalogue(code: str) -> None:
    import re

    found = extract_from_file("python", whatif_cli.__file__, keywords={"_": None, "N_": None})
    used = {msg for _, msg, _, _ in found if isinstance(msg, str)}
    assert len(used) > 25
    with i18n.po_path(code, "workshop").open("rb") as fh:
        catalog = read_po(fh, locale=i18n.babel_locale(code))
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    assert not sorted(used - set(translated)), f"{code}: not in workshop.po: {sorted(used - set(translated))}"
    for msg in used:
        assert set(re.findall(r"\{(\w+)\}", msg)) == set(re.findall(r"\{(\w+)\}", translated[msg])), msg


def test_the_verb_module_stays_light_at_import() -> None:
    """camperhub builds every parser at start-up: the verb must not pull pandas or pvlib in."""
    code = "import sys, camperhub.workshops.whatif_cli; print(sorted(m for m in ('pandas', 'pvlib', 'numpy', 'babel') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"
