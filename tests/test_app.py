"""The app as a whole: settings, error pages, headers, health."""

from __future__ import annotations

import ast
import logging
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import text
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from microsite import create_app
from microsite.config import DEFAULTS, SettingsError, load
from microsite.extensions import db
from tests.conftest import base_config
from tests.helpers import csrf_token, post_form
from tests.test_pledge import VALID

# A SECRET_KEY as an operator sets one: long enough to be accepted.
KEY = "from-env-a-key-of-32-characters-or-more"
ROOT = Path(__file__).resolve().parent.parent


def test_secret_key_is_generated_once_and_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = load(tmp_path, None)["SECRET_KEY"]
    second = load(tmp_path, None)["SECRET_KEY"]
    assert len(first) == 64
    assert first == second
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_environment_overrides_defaults(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example/renate")
    monkeypatch.setenv("STRIPE_ALLOW_LIVE", "1")
    monkeypatch.setenv("ADMIN_IDLE_MINUTES", "15")
    monkeypatch.setenv("STRIPE_TIMEOUT", "2.5")
    config = load(tmp_path, None)
    assert config["SECRET_KEY"] == KEY
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db.example/renate"
    assert config["STRIPE_ALLOW_LIVE"] is True
    assert config["ADMIN_IDLE_MINUTES"] == 15
    assert config["STRIPE_TIMEOUT"] == "2.5"
    assert not (tmp_path / "secret_key").exists()


def test_default_database_is_sqlite_under_instance(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = load(tmp_path, None)
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'renate.db'}"


def test_a_set_secret_key_still_gets_a_home_for_the_embedded_database(
    tmp_path: Path, monkeypatch
) -> None:
    # The quickstart with SECRET_KEY in .env: no key file is written, yet the migrations
    # must find instance/ to make the SQLite file in.
    from flask_migrate import upgrade

    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    instance = tmp_path / "fresh" / "instance"
    app = create_app({"INSTANCE_PATH": str(instance), **load(instance, None)})
    with app.app_context():
        upgrade()
        from microsite.models import db

        db.engine.dispose()
    assert (instance / "renate.db").is_file()
    assert not (instance / "secret_key").exists()


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path: Path) -> None:
    from sqlalchemy import text

    from microsite.models import db
    from tests.conftest import base_config

    # Its own SQLite file, so this runs whichever database the rest of the suite uses.
    app = create_app(base_config(f"sqlite:///{tmp_path / 'wal.db'}", tmp_path))
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() == 15000
        assert db.session.execute(text("SELECT lower('NOVÁK')")).scalar() == "novák"
        # Erased rows are overwritten in the file, whatever SQLite was built with.
        assert db.session.execute(text("PRAGMA secure_delete")).scalar() == 1
        db.session.remove()
        db.engine.dispose()


def test_security_headers(client: FlaskClient) -> None:
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "form-action 'self' https://checkout.stripe.com" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_a_json_content_type_on_a_get_is_still_served(client: FlaskClient) -> None:
    # Only bodies are refused as JSON: a monitor sending the header on a GET is answered.
    assert client.get("/healthz", headers={"Content-Type": "application/json"}).status_code == 200
    assert client.get("/", headers={"Content-Type": "application/json"}).status_code == 200


