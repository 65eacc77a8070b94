"""The admin area: sign in, dashboard, lists and exports."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
