"""The article pages and the health check."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from sqlalchemy import text

from ..forms import PledgeForm
from ..models import db
from ..pledges import public_summary

bp = Blueprint("public", __name__)


def _library():
    return current_app.extensions["content"]


@bp.get("/")
def home() -> str:
    """The conference article with the pledge and donation forms beside it."""
    article = _library().get(current_app.config["HOME_ARTICLE"])
    if article is None:
        abort(404)
    return render_template(
        "public/article.html",
        article=article,
        pledge_form=PledgeForm(),
        pledges=public_summary(),
        canonical_path="/",
    )


@bp.get("/articles/<slug>")
def article(slug: str) -> str:
    """Any Markdown file in site/content, by its slug."""
    found = _library().get(slug)
    if found is None:
        abort(404)
    return render_template(
        "public/article.html",
        article=found,
        pledge_form=PledgeForm(),
        pledges=public_summary(),
        # The home article has one address, the home page, however it is reached.
        canonical_path="/" if slug == current_app.config["HOME_ARTICLE"] else f"/articles/{slug}",
    )


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    """For a load balancer: 200 when the app can reach its database."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        current_app.logger.exception("health check: database unreachable")
        return {"status": "error", "database": "unreachable"}, 503
    return {"status": "ok"}, 200
