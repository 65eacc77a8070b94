"""`flask backup`: a copy of the SQLite database that staff can keep, made while the site runs."""

from __future__ import annotations

import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from microsite import create_app
from microsite.models import db, schema_state
from tests.conftest import base_config

pytestmark = pytest.mark.sqlite_file


def rows(path: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as copy:
        return copy.execute(sql).fetchall()


@pytest.fixture
def filled(add_pledge, add_donation) -> None:
    add_pledge("Łukasz Żółć", "lukasz@example.org", country="PL")
    add_pledge("Олена Коваль", "olena@example.org")
    add_donation(donor_name="Zoë Brontë")


def test_the_copy_holds_every_row_and_opens_on_its_own(
    runner: FlaskCliRunner, filled: None, tmp_path: Path
) -> None:
    target = tmp_path / "backups" / "renate-2026-12-03.db"
    target.parent.mkdir()
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 0, result.output
    assert result.output == f"Copied the database to {target}: 2 pledges, 1 donation.\n"

    names = rows(target, "SELECT name FROM pledge ORDER BY name")
    assert names == [("Łukasz Żółć",), ("Олена Коваль",)]
    assert rows(target, "SELECT donor_name FROM donation") == [("Zoë Brontë",)]
    # One file, nothing beside it to forget, readable by its owner only.
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    assert rows(target, "PRAGMA journal_mode") == [("delete",)]
    assert rows(target, "PRAGMA integrity_check") == [("ok",)]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_the_copy_is_a_database_the_site_runs_on(
    runner: FlaskCliRunner, filled: None, tmp_path: Path
) -> None:
    target = tmp_path / "restored.db"
    assert runner.invoke(args=["backup", str(target)]).exit_code == 0
    restored = create_app(base_config(f"sqlite:///{target}", tmp_path / "instance"))
    with restored.app_context():
        assert schema_state() == "current"
    page = restored.test_client().get("/")
    assert '<span class="counter-number">2</span>' in page.text


def test_a_write_under_way_on_the_site_does_not_stop_the_copy_or_reach_it_half_done(
    app: Flask, runner: FlaskCliRunner, filled: None, tmp_path: Path
) -> None:
    # The site holds a write open (a pledge being saved) while the backup runs: the copy is
    # made at once, of what was committed.
    with app.app_context():
        live = db.engine.url.database
    with closing(sqlite3.connect(live, isolation_level=None)) as site:
        site.execute("BEGIN IMMEDIATE")
        site.execute("UPDATE pledge SET name = 'half-saved'")
        target = tmp_path / "during.db"
        result = runner.invoke(args=["backup", str(target)])
        site.execute("ROLLBACK")
    assert result.exit_code == 0, result.output
    assert ("half-saved",) not in rows(target, "SELECT name FROM pledge")
    assert len(rows(target, "SELECT name FROM pledge")) == 2


def test_an_existing_file_is_never_overwritten(
    runner: FlaskCliRunner, filled: None, tmp_path: Path
) -> None:
    target = tmp_path / "last-week.db"
    target.write_bytes(b"last week's backup")
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 1
    assert result.output == f"Error: {target} exists already: name a new file.\n"
    assert target.read_bytes() == b"last week's backup"


def test_a_folder_that_does_not_exist_is_told_and_leaves_nothing_behind(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    target = tmp_path / "no-such-folder" / "copy.db"
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write {target}: No such file or directory.\n"
    assert not target.parent.exists()


def test_a_copy_cut_short_leaves_no_file_that_looks_like_a_backup(
    runner: FlaskCliRunner, filled: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "copy.db"

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("microsite.cli.os.replace", full_disk)
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write {target}: No space left on device.\n"
    assert list(tmp_path.glob("copy.db*")) == []


def test_a_database_never_upgraded_says_to_upgrade_first(tmp_path: Path) -> None:
    app = create_app(base_config(f"sqlite:///{tmp_path / 'new.db'}", tmp_path))
    result = app.test_cli_runner().invoke(args=["backup", str(tmp_path / "copy.db")])
    assert result.exit_code == 1
    assert "run flask db upgrade first" in result.output
    assert not (tmp_path / "copy.db").exists()


def test_postgresql_is_pointed_to_its_own_tools(tmp_path: Path) -> None:
    # Nothing listens there; the command says what to use before it tries to connect.
    url = "postgresql+psycopg://renate:s3cret@127.0.0.1:1/renate"
    app = create_app(base_config(url, tmp_path))
    result = app.test_cli_runner().invoke(args=["backup", str(tmp_path / "copy.db")])
    assert result.exit_code == 1
    assert result.output == (
        "Error: the database is postgresql, not a SQLite file: back it up with its own tools "
        "(pg_dump for PostgreSQL).\n"
    )
