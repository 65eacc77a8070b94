"""The article pages and the health check."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from sqlalchemy import text

from ..forms import PledgeForm
from ..models import db
from ..pledges import public_summary

bp = Blueprint("public", __name__)


def _article_page(slug: str) -> str:
    """An article from site/content beside the forms; the site's 404 for an unknown slug."""
    found = current_app.extensions["content"].get(slug)
    if found is None:
        abort(404)
    home = slug == current_app.config["HOME_ARTICLE"]
    return render_template(
        "public/article.html",
        article=found,
        pledge_form=PledgeForm(),
        pledges=public_summary(),
        # The home article has one address, the home page, however it is reached.
        canonical_path="/" if home else f"/articles/{slug}",
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
    """For a load balancer: 200 when the app can reach its database."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        current_app.logger.exception("health check: database unreachable")
        return {"status": "error", "database": "unreachable"}, 503
    return {"status": "ok"}, 200
