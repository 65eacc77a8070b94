"""The RENATE donation and prayer-pledge microsite."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dotenv import load_dotenv
from flask import Flask, current_app, redirect, render_template, request, url_for
from flask.globals import request_ctx
from flask_wtf.csrf import CSRFError
from limits.errors import ConfigurationError
from markupsafe import Markup
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from . import config as settings
from .content import ContentLibrary
from .extensions import csrf, db, limiter, migrate
from .models import schema_state

__all__ = ["create_app"]


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints, CLI and error pages."""
    root = settings.ROOT
    instance = Path(test_config.get("INSTANCE_PATH", settings.INSTANCE)) if test_config else None
    if test_config is None:
        load_dotenv(root / ".env", override=False)
    app = Flask(
        __name__,
        instance_path=str(instance or settings.INSTANCE),
        template_folder=str(root / "templates"),
        static_folder=str(root / "site" / "static"),
    )
    app.config.from_mapping(settings.load(Path(app.instance_path), test_config))

    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_template_helpers(app)
    register_cli(app)
    return app


def register_extensions(app: Flask) -> None:
    from . import payments, security

    check_sqlite_version(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        db.init_app(app)
    except ModuleNotFoundError as missing:
        if missing.name in ("psycopg", "psycopg2"):
            raise settings.SettingsError(
                "DATABASE_URL is a PostgreSQL address, but PostgreSQL's driver is not "
                "installed: run pip install -e '.[postgres]'"
            ) from None
        # A driver named in the address (postgresql+asyncpg://, say) that is not here.
        raise settings.SettingsError(
            f"DATABASE_URL asks for the database driver {missing.name}, which is not "
            "installed. Leave the driver out, as in postgresql://user:pass@host/db (the site "
            "then uses psycopg: pip install -e '.[postgres]') or sqlite:///renate.db"
        ) from None
    migrate.init_app(app, db, directory=str(settings.ROOT / "migrations"))
    security.init_app(app)  # first: its body checks run before CSRF reads the form
    csrf.init_app(app)
    try:
        limiter.init_app(app)
    except ConfigurationError as error:
        raise settings.SettingsError(
            f"RATELIMIT_STORAGE_URI cannot be used ({error}). Use memory://, or "
            "redis://host:6379 after pip install -e '.[redis]'."
        ) from None
    payments.init_app(app)
    app.extensions["content"] = ContentLibrary(Path(app.config["CONTENT_DIR"]))
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO)
    # The stripe library logs each request at INFO, and Stripe's error messages (which may
    # quote a donor's address) with them; the site logs what it needs of those itself.
    logging.getLogger("stripe").setLevel(logging.WARNING)


# INSERT ... ON CONFLICT ... RETURNING, which records a pledge once per address.
SQLITE_NEEDED = (3, 35)


def check_sqlite_version(uri: str) -> None:
    """Stop at start, with what to do, on a SQLite too old to store a pledge."""
    if uri.startswith("sqlite") and sqlite3.sqlite_version_info < SQLITE_NEEDED:
        needed = ".".join(map(str, SQLITE_NEEDED))
        raise settings.SettingsError(
            f"This Python uses SQLite {sqlite3.sqlite_version}; the site needs {needed} or "
            "newer. Use a newer Python build (python.org's and most current systems' have "
            "it), or set DATABASE_URL to a PostgreSQL database."
        )


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers and a writer work at once; the busy timeout makes writers wait."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten, not left in free pages: erasure means erasure.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()
        # SQLite's own lower() folds ASCII only: "NOVÁK" would never find "Novák".
        dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def register_blueprints(app: Flask) -> None:
    from .views import admin, donate, pledge, public, webhooks

    for module in (public, pledge, donate, webhooks, admin):
        app.register_blueprint(module.bp)


ERROR_MESSAGES = {
    400: ("Something in that request was not right", "Please go back, check and try again."),
    403: ("You cannot see this page", "If you think you should, please sign in again."),
    404: (
        "We could not find that page",
        "It may have moved. The article and the forms are on the home page.",
    ),
    405: ("That is not how this page works", "Please go back to the page you came from."),
    415: (
        "This page takes only its own form",
        "Please use the form on the page, in a web browser.",
    ),
    413: (
        "That was too much to send",
        "What you sent was larger than this site accepts. Please shorten it and try again.",
    ),
    429: ("Too many attempts", "Please wait a little and try again."),
    503: ("This site is unavailable just now", "Please try again in a minute."),
    500: (
        "Something went wrong on our side",
        "Nothing you did caused this. Please try again in a few minutes.",
    ),
}


