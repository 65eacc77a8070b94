"""Fixtures shared by every test: an app on a fresh, migrated database per test.

With TEST_DATABASE_URL set (a PostgreSQL URL), every database test runs against that
server instead of SQLite; the schema is made there by the same migrations.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from werkzeug.serving import make_server

from microsite import create_app
from microsite.models import db

pytest_plugins = ["tests.browser", "tests.stripe_fake", "tests.admin_fixtures"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")


def base_config(database_uri: str, instance: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "INSTANCE_PATH": str(instance),
        "SITE_URL": "http://localhost",
        "CONTACT_EMAIL": "privacy@renate.example",
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    config.update(overrides)
    return config


def _normalise(url: str) -> str:
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _migrate(url: str, instance: Path) -> str:
    app = create_app(base_config(url, instance))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file made by the migrations once per test session, copied for each test."""
    template = tmp_path_factory.mktemp("template") / "template.db"
    return _migrate(f"sqlite:///{template}", tmp_path_factory.mktemp("instance"))


@pytest.fixture(scope="session")
def migrated_database(request: pytest.FixtureRequest) -> str:
    """Run the migrations once per test session; each test then starts from this schema."""
    if not TEST_DATABASE_URL:
        return request.getfixturevalue("migrated_sqlite")
    url = _normalise(TEST_DATABASE_URL)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return _migrate(url, request.getfixturevalue("tmp_path_factory").mktemp("instance"))


@pytest.fixture
def database_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database for one test: a copy of the migrated SQLite file, or emptied tables.

    A test marked `sqlite_file` is about SQLite's own file, so it gets one on either pass.
    """
    if TEST_DATABASE_URL and request.node.get_closest_marker("sqlite_file") is None:
        migrated_database = request.getfixturevalue("migrated_database")
        engine = sa.create_engine(migrated_database)
        names = [t.name for t in db.metadata.sorted_tables]
        with engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
        engine.dispose()
        return migrated_database
    source = Path(request.getfixturevalue("migrated_sqlite").removeprefix("sqlite:///"))
    target = tmp_path / "test.db"
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


@pytest.fixture
def make_app(database_uri: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build an app on this test's database, with settings overridden as a test needs."""
    made: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        instance = tmp_path / "instance"
        instance.mkdir(exist_ok=True)
        app = create_app(base_config(database_uri, instance, **overrides))
        made.append(app)
        return app

    yield factory
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def _always_closed(app: Flask) -> Callable[..., Iterator[bytes]]:
    """Close each response even when the browser hangs up half-way through it.

    A closing page drops its favicon or stylesheet download; Werkzeug's development server
    then skips the response's close(), and the open static file would surface later as a
    ResourceWarning in an unrelated test.
    """

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        response = app(environ, start_response)
        try:
            yield from response
        finally:
            close = getattr(response, "close", None)
            if close is not None:
                close()

    return wsgi


class LiveServer:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", 0, _always_closed(app), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        # Polled often, so that stopping the server after each test is quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    """The app served over real HTTP on a free local port, for the browser."""
    server = LiveServer(app).start()
    yield server
    server.stop()
