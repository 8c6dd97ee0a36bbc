"""``camperhub workshop report``: the real command on a SQLite store (the store logic runs on both
backends in test_report.py); bad input answers a message on stderr and exit 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from camperhub.cli import main
from camperhub.store.sqlite import SqliteStore
from tests.workshops.test_report import CAMPER, seed

EXE = Path(sys.executable).with_name("camperhub")


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "store.sqlite"
    store = SqliteStore(path)
    try:
        seed(store)
    finally:
        store.close()
    monkeypatch.setenv("CAMPERHUB_STORE", "sqlite")
    monkeypatch.setenv("CAMPERHUB_SQLITE_PATH", str(path))
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), "workshop", "report", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_html_handout_with_a_progress_bar_on_a_long_window(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "maggio.html"
    r = _run("--camper", CAMPER, "--from", "2026-04-20", "--to", "2026-05-10", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "reading days" in r.stderr and "21/21" in r.stderr  # rich's bar, on stderr, to the end
    html = out.read_text(encoding="utf-8")
    assert '<html lang="it">' in html and "Energia solare del camper van-1" in html and html.count("<tr") == 22


def test_pdf_handout_in_english_by_the_real_chromium(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "may.pdf"
    r = _run("--camper", CAMPER, "--from", "2026-05-04", "--to", "2026-05-04", "--lang", "en", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "reading days" not in r.stderr  # one day: no bar
    assert out.read_bytes().startswith(b"%PDF")


def test_without_a_pdf_engine_the_html_is_written_and_said(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "may.pdf"
    r = _run("--camper", CAMPER, "--from", "2026-05-04", "--to", "2026-05-04", "--out", str(out),
             env={"PATH": str(EXE.parent)})  # a PATH without chromium
    assert r.returncode == 1 and "no PDF engine found" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and "Energia solare" in out.with_suffix(".html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-05-05", "--to", "2026-05-04"], "the window is inverted: --to 2026-05-04 is before --from 2026-05-05"),
        (["--from", "2020-01-01", "--to", "2026-05-04"], "longer than 400 days"),
        (["--from", "2999-01-01", "--to", "2999-01-02"], "starts in the future"),
        (["--from", "2026-06-01", "--to", "2026-06-07"], "no energy readings for camper 'van-1' from 2026-06-01 to 2026-06-07"),
        (["--camper", "ghost", "--from", "2026-05-04", "--to", "2026-05-04"], "unknown camper 'ghost': the store knows van-1"),
        (["--camper", "Bad Id", "--from", "2026-05-04", "--to", "2026-05-04"], "camper id 'Bad Id' is not valid"),
        (["--from", "2026-05-04", "--to", "2026-05-04", "--out", "x.docx"], "must end in .html or .pdf"),
    ],
)
def test_bad_input_is_a_clear_message_and_exit_2(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  args: list[str], message: str) -> None:
    argv = ["workshop", "report", *(["--camper", CAMPER] if "--camper" not in args else []), *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "h.html")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "h.html").exists()


def test_a_date_that_is_not_one_is_refused_by_argparse(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["workshop", "report", "--camper", CAMPER, "--from", "2026-02-30", "--to", "2026-03-01", "--out", "x.html"])
    assert exc.value.code == 2 and "'2026-02-30' is not a date YYYY-MM-DD" in capsys.readouterr().err