def test_health_check(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_a_failed_statement_s_error_never_carries_its_values(app: Flask) -> None:
    # Such errors are logged (and shown when debugging): a pledge's intention, a donor's
    # email must not go with them into the log.
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from microsite.models import db

    with app.app_context(), pytest.raises(DBAPIError) as failed:
        db.session.execute(
            text("INSERT INTO no_such_table VALUES (:intention)"),
            {"intention": "for my brother in prison"},
        )
    assert "for my brother" not in str(failed.value)
    assert "parameters hidden" in str(failed.value)


def test_a_healthy_probe_writes_nothing_to_the_log(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    # A load balancer asks every few seconds: the log keeps room for what went wrong.
    caplog.set_level(logging.DEBUG)
    assert client.get("/healthz").status_code == 200
    assert caplog.records == []


def test_a_database_never_upgraded_is_not_reported_healthy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `flask run` before `flask db upgrade`: every page would fail, so the check says so.
    app = create_app(base_config(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "error", "database": "not migrated: run flask db upgrade"}
    assert "run flask db upgrade" in caplog.text


@pytest.fixture
def schema_at(app):
    """Set the database's recorded migration for one test (restored after: on PostgreSQL
    the next test shares the table)."""
    from sqlalchemy import text

    from microsite.models import db

    def set_to(revision: str) -> None:
        with app.app_context():
            db.session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
            db.session.commit()

    with app.app_context():
        head = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    yield set_to
    set_to(head)


def test_a_database_one_release_behind_is_not_healthy_and_is_logged_once(
    client: FlaskClient, schema_at, caplog: pytest.LogCaptureFixture
) -> None:
    schema_at("0005")
    probes = [client.get("/healthz") for _ in range(3)]
    assert [p.status_code for p in probes] == [503, 503, 503]
    assert caplog.text.count("the database is not migrated (behind)") == 1


def test_a_database_upgraded_by_a_newer_release_keeps_this_one_in_service(
    client: FlaskClient, schema_at
) -> None:
    # A rolling deploy: `flask db upgrade` has run, and the old workers still serve.
    schema_at("9999_from_a_newer_release")
    assert client.get("/healthz").status_code == 200


def test_a_page_failing_for_want_of_tables_tells_the_operator_the_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(base_config(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path, TESTING=False))
    for path in ("/", "/pledge"):
        response = app.test_client().get(path)
        assert response.status_code == 503, path
        assert "This site is not ready yet" in response.text
    # One line each, the command in it; no traceback to read through.
    told = [r for r in caplog.records if "run flask db upgrade" in r.getMessage()]
    assert [r.getMessage() for r in told] == [
        "the database has no tables for this site: run flask db upgrade"
    ] * 2
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)


def test_a_postgresql_url_without_its_driver_says_what_to_install(
    tmp_path: Path, monkeypatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def without_psycopg(name: str, *args: object, **kwargs: object):
        if name.split(".")[0] == "psycopg":
            raise ModuleNotFoundError(f"No module named {name!r}", name="psycopg")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_psycopg)
    with pytest.raises(SettingsError, match=r"pip install -e '\.\[postgres\]'"):
        create_app(base_config("postgresql+psycopg://nobody@127.0.0.1/none", tmp_path))


def _start_with_database(url: str, tmp_path: Path, monkeypatch) -> Flask:
    """create_app as a server starts it, with this DATABASE_URL in the environment."""
    import microsite
    from microsite import config

    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(microsite, "load_dotenv", lambda *args, **kwargs: False)
    monkeypatch.setattr(config, "INSTANCE", tmp_path / "instance")
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.setenv("DATABASE_URL", url)
    return create_app()


@pytest.mark.parametrize("url", ["garbage", "renate.db", "://nowhere"])
def test_a_database_url_that_is_not_an_address_says_what_one_looks_like(
    tmp_path: Path, monkeypatch, url: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        _start_with_database(url, tmp_path, monkeypatch)
    assert str(refused.value) == (
        "DATABASE_URL must be a database address like sqlite:///renate.db or "
        "postgresql://user:pass@host/db"
    )


@pytest.mark.parametrize("relative", [False, True])
def test_a_sqlite_file_in_a_folder_that_does_not_exist_is_named_at_start(
    tmp_path: Path, monkeypatch, relative: bool
) -> None:
    missing = (tmp_path / "instance" if relative else tmp_path) / "no-such-folder"
    url = "sqlite:///no-such-folder/renate.db" if relative else f"sqlite:///{missing}/renate.db"
    with pytest.raises(SettingsError) as refused:
        _start_with_database(url, tmp_path, monkeypatch)
    assert str(refused.value) == (
        f"DATABASE_URL names a SQLite file in {missing}, a folder that does not exist: "
        "create the folder, or correct the address"
    )
    missing.mkdir(parents=True)
    with _start_with_database(url, tmp_path, monkeypatch).app_context():
        db.session.execute(text("SELECT 1"))
    assert (missing / "renate.db").is_file()


def test_a_relative_sqlite_file_is_made_in_instance_even_before_the_folder_exists(
    tmp_path: Path, monkeypatch
) -> None:
    with _start_with_database("sqlite:///renate.db", tmp_path, monkeypatch).app_context():
        db.session.execute(text("SELECT 1"))
    assert (tmp_path / "instance" / "renate.db").is_file()


@pytest.mark.parametrize(
    "url", ["mysql://renate:s3cret@db.example/renate", "mariadb+pymysql://u@h/db", "oracle://u@h"]
)
def test_a_database_the_site_does_not_support_is_named_at_start(
    tmp_path: Path, monkeypatch, url: str
) -> None:
    with pytest.raises(SettingsError, match="works with SQLite and PostgreSQL") as refused:
        _start_with_database(url, tmp_path, monkeypatch)
    assert "s3cret" not in str(refused.value)


def test_a_database_driver_that_is_not_installed_is_named_at_start(
    tmp_path: Path, monkeypatch
) -> None:
    with pytest.raises(SettingsError, match="asyncpg, which is not installed") as refused:
        _start_with_database("postgresql+asyncpg://u@127.0.0.1/db", tmp_path, monkeypatch)
    assert "postgresql://" in str(refused.value)


@pytest.mark.parametrize("scheme", ["Postgres", "POSTGRESQL", "postgres"])
def test_a_postgresql_url_is_read_whatever_the_case_of_its_scheme(
    tmp_path: Path, monkeypatch, scheme: str
) -> None:
    app = _start_with_database(f"{scheme}://u:p@db.example/renate", tmp_path, monkeypatch)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db.example/renate"


def test_404_page_in_site_style(client: FlaskClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert "We could not find that page" in response.text
    assert 'href="/static/site.css"' in response.text


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("/pledge/", "/pledge"),
        ("/pledge/thanks/", "/pledge/thanks"),
        ("/donate/?currency=GBP", "/donate?currency=GBP"),
        ("/articles/any-slug/", "/articles/any-slug"),
        ("/pledge/?q=é", "/pledge?q=%C3%A9"),
    ],
)
def test_an_address_copied_with_a_trailing_slash_still_arrives(
    client: FlaskClient, address: str, target: str
) -> None:
    answer = client.get(address)
    assert answer.status_code == 308
    assert answer.headers["Location"] == target


@pytest.mark.parametrize("address", ["/nothing-here/", "/%2F%2Fevil.example/", "/\\evil.example/"])
def test_a_trailing_slash_never_leads_anywhere_we_have_no_page(
    client: FlaskClient, address: str
) -> None:
    answer = client.get(address)
    assert answer.status_code == 404
    assert "Location" not in answer.headers


def test_a_post_to_an_address_with_a_trailing_slash_is_not_redirected(
    client: FlaskClient,
) -> None:
    assert client.post("/pledge/").status_code == 404


@pytest.mark.parametrize("path", ["/", "/pledge", "/nowhere", "/admin/"])
def test_a_host_name_no_address_can_have_is_a_bad_request_not_a_crash(
    client: FlaskClient, path: str
) -> None:
    # One part of a host name is at most 63 characters: no link on this site can be built
    # for such a Host, not even the error page's stylesheet.
    response = client.get(path, headers={"Host": "a" * 64 + ".example"})
    assert response.status_code == 400
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("host", ["xn--zz", "xn--", "www.xn--zz.org", "XN--ZZ:8000"])
@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("POST", "/admin/login")])
def test_a_host_header_no_address_can_have_is_a_bad_request(
    app: Flask, host: str, method: str, path: str
) -> None:
    # Sent as the raw header a client can send: Flask's test client cannot itself build
    # a URL for such a host. Every absolute link and redirect starts from the host.
    environ = EnvironBuilder(path=path, method=method).get_environ()
    environ["HTTP_HOST"] = host.encode().decode("latin-1")
    response = Response.from_app(app.wsgi_app, environ)
    assert response.status_code == 400
    assert b"Something in that request was not right" in response.get_data()


