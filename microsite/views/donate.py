"""The donation form (online giving arrives in a later change)."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("donate", __name__, url_prefix="/donate")


@bp.get("")
def donate() -> str:
    """Say that online giving is coming soon."""
    return render_template("donate/form.html")