def absolute_url(path: str) -> str:
    """A full URL for a path on this site: SITE_URL when set, else the request's own host."""
    base = current_app.config["SITE_URL"].rstrip("/") or request.url_root.rstrip("/")
    return base + path


# Inside the admin area a page not found is not about the article and its forms.
ADMIN_ERROR_MESSAGES = {
    404: ("We could not find that admin page", "It may have moved, or the link was cut short."),
}


def in_admin_area() -> bool:
    """Whether this request is for a page under /admin, whether or not a route matched it."""
    prefix = current_app.blueprints["admin"].url_prefix or "/admin"
    return request.path == prefix or request.path.startswith(f"{prefix}/")


def render_error(code: int, title: str | None = None, message: str | None = None, **extra: Any):
    """The site's error page; inside the admin area, in the admin's layout."""
    admin_page = in_admin_area()
    messages = ERROR_MESSAGES | ADMIN_ERROR_MESSAGES if admin_page else ERROR_MESSAGES
    default_title, default_message = messages.get(code, ERROR_MESSAGES[400])
    return (
        render_template(
            "admin/error.html" if admin_page else "errors/error.html",
            code=code,
            title=title or default_title,
            message=message or default_message,
            **extra,
        ),
        code,
    )


def _reload_url() -> str:
    """Where "Reload the form" goes: the page the form was on, never a POST-only address."""
    referrer = request.referrer or ""
    if referrer.startswith(request.host_url):
        return referrer
    try:
        current_app.url_map.bind_to_environ(request.environ).match(request.path, method="GET")
    except HTTPException:
        return url_for("public.home")
    return request.path


def _without_trailing_slash() -> str | None:
    """Our own address for a GET of "/pledge/" (a link copied with a slash), if there is one.

    The address is rebuilt from the matched route, never copied from the request, so a
    path such as "//elsewhere.example/" cannot turn this into a redirect off the site.
    """
    path = request.path
    if request.method not in ("GET", "HEAD") or len(path) < 2 or not path.endswith("/"):
        return None
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        endpoint, values = adapter.match(path.rstrip("/"), method="GET")
    except HTTPException:
        return None
    target = adapter.build(endpoint, values)
    # The query's bytes as they came, any outside ASCII percent-encoded (a client may send
    # raw UTF-8), never decoded and encoded again.
    query = quote(request.query_string, safe="/?:@&=+$,;%!*'()~[]")
    return f"{target}?{query}" if query else target


def _hint_at_missing_schema(cause: BaseException | None) -> bool:
    """After a database error, if the schema is behind this code (a missing table or
    column), tell the operator the one command that fixes it. True when that was it."""
    if not isinstance(cause, SQLAlchemyError):
        return False
    try:
        db.session.rollback()
        state = schema_state()
    except SQLAlchemyError:
        return False  # the database itself is the trouble; its error is logged already
    if state == "missing":
        current_app.logger.error("the database has no tables for this site: run flask db upgrade")
    elif state == "behind":
        current_app.logger.error(
            "the database is behind this release's schema: run flask db upgrade"
        )
    return state in ("missing", "behind")


def _breached_limits() -> list[Any]:
    return [limit for limit in limiter.current_limits if limit.breached]


def _longest_spent_limit() -> Any | None:
    return max(_breached_limits(), key=lambda limit: limit.reset_at, default=None)


def seconds_to_wait() -> int | None:
    """After a 429: how long until every limit this request spent lets it in again."""
    longest = _longest_spent_limit()
    return max(1, int(longest.reset_at - time.time())) if longest else None


