"""Donations: from the form to Stripe Checkout (a fake one on the wire), and back."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from html import unescape
from typing import Any

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from microsite.models import Donation, DonationStatus, db
from tests.helpers import csrf_token, note_text, post_form, told_wait
from tests.stripe_fake import (
    CHECKOUT_URL,
    FAKE_API_BASE,
    TEST_KEY,
    FakeStripe,
    make_event,
    post_event,
)

ONE_TIME = {"frequency": "one_time", "currency": "EUR", "amount": "25"}


def other(amount: str) -> dict[str, str]:
    return {"amount": "other", "other_amount": amount}


def donations(app: Flask) -> list[Donation]:
    with app.app_context():
        return list(db.session.scalars(select(Donation).order_by(Donation.id)))


def count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Donation.id)))


def assert_calm_page(response: Any, status: int, *, retryable: bool) -> None:
    """Stripe failed: the donor learns nothing was taken, and whether trying again can help."""
    assert response.status_code == status
    assert "nothing was taken" in response.text
    if retryable:
        assert "We could not reach our payment provider" in response.text
        assert "Try again" in response.text
    else:
        assert "Giving online is not working right now" in response.text
        assert "Try again" not in response.text
        assert "/donate/retry/" not in response.text


# --------------------------------------------------------------------------- the form


def test_form_offers_presets_currencies_frequency_and_other_amount(client: FlaskClient) -> None:
    html = client.get("/donate").text
    for value in ("10", "25", "50", "100", "other"):
        assert f'name="amount" type="radio" value="{value}"' in html
    assert re.search(r'<input checked id="amount-1" name="amount" type="radio" value="25">', html)
    for code in ("EUR", "GBP", "USD", "CHF"):
        assert f'<option{" selected" if code == "EUR" else ""} value="{code}">' in html
    assert 'value="one_time"' in html and 'value="monthly"' in html
    assert 'name="other_amount"' in html
    for field in ("cover_fee", "dedication_kind", "dedication_name", "anonymous"):
        assert f'name="{field}"' in html
    for field in ("donor_name", "donor_email", "message"):
        assert f'name="{field}"' in html
    # The rule as the server applies it, true whichever currency is then chosen; and, for
    # script to show, the rule and the estimate in euros: 1.5% + €0.25 on €25 is €0.64.
    assert "Card fees are about 1.5% + " in html
    assert "0.25 in the currency you choose" in html
    assert "Ticking the box adds enough to cover them." in html
    assert '<span class="fee-fixed">€0.25</span>' in html
    assert "On €25.00 that adds €0.64." in html


def test_home_page_has_the_donation_form_beside_the_pledge_form(client: FlaskClient) -> None:
    html = client.get("/").text
    assert 'class="donate-form" method="post" action="/donate"' in html
    assert 'class="pledge-form"' in html
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "every id on the page is unique"


def test_without_a_key_the_form_explains_giving_is_not_set_up(
    app: Flask, client: FlaskClient
) -> None:
    response = post_form(client, "/donate", {**ONE_TIME, "donor_name": "Anna"})
    assert response.status_code == 503
    assert "Online giving is not set up yet" in response.text
    assert "nothing was taken" in response.text
    assert 'value="Anna"' in response.text
    assert "checkout.stripe.com" not in response.text
    assert count(app) == 0


def test_the_note_that_giving_is_not_set_up_takes_focus_when_the_page_loads(
    client: FlaskClient,
) -> None:
    """The donor pressed Continue and got this page back: the keyboard and screen reader
    start from the note, not from the top as though nothing had happened."""
    html = post_form(client, "/donate", ONE_TIME).text
    note = re.search(r'<div[^>]*id="donate-not-configured"[^>]*>', html).group(0)
    assert "autofocus" in note and 'tabindex="-1"' in note
    assert html.count("autofocus") == 1


def test_one_time_gift_goes_to_checkout_with_the_exact_parameters(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    response = post_form(stripe_client, "/donate", {**ONE_TIME, "donor_email": "anna@example.org"})
    assert response.status_code == 303
    [wire] = fake_stripe.requests
    [donation] = donations(stripe_app)
    assert response.headers["Location"] == CHECKOUT_URL + donation.stripe_session_id
    assert wire.method == "POST"
    assert wire.url == f"{FAKE_API_BASE}/v1/checkout/sessions"
    assert wire.headers["Authorization"] == f"Bearer {TEST_KEY}"
    assert wire.headers["Idempotency-Key"] == f"donation-{donation.reference}-checkout"
    ref = donation.reference
    assert wire.params == {
        "mode": "payment",
        "adaptive_pricing[enabled]": "false",
        "submit_type": "donate",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "eur",
        "line_items[0][price_data][unit_amount]": "2500",
        "line_items[0][price_data][product_data][name]": "Gift to RENATE",
        "client_reference_id": ref,
        "metadata[donation_reference]": ref,
        "metadata[frequency]": "one_time",
        "payment_intent_data[metadata][donation_reference]": ref,
        "payment_intent_data[metadata][frequency]": "one_time",
        "payment_intent_data[description]": "Gift to RENATE",
        "customer_email": "anna@example.org",
        "success_url": "http://localhost/donate/thanks?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": f"http://localhost/donate/cancelled?ref={ref}",
    }
    assert donation.status == DonationStatus.OPEN
    assert donation.amount == 2500
    assert donation.fee_covered == 0
    assert donation.currency == "EUR"
    assert donation.frequency == "one_time"
    assert donation.livemode is False
    assert donation.stripe_session_id.startswith("cs_test_")
    assert donation.amount_received == 0


def test_monthly_gift_is_a_subscription_with_an_inline_monthly_price(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    data = {"frequency": "monthly", "currency": "GBP", "amount": "other", "other_amount": "12"}
    response = post_form(stripe_client, "/donate", data)
    assert response.status_code == 303
    [wire] = fake_stripe.requests
    [donation] = donations(stripe_app)
    ref = donation.reference
    assert wire.headers["Idempotency-Key"] == f"donation-{ref}-checkout"
    # No submit_type and no payment_intent_data: Stripe refuses both in subscription mode.
    assert wire.params == {
        "mode": "subscription",
        "adaptive_pricing[enabled]": "false",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "gbp",
        "line_items[0][price_data][unit_amount]": "1200",
        "line_items[0][price_data][product_data][name]": "Monthly gift to RENATE",
        "line_items[0][price_data][recurring][interval]": "month",
        "client_reference_id": ref,
        "metadata[donation_reference]": ref,
        "metadata[frequency]": "monthly",
        "subscription_data[metadata][donation_reference]": ref,
        "subscription_data[metadata][frequency]": "monthly",
        "subscription_data[description]": "Monthly gift to RENATE",
        "success_url": "http://localhost/donate/thanks?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": f"http://localhost/donate/cancelled?ref={ref}",
    }
    assert donation.frequency == "monthly"
    assert donation.amount == 1200
    assert donation.currency == "GBP"


# --------------------------------------------------------------------------- the donor's name

NAMED = {**ONE_TIME, "donor_name": "Anna Novák", "donor_email": "anna@example.org"}
CUSTOMERS = f"{FAKE_API_BASE}/v1/customers"


def test_a_donor_who_gives_a_name_reaches_checkout_as_a_stripe_customer(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # Checkout takes an email to prefill but no name: the name travels on a Customer, and
    # Stripe refuses customer and customer_email together.
    response = post_form(stripe_client, "/donate", NAMED)
    assert response.status_code == 303
    made, session = fake_stripe.requests
    [donation] = donations(stripe_app)
    ref = donation.reference
    assert (made.method, made.url) == ("POST", CUSTOMERS)
    assert made.headers["Idempotency-Key"] == f"donation-{ref}-customer"
    assert made.params == {
        "name": "Anna Novák",
        "email": "anna@example.org",
        "metadata[donation_reference]": ref,
    }
    assert donation.stripe_customer.startswith("cus_")
    assert session.url == f"{FAKE_API_BASE}/v1/checkout/sessions"
    assert session.params["customer"] == donation.stripe_customer
    assert "customer_email" not in session.params
    assert response.headers["Location"] == CHECKOUT_URL + donation.stripe_session_id


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("ana@bücher.example", "ana@xn--bcher-kva.example"),
        ("ana@xn--bcher-kva.example", "ana@xn--bcher-kva.example"),
        ("zoë@example.org", None),
    ],
)
@pytest.mark.parametrize("named", [False, True], ids=["email only", "with a name"])
def test_an_address_beyond_ascii_reaches_stripe_as_mail_servers_know_it_or_not_at_all(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    fake_stripe: FakeStripe,
    typed: str,
    sent: str | None,
    named: bool,
) -> None:
    # The donor's address is kept as typed; Stripe, which may refuse what is not ASCII and
    # the whole checkout with it, is sent the ASCII form, or nothing to prefill.
    data = {**ONE_TIME, "donor_email": typed, **({"donor_name": "Ana"} if named else {})}
    assert post_form(stripe_client, "/donate", data).status_code == 303
    [donation] = donations(stripe_app)
    assert donation.donor_email == ("ana@bücher.example" if typed.startswith("ana") else typed)
    [session] = fake_stripe.sessions_created
    if named:
        [made] = fake_stripe.customers_created
        assert made.params.get("email") == sent
    else:
        assert session.params.get("customer_email") == sent


def test_a_name_without_an_email_makes_a_customer_with_the_name_only(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    response = post_form(stripe_client, "/donate", {**ONE_TIME, "donor_name": "Jan"})
    assert response.status_code == 303
    made, session = fake_stripe.requests
    [donation] = donations(stripe_app)
    assert made.params == {"name": "Jan", "metadata[donation_reference]": donation.reference}
    assert session.params["customer"] == donation.stripe_customer
    assert "customer_email" not in session.params


def test_an_anonymous_gift_still_prefills_checkout_with_the_donor_s_details(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # Anonymity is about being named as a supporter in public, not about paying Stripe.
    response = post_form(stripe_client, "/donate", {**NAMED, "anonymous": "y"})
    assert response.status_code == 303
    made, session = fake_stripe.requests
    assert made.params["name"] == "Anna Novák"
    assert session.params["customer"].startswith("cus_")
    assert session.params["metadata[anonymous]"] == "yes"
    page = stripe_client.get("/donate").text
    assert "keep your name with it, even when you give anonymously" in page


def test_a_monthly_gift_by_a_named_donor_is_billed_to_that_customer(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    response = post_form(stripe_client, "/donate", {**NAMED, "frequency": "monthly"})
    assert response.status_code == 303
    [made] = fake_stripe.customers_created
    [session] = fake_stripe.sessions_created
    [donation] = donations(stripe_app)
    assert made.params["name"] == "Anna Novák"
    assert session.params["mode"] == "subscription"
    assert session.params["customer"] == donation.stripe_customer
    assert "customer_email" not in session.params


@pytest.mark.parametrize(
    ("failure", "status", "retryable"),
    [
        (lambda fake: fake.fail_next(500, path="/v1/customers"), 502, True),
        (lambda fake: fake.fail_next(429, {"type": "invalid_request_error"},
                                     path="/v1/customers"), 503, True),
        (lambda fake: fake.drop_next(path="/v1/customers"), 503, True),
        (lambda fake: fake.fail_next(400, {"type": "invalid_request_error",
                                           "message": "Invalid email address"},
                                     path="/v1/customers"), 502, False),
    ],
    ids=["api-error", "rate-limited", "network-down", "refused"],
)  # fmt: skip
def test_a_failed_customer_call_gives_the_same_calm_page_and_no_session(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    fake_stripe: FakeStripe,
    caplog: pytest.LogCaptureFixture,
    failure: Any,
    status: int,
    retryable: bool,
) -> None:
    failure(fake_stripe)
    with caplog.at_level(logging.WARNING):
        response = post_form(stripe_client, "/donate", NAMED)
    assert_calm_page(response, status, retryable=retryable)
    assert fake_stripe.sessions_created == []
    [donation] = donations(stripe_app)
    assert donation.status == DonationStatus.NOT_STARTED
    assert donation.stripe_customer is None
    assert donation.stripe_session_id is None
    assert f"donation {donation.reference}" in caplog.text
    assert "stripe request id" in caplog.text


@pytest.mark.parametrize(
    ("choice", "field_id"),
    [({"amount": "other", "other_amount": "1"}, "other_amount"), ({"amount": "10"}, "amount")],
)
def test_a_gift_below_stripes_smallest_charge_asks_the_donor_for_more(
    make_app, stripe_config, fake_stripe: FakeStripe, choice: dict[str, str], field_id: str
) -> None:
    # A currency whose smallest charge this site does not know: Stripe is the first to say.
    app = make_app(**stripe_config, DONATION_CURRENCIES="EUR,UAH")
    client = app.test_client()
    fake_stripe.fail_next(
        400,
        {"type": "invalid_request_error", "code": "amount_too_small",
         "message": "The Checkout Session's total amount due must add up to at least $0.50 usd"},
        path="/v1/checkout/sessions",
    )  # fmt: skip
    data = {"frequency": "one_time", "currency": "UAH", "message": "Слава", **choice}
    response = post_form(client, "/donate", data)
    assert response.status_code == 422
    page = unescape(response.text)
    assert "is less than our payment provider, Stripe, can take in UAH." in page
    assert f'id="{field_id}-error"' in response.text
    assert "Слава" in page  # the donor's choices are kept
    [gift] = donations(app)
    assert gift.status == DonationStatus.NOT_STARTED
    assert (
        gift.failure_reason
        == "Below Stripe's smallest charge in UAH; the donor was asked for more."
    )
    # Not a refusal that needs someone to put the settings right.
    assert "Stripe refused" not in gift.failure_reason


class SlowCustomers(FakeStripe):
    """Stripe taking `seconds` (on a clock of the test's own) to make each Customer."""

    seconds: float = 0.0
    clock: float = 0.0

    def request(self, method: str, url: str, headers: Any, post_data: Any = None, **kw: Any):
        if url.endswith("/v1/customers"):
            self.clock += self.seconds
        return super().request(method, url, headers, post_data, **kw)


@pytest.fixture
def slow_customers(make_app, monkeypatch) -> tuple[SlowCustomers, FlaskClient]:
    import microsite.payments

    fake = SlowCustomers()
    monkeypatch.setattr(
        microsite.payments, "time", type("Clock", (), {"monotonic": lambda: fake.clock})
    )
    app = make_app(
        STRIPE_SECRET_KEY=TEST_KEY,
        STRIPE_API_BASE=FAKE_API_BASE,
        STRIPE_HTTP_CLIENT=fake,
        STRIPE_MAX_NETWORK_RETRIES=2,
        STRIPE_TIMEOUT=5,
    )
    return fake, app.test_client()


def test_a_slow_customer_leaves_the_session_only_the_retries_that_fit_the_page(
    slow_customers: tuple[SlowCustomers, FlaskClient],
) -> None:
    fake, client = slow_customers
    # Each attempt may take 2 + 5 seconds: after 8 of the 25, two attempts still fit.
    fake.seconds = 8
    timed_out = stripe.APIConnectionError("Read timed out", should_retry=True)
    fake.failures += [("/v1/checkout/sessions", timed_out)] * 3
    response = post_form(client, "/donate", NAMED)
    assert_calm_page(response, 503, retryable=True)
    assert len(fake.sessions_created) == 2


def test_no_session_is_tried_when_the_customer_used_up_the_pages_time(
    slow_customers: tuple[SlowCustomers, FlaskClient],
) -> None:
    fake, client = slow_customers
    fake.seconds = 20
    response = post_form(client, "/donate", NAMED)
    assert_calm_page(response, 503, retryable=True)
    assert fake.sessions_created == []
    # Trying again uses the Customer already made, and goes straight to the session.
    [donation] = donations(client.application)
    retry = client.post(
        f"/donate/retry/{donation.reference}", data={"csrf_token": csrf_token(response.text)}
    )
    assert retry.status_code == 303
    assert len(fake.customers_created) == 1
    assert fake.sessions_created[0].params["customer"] == donation.stripe_customer


def test_a_retry_after_the_network_failed_finds_the_same_customer_again(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # Stripe may have made the customer before the answer was lost: the same key finds it.
    fake_stripe.drop_next(path="/v1/customers")
    failed = post_form(stripe_client, "/donate", NAMED)
    assert failed.status_code == 503
    [donation] = donations(stripe_app)
    token = csrf_token(failed.text)
    first = stripe_client.post(f"/donate/retry/{donation.reference}", data={"csrf_token": token})
    again = stripe_client.post(f"/donate/retry/{donation.reference}", data={"csrf_token": token})
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    made = fake_stripe.customers_created
    assert len(made) == 2  # the lost attempt and its retry; the second retry asks nothing
    assert {r.headers["Idempotency-Key"] for r in made} == {
        f"donation-{donation.reference}-customer"
    }
    assert made[0].body == made[1].body
    [donation] = donations(stripe_app)
    sessions = fake_stripe.sessions_created
    assert {r.params["customer"] for r in sessions} == {donation.stripe_customer}
    assert {r.headers["Idempotency-Key"] for r in sessions} == {
        f"donation-{donation.reference}-checkout"
    }


def test_a_retry_after_the_session_failed_does_not_make_a_second_customer(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # The customer was made, then Stripe answered the session with a server error: the
    # retry needs a new session key, and reuses the customer already made.
    fake_stripe.fail_next(500, path="/v1/checkout/sessions")
    failed = post_form(stripe_client, "/donate", NAMED)
    assert failed.status_code == 502
    [donation] = donations(stripe_app)
    customer = donation.stripe_customer
    assert customer.startswith("cus_")
    token = csrf_token(failed.text)
    retry = stripe_client.post(f"/donate/retry/{donation.reference}", data={"csrf_token": token})
    assert retry.status_code == 303
    assert len(fake_stripe.customers_created) == 1
    first, second = fake_stripe.sessions_created
    assert first.headers["Idempotency-Key"] == f"donation-{donation.reference}-checkout"
    assert second.headers["Idempotency-Key"] == (
        f"donation-{donation.reference}-checkout-req_fake_3"
    )
    assert first.params["customer"] == second.params["customer"] == customer
    [donation] = donations(stripe_app)
    assert donation.stripe_customer == customer
    assert donation.status == DonationStatus.OPEN


def test_a_retry_after_the_customer_call_failed_on_stripe_s_side_uses_new_keys(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # Stripe replays a 500 for its key for a day: the retry asks under keys named after
    # the failed request, for the customer and the session alike.
    fake_stripe.fail_next(500, path="/v1/customers")
    failed = post_form(stripe_client, "/donate", NAMED)
    assert failed.status_code == 502
    [donation] = donations(stripe_app)
    ref = donation.reference
    token = csrf_token(failed.text)
    assert stripe_client.post(f"/donate/retry/{ref}", data={"csrf_token": token}).status_code == 303
    keys = [r.headers["Idempotency-Key"] for r in fake_stripe.requests]
    assert keys == [
        f"donation-{ref}-customer",
        f"donation-{ref}-customer-req_fake_1",
        f"donation-{ref}-checkout-req_fake_1",
    ]
    [donation] = donations(stripe_app)
    assert fake_stripe.sessions_created[0].params["customer"] == donation.stripe_customer


@pytest.mark.parametrize(
    ("typed", "minor"),
    [
        ("30", 3000),
        ("30.5", 3050),
        ("30,50", 3050),
        ("€ 1 000", 100_000),
        ("1\u202f000 €", 100_000),  # a French thousands space
        ("30 €", 3000),
        ("EUR 30", 3000),
        ("30eur", 3000),
        ("1", 100),
        ("10000", 1_000_000),
        # Whole euros as Dutch, German and Scandinavian price tags write them.
        ("€ 25,-", 2500),
        ("25,\u2013", 2500),
        ("25.- EUR", 2500),
    ],
)
def test_other_amount_is_read_as_decimal_and_stored_in_cents(
    stripe_app: Flask, stripe_client: FlaskClient, typed: str, minor: int
) -> None:
    response = post_form(
        stripe_client, "/donate", {**ONE_TIME, "amount": "other", "other_amount": typed}
    )
    assert response.status_code == 303
    assert donations(stripe_app)[0].amount == minor


@pytest.mark.parametrize("field", ["other_amount", "donor_email", "dedication_name", "message"])
def test_a_field_sent_as_a_file_is_as_if_left_empty(
    stripe_app: Flask, stripe_client: FlaskClient, field: str
) -> None:
    token = csrf_token(stripe_client.get("/donate").text)
    data = {"csrf_token": token, **ONE_TIME, field: (io.BytesIO(b"42"), "a.txt")}
    response = stripe_client.post("/donate", data=data, content_type="multipart/form-data")
    assert response.status_code == 303
    gift = donations(stripe_app)[0]
    assert (gift.amount, gift.donor_email, gift.dedication_name, gift.message) == (
        2500,
        None,
        None,
        None,
    )


def test_an_amount_typed_in_wins_over_a_preset_left_selected(
    stripe_app: Flask, stripe_client: FlaskClient
) -> None:
    response = post_form(stripe_client, "/donate", {**ONE_TIME, "other_amount": "42"})
    assert response.status_code == 303
    assert donations(stripe_app)[0].amount == 4200


@pytest.mark.parametrize(
    ("currency", "typed", "sign"),
    [("EUR", "$25", "$"), ("EUR", "25 USD", "USD"), ("USD", "£25", "£"), ("GBP", "€25", "€"),
     ("EUR", "chf 25", "CHF")],
)  # fmt: skip
def test_an_amount_typed_with_another_currency_is_refused_not_converted(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    fake_stripe: FakeStripe,
    currency: str,
    typed: str,
    sign: str,
) -> None:
    # "$25" with EUR chosen would otherwise be charged as €25.
    data = {**ONE_TIME, "currency": currency, **other(typed)}
    response = post_form(stripe_client, "/donate", data)
    assert response.status_code == 422
    error = response.text.split('id="other_amount-error"')[1].split("</p>")[0]
    assert f"You typed {sign} but chose {currency}" in error
    assert count(stripe_app) == 0
    assert fake_stripe.requests == []


def test_the_chosen_currency_s_own_sign_is_welcome(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    for currency, typed in (("USD", "$25"), ("GBP", "£25"), ("EUR", "25€")):
        data = {**ONE_TIME, "currency": currency, **other(typed)}
        assert post_form(stripe_client, "/donate", data).status_code == 303
    assert [(d.currency, d.amount) for d in donations(stripe_app)] == [
        ("USD", 2500),
        ("GBP", 2500),
        ("EUR", 2500),
    ]


def test_covering_the_fee_adds_the_estimate_so_the_gift_arrives_whole(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    response = post_form(stripe_client, "/donate", {**ONE_TIME, "cover_fee": "y"})
    assert response.status_code == 303
    [donation] = donations(stripe_app)
    # (2500 + 25) / (1 - 0.015) = 2563.45..., rounded up: 64 cents on top.
    assert (donation.amount, donation.fee_covered, donation.total) == (2500, 64, 2564)
    params = fake_stripe.requests[0].params
    assert params["line_items[0][price_data][unit_amount]"] == "2564"
    assert (
        "€0.64 to cover the card fee"
        in params["line_items[0][price_data][product_data][description]"]
    )


def test_zero_decimal_currency_is_never_charged_a_hundred_times_too_much(
    make_app, stripe_config: dict[str, Any], fake_stripe: FakeStripe
) -> None:
    app = make_app(**stripe_config, DONATION_CURRENCIES="EUR,JPY", DONATION_MAX="100000")
    client = app.test_client()
    html = client.get("/donate").text
    assert '<option value="JPY">JPY</option>' in html
    response = post_form(
        client,
        "/donate",
        {**ONE_TIME, "currency": "JPY", "amount": "other", "other_amount": "1000"},
    )
    assert response.status_code == 303
    params = fake_stripe.requests[0].params
    assert params["line_items[0][price_data][unit_amount]"] == "1000"
    assert params["line_items[0][price_data][currency]"] == "jpy"
    assert donations(app)[0].amount == 1000

    fractional = post_form(
        client,
        "/donate",
        {**ONE_TIME, "currency": "JPY", "amount": "other", "other_amount": "1000.50"},
    )
    assert fractional.status_code == 422
    assert "JPY has no smaller unit" in fractional.text


def test_no_gift_is_smaller_than_stripe_takes_in_its_currency(
    make_app: Any, stripe_config: dict[str, str], fake_stripe: FakeStripe
) -> None:
    # A minimum configured below Stripe's own would only fail at Stripe, after the donor
    # had chosen; the form asks for Stripe's smallest charge instead, preset or typed.
    app = make_app(**stripe_config, DONATION_MIN="0.10", DONATION_CURRENCIES="EUR,GBP,CZK")
    client = app.test_client()
    too_small = post_form(client, "/donate", {**ONE_TIME, "currency": "GBP", **other("0.29")})
    assert too_small.status_code == 422
    assert "smallest gift we can take online in GBP is £0.30" in too_small.text
    preset = post_form(client, "/donate", {**ONE_TIME, "currency": "CZK", "amount": "10"})
    assert preset.status_code == 422
    assert "smallest gift we can take online in CZK is CZK\u00a015.00" in preset.text
    assert fake_stripe.requests == []

    assert post_form(client, "/donate", {**ONE_TIME, **other("0.50")}).status_code == 303
    assert (
        post_form(client, "/donate", {**ONE_TIME, "currency": "GBP", **other("0.30")}).status_code
        == 303
    )
    amounts = [r.params["line_items[0][price_data][unit_amount]"] for r in fake_stripe.requests]
    assert amounts == ["50", "30"]


def _choices(html: str) -> dict[str, tuple[str, bool]]:
    """Each preset button on a page: its value, its label and whether it is offered."""
    found = re.findall(
        r'<div class="amount-choice"( hidden)?><input[^>]*value="([^"]+)">'
        r'<label[^>]*><span class="cur-sym js-only">[^<]*</span>([^<]*)</label>',
        html,
    )
    return {value: (label, not hidden) for hidden, value, label in found}


def test_preset_buttons_show_the_currency_s_decimal_places(
    make_app: Any, stripe_config: dict[str, Any], fake_stripe: FakeStripe
) -> None:
    app = make_app(**stripe_config, DONATION_PRESETS="7.5,12.340,1000")
    client = app.test_client()
    labels = {value: label for value, (label, _) in _choices(client.get("/donate").text).items()}
    assert labels == {"7.5": "7.50", "12.34": "12.34", "1000": "1,000"}
    assert post_form(client, "/donate", {**ONE_TIME, "amount": "7.5"}).status_code == 303
    assert fake_stripe.requests[0].params["line_items[0][price_data][unit_amount]"] == "750"

    yen = make_app(
        DONATION_CURRENCIES="JPY",
        DONATION_DEFAULT_CURRENCY="JPY",
        DONATION_PRESETS="500,1000,5000",
        DONATION_MAX="100000",
    )
    html = yen.test_client().get("/donate").text
    assert '<span class="cur-sym js-only">¥</span>1,000</label>' in html
    assert '<span class="fee-fixed">¥1</span>' in html
    # The fee added is the rule shown, 1.5% + ¥1, not 1.5% + ¥0.25: (1000 + 1) / 0.985.
    assert yen.extensions["donation_settings"].fee(1000, "JPY") == 17


def test_presets_below_stripe_s_smallest_charge_are_not_offered_in_that_currency(
    make_app: Any,
    stripe_config: dict[str, Any],
    fake_stripe: FakeStripe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One list of presets serves every currency; ¥10 and ¥25 are below the ¥50 Stripe
    # takes. The site starts, tells its operator, and offers only what can be charged.
    with caplog.at_level(logging.WARNING):
        app = make_app(**stripe_config, DONATION_CURRENCIES="EUR,JPY", DONATION_MAX="100000")
    assert "DONATION_PRESETS: 10, 25 not offered in JPY" in caplog.text
    client = app.test_client()
    page = client.get("/donate").text
    assert {value: offered for value, (_, offered) in _choices(page).items()} == {
        "10": True, "25": True, "50": True, "100": True,
    }  # fmt: skip
    script = json.loads(unescape(re.search(r"data-donate='([^']*)'", page).group(1)))
    assert script["currencies"]["JPY"]["presets"] == ["50", "100"]
    assert script["currencies"]["EUR"]["presets"] == ["10", "25", "50", "100"]

    # A browser without script can still send ¥10: it is refused with the reason, and the
    # form comes back offering the yen presets only.
    refused = post_form(client, "/donate", {**ONE_TIME, "currency": "JPY", "amount": "10"})
    assert refused.status_code == 422
    assert "smallest gift we can take online in JPY is ¥50" in refused.text
    assert {value: offered for value, (_, offered) in _choices(refused.text).items()} == {
        "10": False, "25": False, "50": True, "100": True,
    }  # fmt: skip
    assert fake_stripe.requests == []
    taken = post_form(client, "/donate", {**ONE_TIME, "currency": "JPY", "amount": "50"})
    assert taken.status_code == 303
    assert fake_stripe.requests[0].params["line_items[0][price_data][unit_amount]"] == "50"


def _summary_links(html: str) -> list[str]:
    """Where each link in the page's error summary goes."""
    summary = re.search(r'<div class="error-summary".*?</div>', html, re.S).group(0)
    return re.findall(r'href="#([^"]+)"', summary)


def test_the_error_summary_links_the_amount_to_a_choice_the_page_shows(
    make_app: Any, stripe_config: dict[str, Any], fake_stripe: FakeStripe
) -> None:
    # ¥10 and ¥25 are hidden in yen: a link to the first preset would land on nothing.
    app = make_app(**stripe_config, DONATION_CURRENCIES="EUR,JPY", DONATION_MAX="100000")
    client = app.test_client()
    for chosen in ("10", ""):  # sent by a browser without script, or with no amount chosen
        page = post_form(client, "/donate", {**ONE_TIME, "currency": "JPY", "amount": chosen})
        assert page.status_code == 422
        assert _summary_links(page.text) == ["amount-2"], chosen
        # Nothing is left chosen out of sight: sent again as it is, no ¥10 goes with it.
        assert re.findall(r'<input checked id="amount-\d" name="amount"', page.text) == []
        assert _choices(page.text)["50"] == ("50", True)
        assert re.search(r'<input[^>]*id="amount-2"[^>]*value="50">', page.text)
    euros = post_form(client, "/donate", {**ONE_TIME, "amount": ""})
    assert _summary_links(euros.text) == ["amount-0"]
    # An error in the box beside "Other" is linked to the box.
    typed = post_form(client, "/donate", {**ONE_TIME, "currency": "JPY", **other("5")})
    assert _summary_links(typed.text) == ["other_amount"]

    # No preset at all in yen: the link goes to "Other", which is always shown.
    low = make_app(**stripe_config, DONATION_CURRENCIES="EUR,JPY", DONATION_PRESETS="10,25")
    page = post_form(low.test_client(), "/donate", {**ONE_TIME, "currency": "JPY", "amount": ""})
    assert page.status_code == 422
    assert not any(offered for _, offered in _choices(page.text).values())
    assert _summary_links(page.text) == ["amount-2"]
    assert re.search(r'<input[^>]*id="amount-2"[^>]*value="other">', page.text)
    assert fake_stripe.requests == []


def test_the_fee_rule_shows_its_fixed_part_in_the_chosen_currency(
    stripe_client: FlaskClient,
) -> None:
    page = post_form(stripe_client, "/donate", {**ONE_TIME, "currency": "CHF", **other("")})
    assert page.status_code == 422
    assert '<span class="fee-fixed">CHF\u00a00.25</span>' in page.text
    assert "€0.25" not in page.text


def test_an_amount_written_with_its_code_keeps_the_code_and_number_together(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # A no-break space, so a narrow screen never ends a line between "CHF" and "1.00".
    small = post_form(stripe_client, "/donate", {**ONE_TIME, "currency": "CHF", **other("0.1")})
    assert small.status_code == 422
    error = small.text.split('id="other_amount-error">')[1].split("</p>")[0]
    assert error == "The smallest gift we can take online in CHF is CHF\u00a01.00."
    assert "CHF 1.00" not in small.text
    # Stripe's page shows the donor this line too, so it is written the same way.
    data = {**ONE_TIME, "currency": "CHF", "cover_fee": "y"}
    assert post_form(stripe_client, "/donate", data).status_code == 303
    params = fake_stripe.requests[0].params
    assert params["line_items[0][price_data][product_data][description]"] == (
        "CHF\u00a025.00 gift plus CHF\u00a00.64 to cover the card fee"
    )


@pytest.mark.parametrize(
    "typed", ["CHF 30", "CHF\u00a030", "30 chf", "30\u00a0CHF", "CHF\u202f30", "CHF\t30"]
)
def test_an_amount_typed_with_its_code_is_taken_with_either_space(
    stripe_app: Flask, stripe_client: FlaskClient, typed: str
) -> None:
    # The page writes "CHF 30.00" with a no-break space; a keyboard types a plain one, or
    # (French typing) a narrow no-break space.
    data = {**ONE_TIME, "currency": "CHF", **other(typed)}
    assert post_form(stripe_client, "/donate", data).status_code == 303
    assert [(d.currency, d.amount) for d in donations(stripe_app)] == [("CHF", 3000)]


@pytest.mark.parametrize(
    ("fixed", "shown"), [("0.3", "0.30"), ("1", "1"), ("0.125", "0.125"), ("0", None)]
)
def test_the_fee_rule_without_script_names_no_currency(
    make_app: Any, fixed: str, shown: str | None
) -> None:
    # Without script the currency can change after the page is made: the fixed part is
    # given as the number the server adds in whichever currency is chosen.
    html = make_app(DONATION_FEE_FIXED=fixed).test_client().get("/donate").text
    if shown is None:
        assert "in the currency you choose" not in html
        assert "fee-fixed" not in html
        assert "Card fees are about 1.5%." in html
    else:
        assert '+ <span class="js-only">' in html
        assert f"{shown} in the currency you choose" in html


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (other(""), "other_amount", "Enter the amount you would like to give"),
        (other("lots"), "other_amount", "Enter an amount in numbers"),
        (other("-5"), "other_amount", "smallest gift we can take online in EUR is €1.00"),
        (other("0.50"), "other_amount", "smallest gift we can take online in EUR is €1.00"),
        (other("10000.01"), "other_amount", "Online gifts can be up to €10,000.00."),
        (other("99999999999999"), "other_amount", "Online gifts can be up to €10,000.00."),
        (other("30.555"), "other_amount", "without a thousands separator"),
        (other("1.000"), "other_amount", "without a thousands separator"),
        (other("1,000.50"), "other_amount", "without a thousands separator"),
        (other("1.000,50"), "other_amount", "without a thousands separator"),
        (other("0.001"), "other_amount", "at most two decimal places"),
        (other("30.5555"), "other_amount", "at most two decimal places"),
        ({"amount": "7"}, "amount", "Choose one of the amounts"),
        ({"amount": ""}, "amount", "Choose an amount, or enter your own"),
        ({"currency": "XBT"}, "currency", "Choose a currency from the list"),
        ({"frequency": "weekly"}, "frequency", "Not a valid choice"),
        ({"donor_email": "anna@"}, "donor_email", "Enter an email address like"),
        ({"dedication_kind": "memory"}, "dedication_name", "whose name the dedication"),
        ({"dedication_kind": "birth", "dedication_name": "X"}, "dedication_kind", "in honour of"),
        ({"dedication_name": "my grandmother Anna"}, "dedication_kind", "You gave a name"),
        ({"message": "m" * 501}, "message", "at most 500 characters"),
    ],
)  # fmt: skip
def test_bad_input_comes_back_with_values_and_a_message(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    fake_stripe: FakeStripe,
    change: dict[str, str],
    field: str,
    message: str,
) -> None:
    data = {**ONE_TIME, "donor_name": "Anna Novak", "cover_fee": "y", **change}
    data = {k: v for k, v in data.items() if v != ""}
    response = post_form(stripe_client, "/donate", data)
    assert response.status_code == 422
    html = response.text
    assert "<title>Error: Donate" in html
    assert f'id="{field}-error"' in html
    assert message in html.split(f'id="{field}-error"')[1].split("</p>")[0]
    # The message is read out with its control (or its group), not only seen beside it.
    assert re.search(rf'aria-describedby="(?:[^"]* )?{field}-error[ "]', html)
    assert 'value="Anna Novak"' in html
    assert re.search(r'<input[^>]* checked id="cover_fee"', html)
    assert count(stripe_app) == 0
    assert fake_stripe.requests == []


@pytest.mark.parametrize("typed", ["-5", "99999999999999"])
def test_an_amount_out_of_bounds_is_given_no_estimate_of_its_own(
    stripe_client: FlaskClient, typed: str
) -> None:
    response = post_form(stripe_client, "/donate", {**ONE_TIME, **other(typed)})
    assert response.status_code == 422
    estimate = response.text.split('class="fee-example js-only">')[1].split("</span>")[0]
    assert estimate == "On €10.00 that adds €0.41."


@pytest.mark.parametrize("amount", ["1e999990", "NaN", "-Infinity", "25.000", "1E+3"])
def test_a_forged_preset_is_refused_quickly(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe, amount: str
) -> None:
    started = time.monotonic()
    response = post_form(stripe_client, "/donate", {**ONE_TIME, "amount": amount})
    assert time.monotonic() - started < 2
    assert response.status_code == 422
    assert "Choose one of the amounts" in response.text
    assert count(stripe_app) == 0
    assert fake_stripe.requests == []


def test_honeypot_with_other_mistakes_goes_nowhere_too(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    data = {**ONE_TIME, "amount": "7", "homepage": "http://spam.example"}
    response = post_form(stripe_client, "/donate", data)
    assert response.status_code == 303
    assert response.headers["Location"] == "/donate"
    assert count(stripe_app) == 0
    assert fake_stripe.requests == []


def test_honeypot_goes_nowhere_and_stores_nothing(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    response = post_form(stripe_client, "/donate", {**ONE_TIME, "homepage": "http://spam.example"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/donate"
    assert count(stripe_app) == 0
    assert fake_stripe.requests == []


def test_a_gift_sent_without_the_site_s_cookie_comes_back_filled_in(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # The form was filled in, then the browser lost its cookie for the site.
    stale = csrf_token(stripe_app.test_client().get("/donate").text)
    data = {
        **ONE_TIME, **other("42"), "frequency": "monthly", "currency": "GBP",
        "cover_fee": "y", "donor_name": "Anna Novak", "donor_email": "anna@example.org",
        "message": "For the shelter", "homepage": "http://spam.example",
    }  # fmt: skip
    response = stripe_client.post("/donate", data={**data, "csrf_token": stale})
    assert response.status_code == 400
    html = response.text
    assert (
        "For your security we could not accept this form as sent: it came without this "
        "site's cookie or from before it was renewed. Your answers are below: check them "
        "and send again."
    ) in unescape(html)
    assert re.search(r'<input checked id="frequency-1"[^>]*value="monthly"', html)
    assert '<option selected value="GBP">' in html
    assert re.search(r'<input checked id="amount-4"', html)
    assert re.search(r'<input[^>]*name="other_amount"[^>]*value="42"', html)
    assert re.search(r'<input[^>]* checked id="cover_fee"', html)
    assert 'value="Anna Novak"' in html and 'value="anna@example.org"' in html
    assert "For the shelter</textarea>" in html
    assert stale not in html
    assert "http://spam.example" not in html
    assert count(stripe_app) == 0
    assert fake_stripe.requests == []

    # Sent again as it came back, the gift goes to Stripe.
    del data["homepage"]
    again = stripe_client.post("/donate", data={**data, "csrf_token": csrf_token(html)})
    assert again.status_code == 303
    assert [(d.amount, d.currency) for d in donations(stripe_app)] == [(4200, "GBP")]


def test_a_retry_without_a_token_gets_the_reload_page(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    response = stripe_client.post("/donate/retry/abc")
    assert response.status_code == 400
    assert "Please reload the form" in response.text
    assert "works only for a while" not in response.text
    assert "from before it was renewed" in response.text
    assert fake_stripe.requests == []


def test_form_action_allows_stripe_checkout(client: FlaskClient) -> None:
    csp = client.get("/donate").headers["Content-Security-Policy"]
    assert "form-action 'self' https://checkout.stripe.com" in csp


# --------------------------------------------------------------------------- Stripe failing


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (lambda fake: fake.fail_next(500), 502),
        (lambda fake: fake.fail_next(429, {"type": "invalid_request_error"}), 503),
        (lambda fake: fake.drop_next(), 503),
        (lambda fake: fake.fail_next(409, {"type": "idempotency_error",
                                           "message": "A request with this key is in progress"}),
         503),
    ],
    ids=["api-error", "rate-limited", "network-down", "same-key-in-progress"],
)  # fmt: skip
def test_stripe_failure_is_a_calm_page_and_a_logged_request_id(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    fake_stripe: FakeStripe,
    caplog: pytest.LogCaptureFixture,
    failure: Any,
    status: int,
) -> None:
    failure(fake_stripe)
    with caplog.at_level(logging.WARNING):
        response = post_form(stripe_client, "/donate", ONE_TIME)
    assert_calm_page(response, status, retryable=True)
    [donation] = donations(stripe_app)
    assert donation.status == DonationStatus.NOT_STARTED
    assert donation.stripe_session_id is None
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert donation.reference in logged
    assert "stripe request id" in logged


def test_stripe_s_words_on_a_refusal_stay_out_of_the_log(
    stripe_client: FlaskClient, fake_stripe: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    # Stripe's message may quote what the donor typed; the log outlives an erasure.
    refusal = {
        "type": "invalid_request_error",
        "code": "email_invalid",
        "param": "customer_email",
        "message": "Invalid email address: anna@example.org",
    }
    fake_stripe.fail_next(400, refusal)
    with caplog.at_level(logging.DEBUG):
        sent = post_form(stripe_client, "/donate", {**ONE_TIME, "donor_email": "anna@example.org"})
    assert sent.status_code == 502
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "anna@example.org" not in logged
    assert "Invalid email address: [an address] (status 400, code email_invalid, param " in logged
    assert "param customer_email, stripe request id" in logged


def test_the_admin_overview_shows_checkouts_stripe_refused(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    fake_stripe: FakeStripe,
    admin_client: FlaskClient,
) -> None:
    assert "Needs a look" not in admin_client.get("/admin/").text
    fake_stripe.fail_next(401, {"type": "invalid_request_error", "message": "Invalid API Key"})
    assert post_form(stripe_client, "/donate", ONE_TIME).status_code == 502
    html = admin_client.get("/admin/").text
    assert "Stripe refused 1 checkout in the last 7 days" in html
    assert "Invalid API Key" in html
    told = stripe_app.test_cli_runner().invoke(args=["check"])
    assert told.exit_code == 1
    assert told.output.startswith("- Stripe refused 1 checkout in the last 7 days: donors are")
    assert "Check STRIPE_SECRET_KEY. The latest: Stripe refused" in told.output
    assert "Invalid API Key" in told.output


def test_a_refused_checkout_put_right_and_paid_no_longer_needs_a_look(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    fake_stripe: FakeStripe,
    admin_client: FlaskClient,
) -> None:
    fake_stripe.fail_next(401, {"type": "invalid_request_error", "message": "Invalid API Key"})
    assert post_form(stripe_client, "/donate", ONE_TIME).status_code == 502
    assert "Stripe refused 1 checkout" in admin_client.get("/admin/").text
    # The key is put right; the donor tries again, and pays.
    [gift] = donations(stripe_app)
    token = csrf_token(stripe_client.get("/donate").text)
    retried = stripe_client.post(f"/donate/retry/{gift.reference}", data={"csrf_token": token})
    assert retried.status_code == 303
    # Checkout works again: nothing is left to look at, even before the donor has paid.
    assert "Stripe refused" not in admin_client.get("/admin/").text
    [gift] = donations(stripe_app)
    paid = {
        "id": gift.stripe_session_id, "object": "checkout.session", "payment_status": "paid",
        "amount_total": 2500, "currency": "eur", "payment_intent": "pi_test_retried",
        "client_reference_id": gift.reference, "metadata": {"donation_reference": gift.reference},
    }  # fmt: skip
    assert (
        post_event(stripe_client, make_event("checkout.session.completed", paid)).status_code == 200
    )
    html = admin_client.get("/admin/").text
    assert "Stripe refused" not in html
    assert "Invalid API Key" not in html


def test_a_gift_paid_after_a_refusal_noted_before_is_not_counted_as_refused(
    admin_client: FlaskClient, add_donation: Callable[..., str]
) -> None:
    # Kept by an earlier release, which left the refusal's note on a gift paid later.
    note = "Stripe refused the checkout: Invalid API Key (request req_1)"
    add_donation(status="paid", failure_reason=note)
    for status in ("processing", "ended", "refunded"):
        add_donation(status=status, failure_reason=note, paid_at=None)
    assert "Stripe refused" not in admin_client.get("/admin/").text
    add_donation(status="not_started", failure_reason=note, amount_received=0)
    assert "Stripe refused 1 checkout in the last 7 days" in admin_client.get("/admin/").text


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, {"type": "invalid_request_error", "message": "Invalid currency: xyz"}),
        (401, {"type": "invalid_request_error", "message": "Invalid API Key provided"}),
        (403, {"type": "invalid_request_error", "message": "The key lacks the permission"}),
        (400, {"type": "idempotency_error", "message": "Keys can only be used with the same"}),
    ],
    ids=["invalid-request", "authentication", "permission", "idempotency"],
)
def test_a_request_stripe_refuses_is_not_offered_as_something_to_try_again(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    fake_stripe: FakeStripe,
    caplog: pytest.LogCaptureFixture,
    status: int,
    error: dict[str, str],
) -> None:
    # Asking again with the same key would be refused the same way: the donor is told
    # plainly that giving online is not working, and the log says why, at error level.
    fake_stripe.fail_next(status, error)
    response = post_form(stripe_client, "/donate", ONE_TIME)
    assert_calm_page(response, 502, retryable=False)
    assert "in the site's log and on the admin overview for RENATE's team" in response.text
    assert "usually passes" not in response.text
    [donation] = donations(stripe_app)
    assert donation.status == DonationStatus.NOT_STARTED
    assert donation.failure_reason.startswith("Stripe refused the checkout: ")
    [record] = [r for r in caplog.records if donation.reference in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "stripe request id req_fake_1" in record.getMessage()
    assert error["message"] in record.getMessage()


def test_a_retry_whose_parameters_drifted_is_refused_as_stripe_would(
    make_app: Any, stripe_config: dict[str, Any], fake_stripe: FakeStripe
) -> None:
    # The site's address changed between two attempts at one gift: the retry sends other
    # return addresses under the same idempotency key, which Stripe refuses with a 400.
    before = make_app(**{**stripe_config, "SITE_URL": "http://localhost"})
    assert post_form(before.test_client(), "/donate", ONE_TIME).status_code == 303
    [donation] = donations(before)
    after = make_app(**{**stripe_config, "SITE_URL": "https://donate.example.org"})
    client = after.test_client()
    with client.session_transaction() as browser:  # the same browser, its cookie kept
        browser["own_gifts"] = [donation.reference]
    token = csrf_token(client.get("/donate").text)
    retry = client.post(f"/donate/retry/{donation.reference}", data={"csrf_token": token})
    assert retry.status_code == 502
    assert "Giving online is not working right now" in retry.text
    [first, second] = fake_stripe.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.body != second.body


@pytest.fixture
def silent_stripe() -> Any:
    """A local address that accepts connections and never answers, like a hung Stripe."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", held
    stop.set()
    thread.join(timeout=5)
    for connection in held:
        connection.close()
    listener.close()


def test_a_stripe_that_never_answers_gives_the_calm_page_within_the_timeout(
    make_app: Any, silent_stripe: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The library's own HTTP client, as in production, with a short wait per attempt: the
    # donor gets our page long before a web worker would be killed, and the gift is not started.
    url, held = silent_stripe
    app = make_app(
        STRIPE_SECRET_KEY=TEST_KEY,
        STRIPE_WEBHOOK_SECRET="whsec_unused",
        STRIPE_API_BASE=url,
        STRIPE_TIMEOUT=0.3,
        STRIPE_MAX_NETWORK_RETRIES=1,
    )
    client = app.test_client()
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING):
            response = post_form(client, "/donate", ONE_TIME)
    finally:
        app.extensions["stripe_http_client"].close()  # its open connections, whatever happens
    waited = time.monotonic() - started
    assert response.status_code == 503
    assert "We could not reach our payment provider" in response.text
    assert "nothing was taken" in response.text
    assert "Try again" in response.text
    assert len(held) == 2  # the first attempt and one retry, each given up on
    assert 0.6 <= waited < 5
    [donation] = donations(app)
    assert donation.status == DonationStatus.NOT_STARTED
    assert "APIConnectionError" in caplog.text


def test_stripe_request_id_is_in_the_log(
    stripe_client: FlaskClient, fake_stripe: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    fake_stripe.fail_next(500)
    with caplog.at_level(logging.WARNING):
        post_form(stripe_client, "/donate", ONE_TIME)
    assert "stripe request id req_fake_1" in caplog.text


def test_retry_uses_the_same_idempotency_key_and_makes_one_session(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # The network failed: Stripe may have made the session, so the same key finds it again.
    fake_stripe.drop_next()
    failed = post_form(stripe_client, "/donate", ONE_TIME)
    assert failed.status_code == 503
    [donation] = donations(stripe_app)
    retry_url = f"/donate/retry/{donation.reference}"
    assert f'action="{retry_url}"' in failed.text

    token = csrf_token(failed.text)
    first = stripe_client.post(retry_url, data={"csrf_token": token})
    again = stripe_client.post(retry_url, data={"csrf_token": token})
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    keys = {r.headers["Idempotency-Key"] for r in fake_stripe.requests}
    assert keys == {f"donation-{donation.reference}-checkout"}
    assert len({r.body for r in fake_stripe.requests}) == 1
    [donation] = donations(stripe_app)
    assert donation.status == DonationStatus.OPEN
    assert first.headers["Location"].endswith(donation.stripe_session_id)


def test_retry_after_a_stripe_server_error_is_not_answered_with_the_same_error(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # Stripe replays a 500 for the same idempotency key for a day; the retry needs a new one.
    fake_stripe.fail_next(500)
    failed = post_form(stripe_client, "/donate", ONE_TIME)
    assert failed.status_code == 502
    [donation] = donations(stripe_app)
    retry_url = f"/donate/retry/{donation.reference}"
    token = csrf_token(failed.text)

    fake_stripe.drop_next()  # and then the network fails: that key must be kept
    assert stripe_client.post(retry_url, data={"csrf_token": token}).status_code == 503
    first = stripe_client.post(retry_url, data={"csrf_token": token})
    again = stripe_client.post(retry_url, data={"csrf_token": token})
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    keys = [r.headers["Idempotency-Key"] for r in fake_stripe.requests]
    assert keys[0] == f"donation-{donation.reference}-checkout"
    assert keys[1] == keys[2] == keys[3] != keys[0]
    assert keys[1].startswith(f"donation-{donation.reference}-checkout-")
    assert len({r.body for r in fake_stripe.requests}) == 1
    assert len(fake_stripe.sessions_created) == 4
    [donation] = donations(stripe_app)
    assert donation.status == DonationStatus.OPEN
    assert first.headers["Location"].endswith(donation.stripe_session_id)


def test_a_retry_a_day_later_follows_the_new_session(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    started = post_form(stripe_client, "/donate", ONE_TIME)
    assert started.status_code == 303
    [donation] = donations(stripe_app)
    first_session = donation.stripe_session_id
    fake_stripe.forget_keys()
    token = csrf_token(stripe_client.get("/donate").text)
    again = stripe_client.post(f"/donate/retry/{donation.reference}", data={"csrf_token": token})
    assert again.status_code == 303
    [donation] = donations(stripe_app)
    assert donation.stripe_session_id != first_session
    assert again.headers["Location"].endswith(donation.stripe_session_id)
    thanks = stripe_client.get(f"/donate/thanks?session_id={donation.stripe_session_id}")
    assert thanks.status_code == 200


def test_retry_needs_the_csrf_token(stripe_app: Flask, stripe_client: FlaskClient) -> None:
    assert stripe_client.post("/donate/retry/" + "a" * 32).status_code == 400


def test_retry_of_an_unknown_gift_is_404(stripe_client: FlaskClient) -> None:
    token = csrf_token(stripe_client.get("/donate").text)
    response = stripe_client.post("/donate/retry/" + "a" * 32, data={"csrf_token": token})
    assert response.status_code == 404


def test_retry_from_another_browser_does_not_reach_the_donor_s_checkout(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # The reference is in the cancel URL; the Checkout session it would open shows the
    # donor's email address. A stranger holding it gets the page strangers get.
    fake_stripe.drop_next()
    assert post_form(stripe_client, "/donate", NAMED).status_code == 503
    [donation] = donations(stripe_app)
    asked = len(fake_stripe.requests)
    stranger = stripe_app.test_client()
    token = csrf_token(stranger.get("/donate").text)
    response = stranger.post(f"/donate/retry/{donation.reference}", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/donate/cancelled?ref={donation.reference}"
    assert len(fake_stripe.requests) == asked  # Stripe was not asked
    assert "checkout.stripe.com" not in response.text
    page = stranger.get(response.headers["Location"])
    assert page.status_code == 200
    for personal in ("Anna Novák", "anna@example.org"):
        assert personal not in page.text
    [donation] = donations(stripe_app)
    assert donation.stripe_session_id is None

    # The donor's own browser still gets there.
    token = csrf_token(stripe_client.get("/donate").text)
    own = stripe_client.post(f"/donate/retry/{donation.reference}", data={"csrf_token": token})
    assert own.status_code == 303
    [donation] = donations(stripe_app)
    assert own.headers["Location"] == CHECKOUT_URL + donation.stripe_session_id


def test_a_retry_page_opened_again_from_history_leads_back_to_the_gift(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # "Try again" failed again: the browser is left on the retry address, which the
    # donor may reopen later from history.
    fake_stripe.drop_next()
    failed = post_form(stripe_client, "/donate", {**ONE_TIME, "amount": "50"})
    [donation] = donations(stripe_app)
    retry_url = f"/donate/retry/{donation.reference}"
    fake_stripe.drop_next()
    again = stripe_client.post(retry_url, data={"csrf_token": csrf_token(failed.text)})
    assert again.status_code == 503
    assert "We could not reach our payment provider" in again.text

    reopened = stripe_client.get(retry_url)
    assert reopened.status_code == 303
    assert reopened.headers["Location"] == f"/donate/cancelled?ref={donation.reference}"
    page = stripe_client.get(reopened.headers["Location"])
    assert page.status_code == 200
    assert "nothing was taken" in page.text
    assert re.search(r'<input checked id="amount-2"[^>]*value="50"', page.text)
    assert len(fake_stripe.requests) == 2  # looking asks Stripe nothing
    assert stripe_client.get("/donate/retry/" + "a" * 32).status_code == 404
    assert stripe_client.get("/donate/retry/nothing").status_code == 404


# --------------------------------------------------------------------------- coming back


def start(client: FlaskClient, data: dict[str, str] | None = None) -> str:
    """Submit the form; the Checkout session id the donor was sent to."""
    response = post_form(client, "/donate", data or ONE_TIME)
    assert response.status_code == 303, response.status_code
    return response.headers["Location"].rsplit("/", 1)[1]


def test_thanks_says_being_processed_until_a_webhook_confirms(
    stripe_app: Flask, stripe_client: FlaskClient, send_event
) -> None:
    session_id = start(stripe_client)
    page = stripe_client.get(f"/donate/thanks?session_id={session_id}")
    assert page.status_code == 200
    assert "your gift is being processed" in page.text
    assert "€25.00" in page.text
    assert donations(stripe_app)[0].status == DonationStatus.OPEN  # looking changes nothing

    [donation] = donations(stripe_app)
    completed = {
        "id": session_id,
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": 2500,
        "currency": "eur",
        "payment_intent": "pi_test_1",
        "client_reference_id": donation.reference,
        "metadata": {"donation_reference": donation.reference},
    }
    assert send_event(make_event("checkout.session.completed", completed)).status_code == 200
    page = stripe_client.get(f"/donate/thanks?session_id={session_id}")
    assert "Thank you for your gift" in page.text
    assert "We have received your gift of <strong>€25.00</strong>" in page.text
    # A test payment gets no receipt from Stripe, so the page does not promise one.
    assert "This was a test payment, so Stripe sends no receipt." in page.text
    assert "Stripe sends your receipt by email" not in page.text


@pytest.mark.parametrize(
    ("status", "heading"),
    [
        (DonationStatus.OPEN, "Thank you: your gift is being processed"),
        (DonationStatus.PAID, "Thank you for your gift"),
        (DonationStatus.FAILED, "Your payment did not go through"),
        (DonationStatus.ABANDONED, "Your payment did not go through"),
        (DonationStatus.REFUNDED, "This gift was refunded"),
    ],
)
def test_the_thank_you_page_s_title_says_what_its_heading_says(
    stripe_app: Flask, stripe_client: FlaskClient, status: DonationStatus, heading: str
) -> None:
    # The title is what a tab and a screen reader announce first: a donor whose payment
    # did not go through must not be thanked there.
    session_id = start(stripe_client)
    with stripe_app.app_context():
        db.session.scalars(select(Donation)).one().status = status
        db.session.commit()
    page = stripe_client.get(f"/donate/thanks?session_id={session_id}").text
    assert f"<title>{heading} · RENATE</title>" in page
    assert f'<h1 id="thanks-heading">{heading}</h1>' in page


@pytest.mark.parametrize(
    "session_id", ["cs_test_unknown123", "", "nonsense", "cs_test_<script>", "cs_test_" + "a" * 300]
)
def test_unknown_or_malformed_session_is_a_polite_404(
    stripe_client: FlaskClient, session_id: str
) -> None:
    start(stripe_client)
    response = stripe_client.get("/donate/thanks", query_string={"session_id": session_id})
    assert response.status_code == 404
    assert "We could not find this gift here" in response.text
    assert "If you have just completed a payment, your gift is safe" in response.text
    assert "We could not find that page" not in response.text
    assert 'href="/donate"' in response.text and 'href="/"' in response.text


def test_the_address_for_a_larger_gift_is_shown_as_it_is_written(
    make_app: Any, stripe_config: dict[str, Any]
) -> None:
    # Braces are allowed before an email's @; they must not be taken for a placeholder.
    client = make_app(**stripe_config, CONTACT_EMAIL="gifts{0}@renate.example").test_client()
    response = post_form(client, "/donate", {**ONE_TIME, **other("10000.01")})
    assert response.status_code == 422
    assert "Online gifts can be up to €10,000.00." in response.text
    assert '<a href="mailto:gifts{0}@renate.example">gifts{0}@renate.example</a>' in response.text


def test_an_unknown_gift_s_page_says_what_happens_to_a_payment(
    make_app: Any, stripe_config: dict[str, Any]
) -> None:
    # In test mode Stripe sends no receipt, so the page does not promise one.
    test_mode = make_app(**stripe_config).test_client().get("/donate/thanks?session_id=cs_x")
    assert test_mode.status_code == 404
    assert "Stripe sends no receipt" in test_mode.text
    assert "Stripe emails your receipt" not in test_mode.text
    assert 'href="mailto:privacy@renate.example"' in test_mode.text

    without_contact = make_app(**stripe_config, CONTACT_EMAIL="").test_client()
    page = without_contact.get("/donate/thanks?session_id=cs_test_nope")
    assert page.status_code == 404
    assert "mailto:" not in page.text
    assert "write to" not in page.text
    assert "We could not find this gift here" in page.text


def test_cancelled_brings_back_the_form_with_their_choices(
    stripe_app: Flask, stripe_client: FlaskClient
) -> None:
    data = {
        "frequency": "monthly",
        "currency": "GBP",
        "amount": "other",
        "other_amount": "30,50",
        "cover_fee": "y",
        "dedication_kind": "memory",
        "dedication_name": "Anna Novak",
        "anonymous": "y",
        "donor_name": "Jan",
        "donor_email": "jan@example.org",
        "message": "For the shelter in Tirana",
    }
    post_form(stripe_client, "/donate", data)
    [donation] = donations(stripe_app)
    page = stripe_client.get(f"/donate/cancelled?ref={donation.reference}")
    assert page.status_code == 200
    html = page.text
    assert "Your payment was not completed and nothing was taken" in html
    assert re.search(r'<input checked id="frequency-1"[^>]*value="monthly"', html)
    assert '<option selected value="GBP">GBP</option>' in html
    assert re.search(r'<input checked id="amount-4"[^>]*value="other"', html)
    assert 'value="30.50"' in html
    assert re.search(r'<input[^>]* checked[^>]* id="cover_fee"', html)
    assert re.search(r'<input[^>]* checked[^>]* id="anonymous"', html)
    assert '<option selected value="memory">' in html
    assert 'value="Anna Novak"' in html and 'value="Jan"' in html
    assert "For the shelter in Tirana</textarea>" in html
    assert '<details class="more" open>' in html
    assert donations(stripe_app)[0].status == DonationStatus.OPEN  # a webhook decides
    # Their details, for no cache to keep: not brought back from history on a shared computer.
    assert page.headers["Cache-Control"] == "no-store"
    thanks = stripe_client.get(f"/donate/thanks?session_id={donation.stripe_session_id}")
    assert thanks.headers["Cache-Control"] == "no-store"
    refused = post_form(stripe_client, "/donate", {**data, "other_amount": "0"})
    assert refused.status_code == 422 and 'value="jan@example.org"' in refused.text
    assert refused.headers["Cache-Control"] == "no-store"


def test_cancelled_shows_personal_details_only_to_the_browser_that_gave_them(
    stripe_app: Flask, stripe_client: FlaskClient
) -> None:
    data = {
        **ONE_TIME,
        "amount": "50",
        "donor_name": "Jan Novák",
        "donor_email": "jan@example.org",
        "message": "For the shelter in Tirana",
        "dedication_kind": "honour",
        "dedication_name": "Zofia Kowalczyk",
    }
    post_form(stripe_client, "/donate", data)
    [donation] = donations(stripe_app)
    stranger = stripe_app.test_client().get(f"/donate/cancelled?ref={donation.reference}")
    assert stranger.status_code == 200
    assert re.search(r'<input checked id="amount-2"[^>]*value="50"', stranger.text)
    for personal in ("Jan Novák", "jan@example.org", "Tirana", "Zofia Kowalczyk"):
        assert personal not in stranger.text


def test_back_from_checkout_unpaid_the_page_says_so_first(
    stripe_app: Flask, stripe_client: FlaskClient
) -> None:
    post_form(stripe_client, "/donate", ONE_TIME)
    [donation] = donations(stripe_app)
    html = stripe_client.get(f"/donate/cancelled?ref={donation.reference}").text
    # The window's title and the focus, where a screen reader starts, both tell of it.
    assert "<title>Payment not completed · Donate · RENATE</title>" in html
    note = re.search(r'<p class="notice"[^>]*id="donate-cancelled"[^>]*>', html)
    assert note is not None
    assert "autofocus" in note.group(0)
    assert 'tabindex="-1"' in note.group(0)
    assert "<title>Donate · RENATE</title>" in stripe_client.get("/donate").text


def test_cancelled_keeps_a_preset_choice(stripe_app: Flask, stripe_client: FlaskClient) -> None:
    post_form(stripe_client, "/donate", {**ONE_TIME, "amount": "50"})
    [donation] = donations(stripe_app)
    html = stripe_client.get(f"/donate/cancelled?ref={donation.reference}").text
    assert re.search(r'<input checked id="amount-2"[^>]*value="50"', html)


@pytest.mark.parametrize(
    ("chosen", "typed"), [({"amount": "other", "other_amount": "5000"}, "¥5,000"),
                          ({"amount": "50"}, "¥50")],
)  # fmt: skip
def test_cancelled_in_a_currency_no_longer_offered_does_not_carry_the_amount_over(
    make_app: Any, stripe_config: dict[str, Any], chosen: dict[str, str], typed: str
) -> None:
    before = make_app(**stripe_config, DONATION_CURRENCIES="EUR,JPY")
    client = before.test_client()
    data = {"frequency": "monthly", "currency": "JPY", "cover_fee": "y", **chosen}
    assert post_form(client, "/donate", data).status_code == 303
    [donation] = donations(before)
    # The site now takes euros only; the donor comes back from Checkout in the same browser.
    after = make_app(**stripe_config, DONATION_CURRENCIES="EUR")
    returning = after.test_client()
    with client.session_transaction() as kept, returning.session_transaction() as session:
        session.update(kept)
    html = returning.get(f"/donate/cancelled?ref={donation.reference}").text
    # ¥5000 is not €5000: no amount is brought back, and the donor is told why.
    assert 'value="5000"' not in html
    assert re.search(r'<input checked id="amount-\d"[^>]*value="25"', html)
    assert '<option selected value="EUR">EUR</option>' in html
    note = re.search(r'<p class="hint" id="currency-note">(.*?)</p>', html, re.S)
    assert note is not None
    assert re.search(r'<select[^>]*aria-describedby="currency-note"[^>]*id="currency"', html)
    assert " ".join(unescape(note.group(1)).split()) == (
        f"Your gift of {typed} was in JPY, which we no longer take online. "
        "Please choose the amount again in one of the currencies offered."
    )
    # The other choices are kept.
    assert re.search(r'<input checked id="frequency-1"[^>]*value="monthly"', html)
    assert re.search(r'<input[^>]* checked[^>]* id="cover_fee"', html)


def test_a_retry_in_a_currency_no_longer_offered_asks_again_rather_than_charging_it(
    make_app: Any, stripe_config: dict[str, Any], fake_stripe: FakeStripe
) -> None:
    before = make_app(**stripe_config, DONATION_CURRENCIES="EUR,JPY")
    client = before.test_client()
    fake_stripe.fail_next(500)
    data = {**ONE_TIME, "currency": "JPY", "amount": "other", "other_amount": "5000"}
    failed = post_form(client, "/donate", data)
    assert failed.status_code == 502
    [donation] = donations(before)
    asked = len(fake_stripe.requests)
    # The site now takes euros only; the donor presses "Try again" on the page left open.
    after = make_app(**stripe_config, DONATION_CURRENCIES="EUR")
    returning = after.test_client()
    with client.session_transaction() as kept, returning.session_transaction() as session:
        session.update(kept)
    retried = returning.post(
        f"/donate/retry/{donation.reference}", data={"csrf_token": csrf_token(failed.text)}
    )
    # Nothing is asked of Stripe in yen: the form comes back, saying why.
    assert retried.status_code == 409
    assert len(fake_stripe.requests) == asked
    assert 'id="currency-note"' in retried.text
    assert "which we no longer take online" in retried.text
    assert '<option selected value="EUR">EUR</option>' in retried.text
    assert 'value="5000"' not in retried.text
    assert re.search(r'<input checked id="amount-\d"[^>]*value="25"', retried.text)
    [donation] = donations(after)
    assert donation.status == DonationStatus.NOT_STARTED


def test_a_retry_of_a_test_gift_once_the_site_takes_real_money_never_reaches_live_checkout(
    make_app: Any, stripe_config: dict[str, Any], fake_stripe: FakeStripe
) -> None:
    before = make_app(**stripe_config)
    client = before.test_client()
    started = post_form(client, "/donate", ONE_TIME)
    assert started.status_code == 303
    [donation] = donations(before)
    assert donation.livemode is False
    asked = len(fake_stripe.requests)
    # The site now has its live key; the page left open from a test gift is pressed again.
    after = make_app(
        **{**stripe_config, "STRIPE_SECRET_KEY": "sk_live_abc123"}, STRIPE_ALLOW_LIVE=True
    )
    returning = after.test_client()
    with client.session_transaction() as kept, returning.session_transaction() as session:
        session.update(kept)
    page = returning.get(f"/donate/cancelled?ref={donation.reference}")
    retried = returning.post(
        f"/donate/retry/{donation.reference}", data={"csrf_token": csrf_token(page.text)}
    )
    # A test gift is never paid with real money: the donor gets the form back, to give anew.
    assert retried.status_code == 303
    assert retried.headers["Location"] == f"/donate/cancelled?ref={donation.reference}"
    assert len(fake_stripe.requests) == asked
    [donation] = donations(after)
    assert donation.livemode is False
    assert donation.status == DonationStatus.OPEN


def test_cancelled_in_a_currency_still_offered_has_no_currency_note(
    stripe_app: Flask, stripe_client: FlaskClient
) -> None:
    post_form(stripe_client, "/donate", {**ONE_TIME, "currency": "GBP", "amount": "50"})
    [donation] = donations(stripe_app)
    html = stripe_client.get(f"/donate/cancelled?ref={donation.reference}").text
    assert 'id="currency-note"' not in html
    assert re.search(r'<input checked id="amount-2"[^>]*value="50"', html)


@pytest.mark.parametrize("query", ["?ref=nothing", "?ref=" + "a" * 32, ""])
def test_cancelled_without_a_known_gift_shows_the_empty_form(
    stripe_client: FlaskClient, query: str
) -> None:
    # Nothing was brought back, so nothing says it was.
    page = stripe_client.get("/donate/cancelled" + query)
    assert page.status_code == 200
    assert 'class="donate-form"' in page.text
    assert "Your payment was not completed" not in page.text
    assert "Your choices are kept below" not in page.text
    assert re.search(r'<input checked id="amount-1"[^>]*value="25"', page.text)


# --------------------------------------------------------------------------- abuse


def test_donation_posts_are_rate_limited(make_app, stripe_config: dict[str, Any]) -> None:
    app = make_app(**stripe_config, DONATE_RATE_LIMIT="2 per minute")
    client = app.test_client()
    for _ in range(2):
        assert post_form(client, "/donate", ONE_TIME).status_code == 303
    sent = {**other("42"), "donor_name": "Łukasz Nowak", "message": "For the shelter"}
    limited = post_form(client, "/donate", sent)
    assert limited.status_code == 429
    wait = told_wait(limited, most=60)
    assert count(app) == 2
    # A person caught by the limit keeps what they typed, told that nothing was taken.
    assert note_text(limited.text, "too-many-note") == (
        "There have been too many attempts from here in a short while, so no payment was "
        "started and nothing was taken. Your answers are below: please send them again in "
        f"{wait} seconds."
    )
    assert 'value="42"' in limited.text
    assert 'value="Łukasz Nowak"' in limited.text
    assert "For the shelter</textarea>" in limited.text
    assert client.get("/donate").status_code == 200  # reading the form is never limited


# --------------------------------------------------------------------------- Stripe itself


@pytest.mark.stripe_live
@pytest.mark.skipif(
    bool(os.environ.get("CI")),
    reason="never in CI: this test reaches Stripe's real API over the network",
)
def test_a_real_test_mode_session_can_be_created(make_app) -> None:
    key = os.environ.get("STRIPE_TEST_SECRET_KEY", "")
    if not key:
        pytest.skip("set STRIPE_TEST_SECRET_KEY to a Stripe test key (sk_test_...) to run this")
    if not key.startswith(("sk_test_", "rk_test_")):
        pytest.fail("STRIPE_TEST_SECRET_KEY must be a test-mode key (sk_test_ or rk_test_)")
    app = make_app(STRIPE_SECRET_KEY=key, STRIPE_WEBHOOK_SECRET="whsec_unused")
    client = app.test_client()
    response = post_form(client, "/donate", ONE_TIME)
    assert response.status_code == 303, response.text
    assert response.headers["Location"].startswith("https://checkout.stripe.com/")
    [donation] = donations(app)
    assert donation.stripe_session_id.startswith("cs_test_")
    assert donation.status == DonationStatus.OPEN
    assert donation.livemode is False


def test_a_checkbox_hint_is_read_with_its_checkbox(client: FlaskClient) -> None:
    html = client.get("/donate").text
    box = re.search(r'<input[^>]*id="anonymous"[^>]*>', html).group(0)
    assert 'aria-describedby="anonymous-hint"' in box
    assert 'id="anonymous-hint"' in html
    # The fee box is read with what it adds, as sighted donors see beside it.
    box = re.search(r'<input[^>]*id="cover_fee"[^>]*>', html).group(0)
    assert 'aria-describedby="fee-estimate"' in box
    assert 'id="fee-estimate"' in html


@pytest.mark.parametrize("field", ["dedication_name", "donor_name", "message"])
def test_a_name_or_message_in_arabic_or_hebrew_reads_right_to_left(
    client: FlaskClient, field: str
) -> None:
    # As on the pledge form: without it, a long right-to-left name in a left-to-right box
    # shows its end and hides its beginning, and its punctuation lands on the wrong side.
    html = client.get("/donate").text
    box = re.search(rf'<(?:input|textarea)[^>]*\bname="{field}"[^>]*>', html).group(0)
    assert 'dir="auto"' in box
