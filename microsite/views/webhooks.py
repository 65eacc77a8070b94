"""Stripe's webhook endpoint: the truth about what was paid."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
