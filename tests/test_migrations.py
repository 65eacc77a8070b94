"""The schema comes only from migrations, and the migrations match the models."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import downgrade, upgrade

from microsite import create_app
from microsite.models import db
from tests.conftest import TEST_DATABASE_URL, base_config


def test_models_match_the_migrations(app: Flask) -> None:
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_head_has_every_table(app: Flask) -> None:
    with app.app_context():
        names = set(sa.inspect(db.engine).get_table_names())
    assert {t.name for t in db.metadata.sorted_tables} <= names
    assert "alembic_version" in names


def test_upgrade_an_empty_sqlite_database_then_downgrade(tmp_path: Path) -> None:
    # Always on a new SQLite file, whichever database the rest of the suite uses.
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    app = create_app(base_config(url, tmp_path))
    with app.app_context():
        upgrade()
        assert "pledge" in sa.inspect(db.engine).get_table_names()
        downgrade(revision="base")
        assert sa.inspect(db.engine).get_table_names() == ["alembic_version"]
        upgrade()
        assert "donation" in sa.inspect(db.engine).get_table_names()
        db.engine.dispose()


def test_postgres_suite_really_uses_postgres(app: Flask) -> None:
    with app.app_context():
        dialect = db.engine.dialect.name
    assert dialect == ("postgresql" if TEST_DATABASE_URL else "sqlite")


def test_email_keys_made_by_casefold_become_lower_case_keys(tmp_path: Path) -> None:
    # Before 0005 a key was casefold(): "Straße@x" was stored as "strasse@x", the same
    # key as a different mailbox, strasse@x. The upgrade gives it its own key back.
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    app = create_app(base_config(url, tmp_path))
    with app.app_context():
        upgrade(revision="0004")
        db.session.execute(
            sa.text(
                "INSERT INTO pledge (name, email, email_key, rhythm, show_publicly,"
                " consent_version, consented_at, created_at) VALUES"
                " ('Anna', 'Straße@example.de', 'strasse@example.de', 'daily', 0, 'v1',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00'),"
                " ('Ben', 'MARIA@example.org', 'maria@example.org', 'daily', 0, 'v1',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
        db.session.commit()
        upgrade()
        keys = db.session.execute(sa.text("SELECT name, email_key FROM pledge ORDER BY name"))
        assert list(keys) == [("Anna", "straße@example.de"), ("Ben", "maria@example.org")]
        # Back down: the earlier code looks pledges up by casefold() keys, so they return,
        # except where two people's addresses would fold into one.
        db.session.execute(
            sa.text(
                "INSERT INTO pledge (name, email, email_key, rhythm, show_publicly,"
                " consent_version, consented_at, created_at) VALUES"
                " ('Cleo', 'strasse@example.de', 'strasse@example.de', 'daily', 0, 'v1',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00'),"
                " ('Dora', 'Groß@example.at', 'groß@example.at', 'daily', 0, 'v1',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
        db.session.commit()
        downgrade(revision="0004")
        keys = db.session.execute(sa.text("SELECT name, email_key FROM pledge ORDER BY name"))
        assert list(keys) == [
            ("Anna", "straße@example.de"),
            ("Ben", "maria@example.org"),
            ("Cleo", "strasse@example.de"),
            ("Dora", "gross@example.at"),
        ]
        db.session.remove()
        db.engine.dispose()
