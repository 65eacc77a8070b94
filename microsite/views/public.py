"""The article pages and the health check."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, url_for
from sqlalchemy import text

from ..content import Article
from ..forms import PledgeForm
from ..models import NEEDS_UPGRADE, db, schema_state
from ..pledges import public_summary

bp = Blueprint("public", __name__)

# The home page while its article cannot be shown (its file missing, or unreadable when
# the site started): the forms stay where supporters expect them.
STAND_IN = Article(
    slug="",
    title="Pray for trafficked persons",
    html=(
        "<p>RENATE, Religious in Europe Networking Against Trafficking and Exploitation, "
        "works across Europe against human trafficking. Pledge to pray for trafficked "
        "persons, or give to support that work.</p>"
    ),
)


def _article_page(slug: str) -> str:
    """An article from site/content beside the forms; the site's 404 for an unknown slug."""
    home = slug == current_app.config["HOME_ARTICLE"]
    found = current_app.extensions["content"].get(slug)
    if home:
        _tell_once(
            "home_article",
            "missing" if found is None else None,
            "content: the home article %r (HOME_ARTICLE) is not in %s or cannot be "
            "rendered; the home page shows the forms alone",
            slug, current_app.config["CONTENT_DIR"],
        )  # fmt: skip
        found = found or STAND_IN
    if found is None:
        abort(404)
    return render_template(
        "public/article.html",
        article=found,
        pledge_form=PledgeForm(),
        pledges=public_summary(),
        # The home article has one address, the home page, however it is reached.
        canonical_path=url_for("public.home") if home else url_for("public.article", slug=slug),
    )


@bp.get("/")
def home() -> str:
    """The conference article with the pledge and donation forms beside it."""
    return _article_page(current_app.config["HOME_ARTICLE"])


@bp.get("/articles/<slug>")
def article(slug: str) -> str:
    """Any Markdown file in site/content, by its slug."""
    return _article_page(slug)


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    """For a load balancer: 200 when the app can reach its database, and the database has
    the schema this code expects (else every page would fail: run `flask db upgrade`)."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        current_app.logger.exception("health check: database unreachable")
        return {"status": "error", "database": "unreachable"}, 503
    state = schema_state()
    _tell_once(
        "schema",
        state if state in NEEDS_UPGRADE else None,
        "health check: the database is not migrated (%s): run flask db upgrade",
        state,
    )
    if state in NEEDS_UPGRADE:
        return {"status": "error", "database": "not migrated: run flask db upgrade"}, 503
    # "ahead": upgraded for a newer release while this one still serves (a rolling deploy,
    # or a rollback); migrations add to the schema, so this code still works on it.
    return {"status": "ok"}, 200


def _tell_once(topic: str, problem: str | None, message: str, *args: object) -> None:
    """Log a problem once when it starts, not on every request (or health probe) while it
    lasts; once it is over, the next time it starts is logged again."""
    told: dict[str, str | None] = current_app.extensions.setdefault("told", {})
    if problem is not None and told.get(topic) != problem:
        current_app.logger.error(message, *args)
    told[topic] = problem
