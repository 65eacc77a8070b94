"""The schema comes only from migrations, and the migrations match the models."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import downgrade, upgrade

from microsite import create_app
from microsite.config import ROOT
from microsite.models import Donation, Pledge, db
from microsite.records import DonationFilters, PledgeFilters, filter_donations, filter_pledges
from microsite.text import search_key
from tests.conftest import TEST_DATABASE_URL, _normalise, base_config

# A donation as an older revision's table holds it: raw SQL, as the models are newer.
OLD_DONATION: dict[str, object] = {
    "amount": 1000,
    "fee_covered": 0,
    "currency": "EUR",
    "frequency": "one_time",
    "status": "paid",
    "livemode": False,
    "anonymous": False,
    "amount_received": 1000,
    "amount_refunded": 0,
    "created_at": "2026-01-01 00:00:00",
    "updated_at": "2026-01-01 00:00:00",
}


def insert_old_donations(*rows: dict[str, object]) -> None:
    """Insert donations, each OLD_DONATION with its own columns, into the current revision."""
    for row in rows:
        values = {**OLD_DONATION, **row}
        table = sa.table("donation", *(sa.column(name) for name in values))
        db.session.execute(sa.insert(table).values(values))


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
        upgrade(revision="0005")
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


@pytest.fixture
def scratch_app(tmp_path: Path) -> Iterator[Flask]:
    """An app on an empty database, to migrate step by step: a new SQLite file, or on the
    PostgreSQL pass a schema of its own in the test database, dropped afterwards."""
    if not TEST_DATABASE_URL:
        yield from _closed_after(f"sqlite:///{tmp_path / 'scratch.db'}", tmp_path)
        return
    url = sa.make_url(_normalise(TEST_DATABASE_URL))
    schema = f"scratch_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        in_schema = url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield from _closed_after(in_schema.render_as_string(hide_password=False), tmp_path)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def _closed_after(url: str, tmp_path: Path) -> Iterator[Flask]:
    """The app, its connections closed once the test is done, whether or not it passed:
    PostgreSQL drops no schema a connection still has a transaction open in."""
    app = create_app(base_config(url, tmp_path))
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_names_stored_before_their_search_keys_are_found_by_the_search(
    scratch_app: Flask,
) -> None:
    # More pledges than the upgrade reads at a time, so the last are in a later batch.
    names = ["Jan Novák", "Zoë Brontë", *(f"Person {n}" for n in range(1200))]
    with scratch_app.app_context():
        upgrade(revision="0006")
        db.session.execute(
            sa.text(
                "INSERT INTO pledge (name, email, email_key, rhythm, show_publicly,"
                " consent_version, consented_at, created_at) VALUES (:name, :email, :email,"
                " 'daily', false, 'v1', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            ),
            [{"name": name, "email": f"p{n}@example.org"} for n, name in enumerate(names)],
        )
        insert_old_donations(
            {"reference": "r1", "donor_name": "Łukasz Żółć"},
            {"reference": "r2", "donor_name": None},
        )
        db.session.commit()
        upgrade()

        def pledgers(q: str) -> list[str]:
            query = filter_pledges(sa.select(Pledge.name), PledgeFilters(q=q))
            return list(db.session.scalars(query))

        def donors(q: str) -> list[str | None]:
            query = filter_donations(sa.select(Donation.donor_name), DonationFilters(q=q))
            return list(db.session.scalars(query))

        assert pledgers("novak") == ["Jan Novák"]
        assert pledgers("ZOE") == ["Zoë Brontë"]
        assert pledgers("person 1199") == ["Person 1199"]
        assert donors("lukasz zolc") == ["Łukasz Żółć"]
        keys = db.session.execute(sa.select(Donation.reference, Donation.donor_name_key))
        assert sorted(keys) == [("r1", "lukasz zolc"), ("r2", None)]
        # Every pledge has a name, so every pledge must have a key from now on.
        columns = {c["name"]: c for c in sa.inspect(db.engine).get_columns("pledge")}
        assert columns["name_key"]["nullable"] is False
        db.session.commit()  # PostgreSQL alters no table that a transaction is reading

        downgrade(revision="0006")
        inspector = sa.inspect(db.engine)
        assert "name_key" not in {c["name"] for c in inspector.get_columns("pledge")}
        assert "donor_name_key" not in {c["name"] for c in inspector.get_columns("donation")}
        assert db.session.scalar(sa.text("SELECT count(*) FROM pledge")) == len(names)


def test_the_keys_the_upgrade_made_are_the_keys_the_code_makes() -> None:
    # The upgrade keeps its own copy of the folding. Should the code's ever change, the keys
    # already stored no longer match what staff type: a new revision must make them again,
    # and this test then compares the code with that revision's copy.
    path = ROOT / "migrations" / "versions" / "0007_name_search_keys.py"
    spec = importlib.util.spec_from_file_location("name_search_keys", path)
    revision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision)
    samples = [
        "Jan Novák", "Zoë Brontë", "Łukasz Żółć", "Jürgen Müller", "São João", "Þóra Ørsted",
        "Straße", "İstanbul", "Gal·la", "Anne O\N{RIGHT SINGLE QUOTATION MARK}Neill",
        "Jose\u0301", "\uff2d\uff41\uff52\uff49\uff41", "Олена Ёлкина", "Ἀθηνᾶ",
        "محمد الأحمد", "李小龙", "हिंदी", "  two  spaces ", "", None,
    ]  # fmt: skip
    assert [revision.search_key(s) for s in samples] == [search_key(s) for s in samples]


def test_a_gift_s_session_from_before_the_session_table_still_leads_to_its_page(
    scratch_app: Flask,
) -> None:
    # A donor who paid just before the upgrade comes back after it with their session id.
    with scratch_app.app_context():
        upgrade(revision="0007")
        insert_old_donations(
            {"reference": "r1", "stripe_session_id": "cs_test_before"},
            {"reference": "r2", "stripe_session_id": None},
        )
        db.session.commit()
        upgrade()
        rows = db.session.execute(sa.text("SELECT session_id FROM checkout_session"))
        assert [row.session_id for row in rows] == ["cs_test_before"]
        db.session.commit()
        downgrade(revision="0007")
        assert "checkout_session" not in sa.inspect(db.engine).get_table_names()
        db.session.commit()
