"""Fixtures for Stripe: a fake HTTP client behind the real stripe library, signed webhooks."""