def wait_in_words(seconds: int) -> str:
    """A wait as people say it, never shorter than the wait itself: "40 seconds",
    "6 minutes" (for 5 minutes 20 seconds), "2 hours"."""
    if seconds <= 90:
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    minutes = -(-seconds // 60)
    if minutes <= 90:
        return f"{minutes} minutes"
    hours = -(-minutes // 60)
    return f"{hours} hour{'' if hours == 1 else 's'}"


def without_tags(value: Any) -> str:
    """Markup's words without its tags, as Jinja's striptags gives them, but with each
    no-break space kept one: in the error summary too, "CHF 1.00" stays on one line.

    Read as markup only to find its tags; what comes back is plain text, escaped where shown.
    """
    return Markup(str(value).replace("\u00a0", "&#160;")).striptags()  # noqa: S704


def retry_after_header(retry: int | None) -> dict[str, str]:
    return {"Retry-After": str(retry)} if retry else {}


def too_many_attempts_page() -> tuple[str, int, dict[str, str]]:
    """The 429 page: who has tried too often, and when to try again."""
    retry = seconds_to_wait()
    # The sign-in's per-account limit is filled by attempts from anywhere, not from here.
    # Of the limits spent, the one named is the one whose wait is given.
    longest = _longest_spent_limit()
    whose = "to sign in to this account" if longest and "account:" in longest.key else "from here"
    body, code = render_error(
        429,
        message=(
            f"There have been too many attempts {whose} in a short while. "
            + (
                f"Please try again in {wait_in_words(retry)}."
                if retry
                else "Please wait a minute and try again."
            )
        ),
        action_url=_reload_url(),
        action_label="Back to the page",
    )
    return body, code, retry_after_header(retry)


# How long a visitor (or Stripe, resending an event) is asked to wait while the database
# cannot be reached or stays locked.
DATABASE_RETRY_SECONDS = 60


def database_unavailable_page() -> tuple[str, int, dict[str, str]]:
    """A 503 while the database is down, unreachable or locked past its busy timeout: for
    a while, not a bug, so the page says to wait, and a form's sender that nothing was
    kept. The error itself has been logged, with its traceback, for the operator."""
    sent = request.method not in ("GET", "HEAD")
    body, code = render_error(
        503,
        "The site cannot reach its records just now",
        (
            "What you sent has not been saved. Please wait a minute, then go back and "
            "send it again: your browser's Back button keeps what you typed."
            if sent
            else "Nothing is wrong on your side. Please try again in a minute."
        ),
        # This very address again, kept on this site ("//x" would be another site's).
        action_url=_reload_url() if sent else "/" + request.full_path.rstrip("?").lstrip("/"),
        action_label="Back to the form" if sent else "Try again",
    )
    return body, code, retry_after_header(DATABASE_RETRY_SECONDS)


def reload_the_form_page() -> tuple[str, int]:
    """A form refused for its CSRF token: the page that leads back to the form.

    The pledge and donation forms are given back filled in instead (their views' own
    handlers). A token lasts as long as the session cookie it belongs to
    (WTF_CSRF_TIME_LIMIT is None); the cookie is renewed at signing in and out.
    """
    return render_error(
        400,
        "Please reload the form",
        "For your security, a form is accepted only with the cookie this site gave your "
        "browser with it. This one came without that cookie, or from before it was renewed. "
        "Please reload the page, check what you entered and send it again.",
        reload_url=_reload_url(),
    )


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return reload_the_form_page()

    @app.errorhandler(429)
    def too_many(error: HTTPException):
        return too_many_attempts_page()

    @app.errorhandler(SQLAlchemyError)
    def schema_not_ready(error: SQLAlchemyError):
        # A site started before `flask db upgrade`: the operator is told the command in
        # one line (no traceback), a visitor that the site is not ready. Any other database
        # error goes on to the 500 (or 503) page, logged with its traceback.
        if not _hint_at_missing_schema(error):
            raise error
        body, status = render_error(
            503,
            "This site is not ready yet",
            "Its records are still being set up. Please try again later.",
        )
        return body, status, {"Retry-After": "300"}

    # Also receives unhandled exceptions as a 500 (Flask logs them first), except
    # when debugging or testing, where they propagate with their traceback.
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = error.code or 500
        if code < 400:
            return error
        if request_ctx.url_adapter is None:
            # A Host header no address can have (a part of the name over 63 characters):
            # no link can be built for it, not even the page's stylesheet. Werkzeug's own
            # plain page says what was wrong.
            return error
        if code == 404 and (target := _without_trailing_slash()):
            return redirect(target, 308)
        if code == 500:
            cause = getattr(error, "original_exception", None)
            # Down, unreachable or locked is for a while: a 503 asks to try again. (A
            # schema not upgraded was answered above, by schema_not_ready.)
            if isinstance(cause, OperationalError):
                return database_unavailable_page()
        body, status = render_error(code)
        # Keep what the exception says about itself, such as a 405's Allow header.
        headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
        return body, status, headers


def register_template_helpers(app: Flask) -> None:
    from .forms import CONSENT_TEXT, country_names

    @app.context_processor
    def site_globals() -> dict[str, Any]:
        return {
            "site_name": app.config["SITE_NAME"],
            "assembly_url": app.config["ASSEMBLY_URL"],
            "consent_text": CONSENT_TEXT,
            "contact_email": app.config["CONTACT_EMAIL"],
            "country_name": lambda code: country_names().get(code or "", ""),
        }

    app.add_template_filter(absolute_url, "absolute")
    app.add_template_filter(wait_in_words)
    app.add_template_filter(without_tags)


def register_cli(app: Flask) -> None:
    from . import cli

    cli.init_app(app)