@pytest.mark.parametrize(
    "host",
    [
        "localhost:5000",
        "127.0.0.1",
        "[::1]:8080",
        "xn--bcher-kva.example",
        # A proxy's upstream name (nginx sends its own unless told otherwise), and none.
        "app_server",
        "app_server:8000",
        None,
    ],
)
def test_an_ordinary_host_header_is_served(app: Flask, host: str | None) -> None:
    environ = EnvironBuilder(path="/").get_environ()
    environ.pop("HTTP_HOST")
    if host is not None:
        environ["HTTP_HOST"] = host
    response = Response.from_app(app.wsgi_app, environ)
    assert response.status_code == 200
    assert b"I pledge to pray" in response.get_data()


def test_405_is_a_page_not_a_crash(client: FlaskClient) -> None:
    response = client.delete("/pledge")
    assert response.status_code == 405
    assert "That is not how this page works" in response.text


def test_500_page_hides_the_trace(make_app) -> None:
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.text
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text


def test_app_py_only_creates_the_app() -> None:
    source = (Path(__file__).parent.parent / "app.py").read_text()
    statements = [
        node
        for node in ast.parse(source).body
        if not isinstance(node, ast.Import | ast.ImportFrom)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    ]
    # Its one statement makes the app, or says which setting keeps it from starting.
    [guarded] = statements
    assert isinstance(guarded, ast.Try)
    assert [ast.unparse(node) for node in guarded.body] == ["app = create_app()"]
    assert [ast.unparse(handler.type) for handler in guarded.handlers] == ["SettingsError"]


