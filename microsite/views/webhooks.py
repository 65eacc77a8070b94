"""Stripe's webhook endpoint: the truth about what was paid."""

from __future__ import annotations

from flask import Blueprint, current_app, request

from ..extensions import csrf, limiter
from ..ledger import WebhookBusy
from ..payments import BadWebhook, apply_webhook

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
# Stripe signs its requests instead of sending a CSRF token, and retries on its own
# schedule: a rate limit would only delay the truth about payments.
csrf.exempt(bp)
limiter.exempt(bp)


@bp.post("/stripe")
def stripe_event() -> tuple[dict[str, str], int]:
    """Verify a Stripe event's signature and apply it once; 400 for anything not genuine."""
    request.max_content_length = current_app.config["WEBHOOK_MAX_CONTENT_LENGTH"]
    payload = request.get_data(cache=False)
    try:
        outcome = apply_webhook(payload, request.headers.get("Stripe-Signature"))
    except BadWebhook as exc:
        current_app.logger.warning("stripe webhook refused: %s", exc)
        return {"error": "invalid event"}, 400
    except WebhookBusy:
        current_app.logger.warning("stripe webhook deferred: database busy")
        return {"error": "busy, retry later"}, 503
    return {"received": outcome}, 200
