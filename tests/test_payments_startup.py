"""Start-up: test mode is the mode; a live key needs the operator's explicit word."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from microsite.config import load
from microsite.models import Donation, db
from microsite.payments import LiveKeyRefused, StripeSettingsError
from tests.helpers import post_form
from tests.stripe_fake import FAKE_API_BASE, FakeStripe

BANNER = "No real money is taken."


def test_without_a_key_the_site_runs_with_no_banner(app: Flask) -> None:
    assert "stripe" not in app.extensions
    client = app.test_client()
    for path in ("/", "/donate", "/pledge"):
        page = client.get(path)
        assert page.status_code == 200
        assert BANNER not in page.text


@pytest.mark.parametrize("key", ["sk_test_abc123", "rk_test_abc123"])
def test_a_test_key_shows_the_test_mode_banner_on_every_page(make_app, key: str) -> None:
    app = make_app(STRIPE_SECRET_KEY=key)
    assert app.extensions["stripe_mode"] == "test"
    client = app.test_client()
    for path in ("/", "/donate", "/pledge", "/pledge/thanks", "/no-such-page"):
        assert BANNER in client.get(path).text


@pytest.mark.parametrize("key", ["sk_live_abc123", "rk_live_abc123"])
def test_a_live_key_stops_the_app_with_a_clear_message(make_app, key: str) -> None:
    with pytest.raises(LiveKeyRefused) as refused:
        make_app(STRIPE_SECRET_KEY=key)
    assert isinstance(refused.value, RuntimeError)
    message = str(refused.value)
    assert "live key" in message
    assert "STRIPE_ALLOW_LIVE=1" in message
    assert key not in message  # never echo a secret


def test_a_live_key_with_the_allow_flag_starts_without_the_banner(make_app) -> None:
    app = make_app(STRIPE_SECRET_KEY="sk_live_abc123", STRIPE_ALLOW_LIVE=True)
    assert app.extensions["stripe_mode"] == "live"
    assert BANNER not in app.test_client().get("/").text


def test_the_allow_flag_comes_from_the_environment(make_app, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_live_abc123")
    monkeypatch.setenv("STRIPE_ALLOW_LIVE", "0")
    monkeypatch.setenv("SECRET_KEY", "test")
    config = load(tmp_path, None)
    assert config["STRIPE_ALLOW_LIVE"] is False
    with pytest.raises(LiveKeyRefused):
        make_app(STRIPE_SECRET_KEY=config["STRIPE_SECRET_KEY"])


@pytest.mark.parametrize("key", ["pk_test_abc123", "whsec_abc", "not-a-key"])
def test_something_that_is_not_a_secret_key_is_refused(make_app, key: str) -> None:
    with pytest.raises(StripeSettingsError, match="should start with sk_test_"):
        make_app(STRIPE_SECRET_KEY=key)


def test_live_donations_record_livemode(make_app, fake_stripe: FakeStripe) -> None:
    app = make_app(
        STRIPE_SECRET_KEY="sk_live_abc123",
        STRIPE_ALLOW_LIVE=True,
        STRIPE_HTTP_CLIENT=fake_stripe,
        STRIPE_MAX_NETWORK_RETRIES=0,
    )
    client = app.test_client()
    response = post_form(
        client, "/donate", {"frequency": "one_time", "currency": "EUR", "amount": "10"}
    )
    assert response.status_code == 303
    with app.app_context():
        assert db.session.scalar(select(Donation.livemode)) is True


def test_api_base_lets_a_fake_or_local_server_stand_in(
    stripe_app: Flask, fake_stripe: FakeStripe
) -> None:
    client = stripe_app.test_client()
    post_form(client, "/donate", {"frequency": "one_time", "currency": "EUR", "amount": "10"})
    assert [r.url for r in fake_stripe.requests] == [f"{FAKE_API_BASE}/v1/checkout/sessions"]


def test_a_mistyped_donation_setting_stops_the_start_with_its_name(make_app) -> None:
    with pytest.raises(StripeSettingsError, match="DONATION_MIN must be a number"):
        make_app(DONATION_MIN="one euro")