def _environment_with(**settings: str) -> dict[str, str]:
    """This environment with none of the site's own settings but those given."""
    env = {k: v for k, v in os.environ.items() if k not in DEFAULTS}
    return env | settings


def test_a_setting_the_site_cannot_start_with_is_said_without_a_traceback(
    tmp_path: Path,
) -> None:
    env = _environment_with(SECRET_KEY="changeme", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    started = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "routes"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 3
    assert started.stderr.startswith("The site cannot start: SECRET_KEY is shorter than 32")
    assert "Traceback" not in started.stderr


def test_gunicorn_stops_on_a_refused_setting_instead_of_restarting_workers(
    tmp_path: Path,
) -> None:
    # A worker that exits 3 tells gunicorn's master the app cannot boot, so it shuts down.
    env = _environment_with(
        SECRET_KEY=KEY, DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", STRIPE_SECRET_KEY="sk_live_x"
    )
    server = subprocess.run(
        [sys.executable, "-m", "gunicorn", "app:app", "--bind", "127.0.0.1:0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert server.returncode == 3
    assert server.stderr.count("The site cannot start: STRIPE_SECRET_KEY is a live key") == 1
    assert "Traceback" not in server.stderr


def test_405_says_which_methods_are_allowed(client: FlaskClient) -> None:
    response = client.delete("/pledge")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_an_empty_key_file_is_never_used_as_the_secret_key(tmp_path: Path, monkeypatch) -> None:
    # What a second worker could read while the first was still writing the key.
    monkeypatch.delenv("SECRET_KEY", raising=False)
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(SettingsError, match="secret_key"):
        load(tmp_path, None)


def test_workers_starting_together_share_one_complete_key(tmp_path: Path, monkeypatch) -> None:
    import threading

    from microsite import config

    monkeypatch.delenv("SECRET_KEY", raising=False)
    real_token_hex = config.secrets.token_hex
    barrier = threading.Barrier(8)
    keys: list[str] = []

    def token_hex(n: int) -> str:
        barrier.wait(timeout=5)  # every worker finds no key, then all make one at once
        return real_token_hex(n)

    monkeypatch.setattr(config.secrets, "token_hex", token_hex)
    threads = [
        threading.Thread(target=lambda: keys.append(config._instance_secret_key(tmp_path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_a_blank_setting_in_the_environment_keeps_its_default(tmp_path: Path, monkeypatch) -> None:
    # A .env copied from the example with "TRUSTED_PROXIES=" left blank must still start.
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.setenv("TRUSTED_PROXIES", "")
    monkeypatch.setenv("ADMIN_IDLE_MINUTES", " ")
    config = load(tmp_path, None)
    assert config["TRUSTED_PROXIES"] == 0
    assert config["ADMIN_IDLE_MINUTES"] == 30


@pytest.mark.parametrize("key", ["...", "changeme", "x" * 31])
def test_a_short_or_placeholder_secret_key_stops_the_start(
    tmp_path: Path, monkeypatch, key: str
) -> None:
    # Whoever guesses the key can sign a cookie that opens the admin area.
    monkeypatch.setenv("SECRET_KEY", key)
    with pytest.raises(SettingsError, match="SECRET_KEY is shorter than 32 characters") as refused:
        load(tmp_path, None)
    assert "secrets.token_hex(32)" in str(refused.value)


@pytest.mark.parametrize("value", ["1", "true", "Yes", "ON", "0", "false", "no", "off"])
def test_the_usual_words_for_true_and_false_are_read(
    tmp_path: Path, monkeypatch, value: str
) -> None:
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.setenv("SESSION_COOKIE_SECURE", value)
    expected = value.lower() in ("1", "true", "yes", "on")
    assert load(tmp_path, None)["SESSION_COOKIE_SECURE"] is expected


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("TRUSTED_PROXIES", "one", "TRUSTED_PROXIES must be a whole number"),
        # Else the first request through a proxy would be a 500.
        ("TRUSTED_PROXIES", "-1", "TRUSTED_PROXIES must be 0 or more"),
        # Else every form, or every one of Stripe's events, would be refused as too large.
        ("MAX_CONTENT_LENGTH", "0", "MAX_CONTENT_LENGTH must be at least 16384"),
        ("MAX_CONTENT_LENGTH", "-5", "MAX_CONTENT_LENGTH must be at least 16384"),
        ("MAX_CONTENT_LENGTH", "2048", "MAX_CONTENT_LENGTH must be at least 16384"),
        ("WEBHOOK_MAX_CONTENT_LENGTH", "0", "WEBHOOK_MAX_CONTENT_LENGTH must be at least 65536"),
        ("WEBHOOK_MAX_CONTENT_LENGTH", "4096", "WEBHOOK_MAX_CONTENT_LENGTH must be at least"),
        # Else every admin session would end the moment it began, with no word of why.
        ("ADMIN_IDLE_MINUTES", "0", "ADMIN_IDLE_MINUTES must be 1 or more"),
        ("ADMIN_IDLE_MINUTES", "-1", "ADMIN_IDLE_MINUTES must be 1 or more"),
        ("ADMIN_ABSOLUTE_HOURS", "0", "ADMIN_ABSOLUTE_HOURS must be 1 or more"),
        # Read as "off", SESSION_COOKIE_SECURE=ture would send the cookie over plain HTTP.
        ("SESSION_COOKIE_SECURE", "ture", "SESSION_COOKIE_SECURE must be 1 or 0"),
        ("RATELIMIT_ENABLED", "y", "RATELIMIT_ENABLED must be 1 or 0"),
        ("STRIPE_ALLOW_LIVE", "2", "STRIPE_ALLOW_LIVE must be 1 or 0"),
        # A rate limit that cannot be read would be switched off, not enforced.
        ("PLEDGE_RATE_LIMIT", "5/minit", "PLEDGE_RATE_LIMIT must be limits like '10 per minute'"),
        ("DONATE_RATE_LIMIT", "lots", "DONATE_RATE_LIMIT must be limits like"),
        ("LOGIN_RATE_LIMIT", "20_per_15_min", "LOGIN_RATE_LIMIT must be limits like"),
        ("LOGIN_ACCOUNT_RATE_LIMIT", "5 per minit", "LOGIN_ACCOUNT_RATE_LIMIT must be limits"),
    ],
)  # fmt: skip
def test_a_mistyped_setting_stops_the_start_with_its_name(
    tmp_path: Path, monkeypatch, name: str, value: str, said: str
) -> None:
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=re.escape(said)):
        load(tmp_path, None)


def test_a_misspelt_setting_name_is_pointed_out(
    tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.setenv("STRIPE_SECRT_KEY", "sk_test_abc")
    monkeypatch.setenv("STRIPE_TEST_SECRET_KEY", "sk_test_abc")  # read by a test, not the site
    load(tmp_path, None)
    assert "STRIPE_SECRT_KEY is not a setting of this site; did you mean STRIPE_SECRET_KEY?" in (
        caplog.text
    )
    assert "STRIPE_TEST_SECRET_KEY" not in caplog.text


def test_a_mistake_in_the_instance_settings_file_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text('SITE_NAME = "RENATE"\nSITE_URL = https://x.org\n')
    with pytest.raises(SettingsError, match=r"settings\.py, line 2: invalid syntax"):
        load(tmp_path, None)
    # Text left without its quotes, the likeliest slip: Python reads it as a name.
    (tmp_path / "settings.py").write_text('SITE_NAME = "RENATE"\n\nCONTACT_EMAIL = office\n')
    with pytest.raises(SettingsError) as refused:
        load(tmp_path, None)
    assert str(refused.value) == (
        f"{tmp_path / 'settings.py'}, line 3: NameError: name 'office' is not defined. It is "
        'Python: a setting reads like SITE_NAME = "RENATE", text in quotes, numbers without.'
    )


def test_a_misspelt_name_in_the_instance_settings_file_is_pointed_out(
    tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SECRET_KEY", KEY)
    (tmp_path / "settings.py").write_text('CONTACT_EMAL = "office@renate.example"\n')
    load(tmp_path, None)
    assert (
        "CONTACT_EMAL in settings.py is not a setting of this site; did you mean CONTACT_EMAIL?"
        in caplog.text
    )


@pytest.mark.parametrize(
    ("line", "name", "expected"),
    [
        ('ADMIN_IDLE_MINUTES = "15"', "ADMIN_IDLE_MINUTES", 15),
        ('SESSION_COOKIE_SECURE = "no"', "SESSION_COOKIE_SECURE", False),
        ('SESSION_COOKIE_SECURE = "1\\n"', "SESSION_COOKIE_SECURE", True),
        ("SESSION_COOKIE_SECURE = True", "SESSION_COOKIE_SECURE", True),
        ('TRUSTED_PROXIES = ""', "TRUSTED_PROXIES", 0),
        ("TRUSTED_PROXIES = 2", "TRUSTED_PROXIES", 2),
    ],
)
def test_the_instance_settings_file_is_read_like_the_environment(
    tmp_path: Path, monkeypatch, line: str, name: str, expected: object
) -> None:
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.delenv(name, raising=False)
    (tmp_path / "settings.py").write_text(line + "\n")
    value = load(tmp_path, None)[name]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('SESSION_COOKIE_SECURE = "ture"', "SESSION_COOKIE_SECURE must be 1 or 0"),
        ("SESSION_COOKIE_SECURE = 1", "SESSION_COOKIE_SECURE must be True or False"),
        ('STRIPE_ALLOW_LIVE = "2"', "STRIPE_ALLOW_LIVE must be 1 or 0"),
        ("STRIPE_ALLOW_LIVE = [0]", "STRIPE_ALLOW_LIVE must be True or False"),
        ('TRUSTED_PROXIES = "one"', "TRUSTED_PROXIES must be a whole number"),
        ("ADMIN_IDLE_MINUTES = 2.5", "ADMIN_IDLE_MINUTES must be a whole number"),
        ("ADMIN_IDLE_MINUTES = True", "ADMIN_IDLE_MINUTES must be a whole number"),
    ],
)
def test_a_mistyped_value_in_the_instance_settings_file_stops_the_start(
    tmp_path: Path, monkeypatch, line: str, said: str
) -> None:
    monkeypatch.setenv("SECRET_KEY", KEY)
    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRET_KEY", KEY)
    (tmp_path / "settings.py").write_text(line + "\n")
    with pytest.raises(SettingsError, match=re.escape(said)) as refused:
        load(tmp_path, None)
    assert "settings.py" in str(refused.value)


def test_an_instance_folder_the_site_cannot_write_says_what_to_do(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    locked = tmp_path / "instance"
    locked.mkdir()

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr("microsite.config.tempfile.mkstemp", refuse)
    with pytest.raises(SettingsError, match="cannot write a secret key into") as refused:
        load(locked, None)
    assert "Read-only file system" in str(refused.value)
    assert "Set SECRET_KEY" in str(refused.value)


@pytest.mark.parametrize(
    ("uri", "said"),
    [("bogus", "unknown storage scheme"), ("memcached://", "prerequisite not available")],
)
def test_a_rate_limit_store_that_cannot_be_used_stops_the_start(
    tmp_path: Path, uri: str, said: str
) -> None:
    config = base_config(f"sqlite:///{tmp_path / 'renate.db'}", tmp_path)
    with pytest.raises(SettingsError, match="RATELIMIT_STORAGE_URI cannot be used") as refused:
        create_app({**config, "RATELIMIT_STORAGE_URI": uri})
    assert said in str(refused.value)


def test_a_sqlite_too_old_to_store_pledges_stops_the_start(tmp_path: Path, monkeypatch) -> None:
    # Python uses the system's SQLite; before 3.35 every pledge would fail.
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(SettingsError, match=r"SQLite 3\.31\.1; the site needs 3\.35 or newer"):
        create_app(base_config(f"sqlite:///{tmp_path / 'renate.db'}", tmp_path))
    # A PostgreSQL database does not care which SQLite Python has.
    create_app(base_config("postgresql+psycopg://nobody@127.0.0.1/none", tmp_path))


def test_one_ipv6_network_shares_one_pledge_limit(make_app) -> None:
    # An IPv6 client can pick any address in its /64: each must not get a fresh limit.
    app = make_app(PLEDGE_RATE_LIMIT="2 per minute")
    statuses = []
    for n, address in enumerate(("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9")):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        data = {**VALID, "email": f"v6-{n}@example.org"}
        statuses.append(post_form(client, "/pledge", data).status_code)
    assert statuses == [303, 303, 429]
    limited = post_form(client, "/pledge", {**VALID, "email": "v6-again@example.org"})
    assert "too many attempts from here" in limited.text
    assert 'value="v6-again@example.org"' in limited.text  # the form, as typed
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "2001:db8:1:3::1"  # the next /64: someone else
    other = post_form(elsewhere, "/pledge", {**VALID, "email": "v6-x@example.org"})
    assert other.status_code == 303


def test_a_request_through_each_trusted_proxy_is_served(make_app) -> None:
    for hops in (0, 1, 2):
        app = make_app(TRUSTED_PROXIES=hops)
        page = app.test_client().get("/", headers={"X-Forwarded-For": "203.0.113.9"})
        assert page.status_code == 200
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES must be 0 or more"):
        make_app(TRUSTED_PROXIES=-1)


def test_a_forwarded_host_never_names_the_site(make_app) -> None:
    app = make_app(TRUSTED_PROXIES=1, SITE_URL="")
    page = app.test_client().get(
        "/",
        headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    )
    assert '<link rel="canonical" href="https://localhost/">' in page.text
    assert "evil.example" not in page.text


@pytest.fixture
def app_without_its_database(tmp_path: Path) -> Flask:
    """The site as a server runs it (errors become pages) on a database nobody answers for."""
    app = create_app(base_config("postgresql+psycopg://renate:s3cret@127.0.0.1:1/renate", tmp_path))
    app.testing = False
    return app


@pytest.mark.parametrize("path", ["/", "/pledge", "/donate/thanks?session_id=cs_test_a1"])
def test_a_page_while_the_database_cannot_be_reached_says_to_wait(
    app_without_its_database: Flask, path: str
) -> None:
    page = app_without_its_database.test_client().get(path)
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "60"
    assert "The site cannot reach its records just now" in page.text
    assert "Nothing is wrong on your side. Please try again in a minute." in page.text
    assert f'<a class="button" href="{escape(path)}">Try again</a>' in page.text
    assert "s3cret" not in page.text and "Traceback" not in page.text


def test_a_pledge_sent_while_the_database_cannot_be_reached_is_told_it_was_not_saved(
    tmp_path: Path,
) -> None:
    # Under a daily limit too, the answer asks for a minute's wait, not the limit's day.
    url = "postgresql+psycopg://renate:s3cret@127.0.0.1:1/renate"
    app = create_app(base_config(url, tmp_path, PLEDGE_RATE_LIMIT="200 per day"))
    app.testing = False
    client = app.test_client()
    token = csrf_token(client.get("/donate").text)  # a page that needs no database
    sent = client.post("/pledge", data={**VALID, "csrf_token": token})
    assert sent.status_code == 503
    assert sent.headers["Retry-After"] == "60"
    assert "What you sent has not been saved" in sent.text
    assert "Back button keeps what you typed" in sent.text
    assert '<a class="button" href="/pledge">Back to the form</a>' in sent.text


def test_signing_in_while_the_database_cannot_be_reached_says_to_wait_in_the_admin_layout(
    app_without_its_database: Flask,
) -> None:
    client = app_without_its_database.test_client()
    token = csrf_token(client.get("/admin/login").text)
    sent = client.post(
        "/admin/login",
        data={"email": "a@example.org", "password": "a long enough password", "csrf_token": token},
    )
    assert sent.status_code == 503
    assert "The site cannot reach its records just now" in sent.text
    assert 'class="admin' in sent.text
