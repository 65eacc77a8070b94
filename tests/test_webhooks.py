"""Stripe's webhooks: only a signed event changes a gift, exactly once, and only forward."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import func, select, text

from microsite import create_app, ledger
from microsite.extensions import limiter
from microsite.models import (
    ChargeRefund,
    CheckoutSession,
    Donation,
    DonationPayment,
    DonationStatus,
    PendingEvent,
    WebhookEvent,
    db,
)
from tests.conftest import TEST_DATABASE_URL, LiveServer, base_config
from tests.helpers import at_once, csrf_token, post_form
from tests.stripe_fake import FakeStripe, make_event, post_event, sign

ONE_TIME = {"frequency": "one_time", "currency": "EUR", "amount": "25"}
MONTHLY = {"frequency": "monthly", "currency": "EUR", "amount": "10"}


def donation(app: Flask) -> Donation:
    with app.app_context():
        found = db.session.scalars(select(Donation)).one()
        db.session.expunge(found)
        return found


def payments(app: Flask) -> list[tuple[str, int]]:
    with app.app_context():
        rows = db.session.execute(
            select(DonationPayment.stripe_ref, DonationPayment.amount).order_by(DonationPayment.id)
        )
        return [tuple(row) for row in rows]


def events(app: Flask) -> dict[str, str]:
    with app.app_context():
        return dict(db.session.execute(select(WebhookEvent.id, WebhookEvent.outcome)).all())


def start(client: FlaskClient, data: dict[str, str]) -> tuple[str, str]:
    """Submit the form: the gift's reference and its Checkout session id."""
    response = post_form(client, "/donate", data)
    assert response.status_code == 303
    session_id = response.headers["Location"].rsplit("/", 1)[1]
    with client.application.app_context():
        reference = db.session.scalar(
            select(Donation.reference).where(Donation.stripe_session_id == session_id)
        )
    return reference, session_id


def session_object(reference: str, session_id: str, **changes: Any) -> dict[str, Any]:
    obj = {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": 2500,
        "currency": "eur",
        "payment_intent": "pi_test_one",
        "customer": "cus_test_one",
        "subscription": None,
        "invoice": None,
        "client_reference_id": reference,
        "metadata": {"donation_reference": reference, "frequency": "one_time"},
        "livemode": False,
    }
    obj.update(changes)
    return obj


def monthly_session(reference: str, session_id: str, **changes: Any) -> dict[str, Any]:
    base = {
        "mode": "subscription",
        "amount_total": 1000,
        "payment_intent": None,
        "subscription": "sub_test_one",
        "invoice": "in_test_first",
        "metadata": {"donation_reference": reference, "frequency": "monthly"},
    }
    return session_object(reference, session_id, **{**base, **changes})


def invoice(reference: str | None, invoice_id: str, amount: int = 1000, **changes: Any) -> dict:
    """An invoice in the newer API shape: the subscription under parent."""
    obj = {
        "id": invoice_id,
        "object": "invoice",
        "amount_paid": amount,
        "currency": "eur",
        "customer": "cus_test_one",
        "status": "paid",
        "billing_reason": "subscription_cycle",
        "parent": {
            "type": "subscription_details",
            "subscription_details": {
                "subscription": "sub_test_one",
                "metadata": {"donation_reference": reference} if reference else {},
            },
        },
    }
    obj.update(changes)
    return obj


def end_subscription(send_event: Callable) -> dict[str, Any]:
    """Stripe reports that the monthly gift's subscription has ended; its answer."""
    ended = {"id": "sub_test_one", "object": "subscription", "status": "canceled"}
    return send_event(make_event("customer.subscription.deleted", ended)).json


def charge(amount_refunded: int, refunded: bool, **changes: Any) -> dict[str, Any]:
    obj = {
        "id": "ch_test_one",
        "object": "charge",
        "amount": 2500,
        "amount_refunded": amount_refunded,
        "refunded": refunded,
        "currency": "eur",
        "payment_intent": "pi_test_one",
        "metadata": {},
    }
    obj.update(changes)
    return obj


@pytest.fixture
def one_time(stripe_client: FlaskClient) -> tuple[str, str]:
    return start(stripe_client, ONE_TIME)


@pytest.fixture
def monthly(stripe_client: FlaskClient) -> tuple[str, str]:
    return start(stripe_client, MONTHLY)


# --------------------------------------------------------------------------- signatures


def test_signed_completion_marks_the_gift_paid(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    event = make_event("checkout.session.completed", session_object(*one_time))
    response = send_event(event)
    assert response.status_code == 200
    assert response.json == {"received": "paid"}
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.PAID
    assert gift.amount_received == 2500
    assert gift.paid_at is not None
    assert gift.stripe_payment_intent == "pi_test_one"
    assert gift.stripe_customer == "cus_test_one"
    assert payments(stripe_app) == [("pi_test_one", 2500)]
    assert events(stripe_app) == {event["id"]: "paid"}


def _extra_timestamp(stamp: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A genuine signature followed by one more, unreadable, t= element."""

    def attack(event: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(event).encode()
        return {"event": payload, "signature": sign(payload) + f",t={stamp}"}

    return attack


def _extra_signature(element: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A genuine signature followed by one more element."""

    def attack(event: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(event).encode()
        return {"event": payload, "signature": sign(payload) + "," + element}

    return attack


def _tampered(event: dict[str, Any]) -> dict[str, Any]:
    payload = json.dumps(event).encode()
    return {"event": payload.replace(b"2500", b"9900"), "signature": sign(payload)}


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(lambda ev: {"event": ev, "signature": ""}, id="missing"),
        pytest.param(lambda ev: {"event": ev, "secret": "whsec_someone_else"}, id="wrong-secret"),
        pytest.param(lambda ev: {"event": ev, "signature": "t=1,v1=deadbeef"}, id="garbage"),
        pytest.param(lambda ev: {"event": ev, "signature": "v1=abc"}, id="no-timestamp"),
        pytest.param(_tampered, id="tampered"),
        pytest.param(lambda ev: {"event": ev, "timestamp": int(time.time()) - 600}, id="stale"),
        pytest.param(lambda ev: {"event": ev, "timestamp": int(time.time()) + 3600}, id="future"),
        pytest.param(_extra_timestamp("soon"), id="genuine-plus-unreadable-timestamp"),
        pytest.param(_extra_timestamp("9" * 5000), id="genuine-plus-huge-timestamp"),
        # Header bytes beyond ASCII arrive as Latin-1 text, which the stripe library's
        # comparison cannot take.
        pytest.param(lambda ev: {"event": ev, "signature": "t=1,v1=\xe9"}, id="not-ascii"),
        pytest.param(_extra_signature("v1=caf\xe9"), id="genuine-plus-not-ascii"),
    ],
)
def test_unsigned_or_badly_signed_events_change_nothing(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str], attack: Callable
) -> None:
    event = make_event("checkout.session.completed", session_object(*one_time))
    response = send_event(**attack(event))
    assert response.status_code == 400
    assert donation(stripe_app).status == DonationStatus.OPEN
    assert events(stripe_app) == {}
    assert payments(stripe_app) == []


@pytest.mark.parametrize(
    "body", [b"not json at all", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'{"id": "evt_1"}']
)
def test_a_signed_body_that_is_not_an_event_is_400(
    stripe_app: Flask, send_event: Callable, body: bytes
) -> None:
    assert send_event(body).status_code == 400
    assert events(stripe_app) == {}


def test_a_signed_event_with_an_id_longer_than_stripe_makes_is_400(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    event = make_event("checkout.session.completed", session_object(*one_time))
    assert send_event({**event, "id": "evt_" + "x" * 300}).status_code == 400
    assert donation(stripe_app).status == DonationStatus.OPEN
    assert events(stripe_app) == {}


def test_a_signed_body_nested_too_deep_to_read_is_400(
    stripe_app: Flask, send_event: Callable
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    body = b'{"id": "evt_deep", "type": "charge.refunded", "data": {"object": ' + deep + b"}}"
    assert send_event(body).status_code == 400
    assert events(stripe_app) == {}


# What no Stripe id or event type holds; PostgreSQL cannot store a NUL in text, and
# neither database a lone surrogate.
_NOT_TEXT = ["\x00", "\ud800", "\n", "\x7f"]


@pytest.mark.parametrize("odd", _NOT_TEXT, ids=ascii)
@pytest.mark.parametrize("field", ["id", "type"])
def test_a_signed_event_whose_id_or_type_is_not_printable_text_is_400(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str], field: str, odd: str
) -> None:
    event = make_event("checkout.session.completed", session_object(*one_time))
    event[field] = event[field][:8] + odd + event[field][8:]
    assert send_event(event).status_code == 400
    assert donation(stripe_app).status == DonationStatus.OPEN
    assert events(stripe_app) == {}


def _with_odd(value: str, odd: str) -> str:
    return value[:4] + odd + value[4:]


# Each Stripe id the ledger stores or looks a gift up by, holding what no id holds.
_ODD_IDS: list[tuple[str, Callable[[str, str, str], dict[str, Any]]]] = [
    ("session id", lambda ref, sid, odd: session_object(ref, _with_odd(sid, odd))),
    ("reference", lambda ref, sid, odd: session_object(
        _with_odd(ref, odd), "cs_test_other", metadata={"donation_reference": _with_odd(ref, odd)}
    )),
    ("payment intent", lambda ref, sid, odd: session_object(
        ref, sid, payment_intent=_with_odd("pi_test_one", odd)
    )),
    ("customer", lambda ref, sid, odd: session_object(
        ref, sid, customer=_with_odd("cus_test_one", odd)
    )),
    ("subscription", lambda ref, sid, odd: session_object(
        ref, sid, subscription=_with_odd("sub_test_one", odd)
    )),
]  # fmt: skip


@pytest.mark.parametrize("odd", _NOT_TEXT, ids=ascii)
@pytest.mark.parametrize(("_name", "build"), _ODD_IDS, ids=[name for name, _ in _ODD_IDS])
def test_an_id_no_stripe_object_has_is_left_out_of_a_completion(
    stripe_app: Flask,
    send_event: Callable,
    one_time: tuple[str, str],
    odd: str,
    _name: str,
    build: Callable,
) -> None:
    response = send_event(make_event("checkout.session.completed", build(*one_time, odd)))
    assert response.status_code == 200
    gift = donation(stripe_app)
    kept = (gift.stripe_session_id, gift.stripe_payment_intent, gift.stripe_customer,
            gift.stripe_subscription)  # fmt: skip
    assert not any(odd in (value or "") for value in kept)
    assert not any(odd in ref for ref, _ in payments(stripe_app))


@pytest.mark.parametrize("odd", ["\x00", "\ud800"], ids=ascii)
@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        ("charge.refunded", charge(2500, True, id="ch_\x00")),
        ("charge.refunded", charge(2500, True, payment_intent=None, customer="cus_\x00")),
        ("charge.refunded", charge(2500, True, payment_intent=None, invoice="in_\x00")),
        ("charge.refunded", charge(2500, True, metadata={"donation_reference": "ab\x00"})),
        ("invoice.paid", invoice(None, "in_\x00")),
        ("invoice.paid", invoice(None, "in_test_2", parent=None, subscription="sub_\x00")),
        ("invoice.paid", invoice("ab\x00", "in_test_2")),
        ("customer.subscription.deleted", {"id": "sub_\x00", "object": "subscription"}),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_money_events_naming_ids_no_stripe_object_has_change_nothing(
    stripe_app: Flask,
    send_event: Callable,
    monthly: tuple[str, str],
    kind: str,
    obj: dict[str, Any],
    odd: str,
) -> None:
    odd_obj = json.loads(json.dumps(obj).replace("\\u0000", json.dumps(odd)[1:-1]))
    assert send_event(make_event(kind, odd_obj)).status_code == 200
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_received, gift.amount_refunded) == (DonationStatus.OPEN, 0, 0)
    assert payments(stripe_app) == []


# Signed events whose fields hold what no Stripe API version sends: each is answered (and
# recorded), none is a 500, and none moves the gift or counts money.
_ODD_MONTHLY = [
    {"parent": "sub_x"},
    {"parent": {"subscription_details": "sub_x"}},
    {"parent": None, "subscription_details": "x"},
    {"parent": None, "subscription": 5},
    {"parent": None, "subscription": "s" * 300},
    {"parent": None, "lines": "x"},
    {"parent": None, "lines": []},
    {"parent": None, "lines": {"data": {"a": 1}}},
    {"parent": None, "lines": {"data": ["x"]}},
]


@pytest.mark.parametrize("changes", _ODD_MONTHLY, ids=[str(c) for c in _ODD_MONTHLY])
def test_an_invoice_of_an_odd_shape_changes_nothing(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str], changes: dict[str, Any]
) -> None:
    response = send_event(make_event("invoice.paid", invoice(None, "in_test_odd", **changes)))
    assert response.status_code == 200
    assert donation(stripe_app).status == DonationStatus.OPEN
    assert payments(stripe_app) == []


@pytest.mark.parametrize(
    "changes",
    [
        # Found by nothing but the odd reference (the session id is no gift's).
        {"id": "cs_test_other", "metadata": "x", "client_reference_id": {"a": 1}},
        {"id": "cs_test_other", "metadata": None, "client_reference_id": ["a"]},
        {"id": "cs_test_other", "metadata": None, "client_reference_id": 5},
        {"amount_total": 2500.0},
        {"amount_total": True},
        {"amount_total": 10**12},
        {"currency": "euro"},
        {"currency": ["eur"]},
    ],
    ids=str,
)
def test_a_completion_of_an_odd_shape_counts_no_money(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str], changes: dict[str, Any]
) -> None:
    obj = session_object(*one_time, **changes)
    response = send_event(make_event("checkout.session.completed", obj))
    assert response.status_code == 200
    assert payments(stripe_app) == []
    assert donation(stripe_app).amount_received == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"amount_refunded": 5.5},
        {"amount_refunded": 10**12},
        {"currency": 978},
        {"metadata": None, "payment_intent": None, "customer": ["x"]},
    ],
    ids=str,
)
def test_a_refund_of_an_odd_shape_changes_nothing(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str], changes: dict[str, Any]
) -> None:
    reference, session_id = one_time
    send_event(make_event("checkout.session.completed", session_object(reference, session_id)))
    odd = {**charge(2500, True, metadata={"donation_reference": reference}), **changes}
    assert send_event(make_event("charge.refunded", odd)).status_code == 200
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_refunded) == (DonationStatus.PAID, 0)


def test_without_a_webhook_secret_nothing_is_accepted(
    make_app, stripe_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(**{**stripe_config, "STRIPE_WEBHOOK_SECRET": ""})
    client = app.test_client()
    event = make_event("checkout.session.completed", {"id": "cs_test_x"})
    assert post_event(client, event).status_code == 400
    assert "STRIPE_WEBHOOK_SECRET is not set" in caplog.text


def test_webhook_needs_no_csrf_token_and_has_no_rate_limit(
    make_app, stripe_config: dict[str, Any]
) -> None:
    app = make_app(**stripe_config, RATELIMIT_DEFAULT="2 per minute")
    client = app.test_client()
    try:
        for _ in range(5):
            event = make_event("customer.created", {"id": "cus_test", "object": "customer"})
            assert post_event(client, event).status_code == 200
        statuses = [client.get("/healthz").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # the default limit is real elsewhere
    finally:
        # The limiter is one object for the whole process: leave no default behind.
        limiter.limit_manager.set_default_limits([])


def test_an_oversized_body_is_refused(make_app, stripe_config: dict[str, Any]) -> None:
    app = make_app(**stripe_config, WEBHOOK_MAX_CONTENT_LENGTH=65536)
    client = app.test_client()
    event = make_event("customer.created", {"id": "cus_test", "padding": "x" * 70_000})
    assert post_event(client, event).status_code == 413


def test_events_larger_than_a_form_are_accepted(stripe_app: Flask, send_event: Callable) -> None:
    # Stripe's events are often larger than the 64 KB the forms allow.
    big = make_event("customer.created", {"id": "cus_test", "padding": "x" * 100_000})
    assert send_event(big).status_code == 200


# --------------------------------------------------------------------------- exactly once


def test_a_repeated_delivery_answers_200_and_changes_nothing(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    event = make_event("checkout.session.completed", session_object(*one_time))
    assert send_event(event).json == {"received": "paid"}
    again = send_event(event)
    assert again.status_code == 200
    assert again.json == {"received": "duplicate"}
    assert donation(stripe_app).amount_received == 2500
    assert payments(stripe_app) == [("pi_test_one", 2500)]


def _deliver_at_once(server: LiveServer, bodies: list[bytes]) -> list[int]:
    """POST each body from its own thread, all released at the same instant."""

    def delivery(payload: bytes) -> Callable[[], int]:
        def deliver() -> int:
            request = urllib.request.Request(  # noqa: S310
                server.url + "/webhooks/stripe",
                data=payload,
                headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload)},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        return deliver

    return at_once([delivery(body) for body in bodies])


def test_the_same_event_delivered_twice_at_once_counts_once(
    stripe_app: Flask, stripe_client: FlaskClient
) -> None:
    server = LiveServer(stripe_app).start()
    try:
        for _ in range(3):
            with stripe_app.app_context():
                db.session.execute(db.delete(DonationPayment))
                db.session.execute(db.delete(WebhookEvent))
                db.session.execute(db.delete(CheckoutSession))
                db.session.execute(db.delete(Donation))
                db.session.commit()
            reference, session_id = start(stripe_client, ONE_TIME)
            event = make_event("checkout.session.completed", session_object(reference, session_id))
            payload = json.dumps(event).encode()
            assert _deliver_at_once(server, [payload] * 4) == [200] * 4
            gift = donation(stripe_app)
            assert gift.status == DonationStatus.PAID
            assert gift.amount_received == 2500
            assert payments(stripe_app) == [("pi_test_one", 2500)]
            assert events(stripe_app) == {event["id"]: "paid"}
    finally:
        server.stop()


def test_completion_and_first_invoice_at_once_are_one_payment(
    stripe_app: Flask, stripe_client: FlaskClient
) -> None:
    reference, session_id = start(stripe_client, MONTHLY)
    completed = make_event("checkout.session.completed", monthly_session(reference, session_id))
    first = make_event(
        "invoice.paid",
        invoice(reference, "in_test_first", billing_reason="subscription_create"),
    )
    server = LiveServer(stripe_app).start()
    try:
        bodies = [json.dumps(completed).encode(), json.dumps(first).encode()]
        assert _deliver_at_once(server, bodies) == [200, 200]
    finally:
        server.stop()
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.PAID
    assert gift.stripe_subscription == "sub_test_one"
    assert gift.stripe_session_id == session_id
    assert gift.amount_received == 1000
    assert payments(stripe_app) == [("in_test_first", 1000)]
    assert set(events(stripe_app)) == {completed["id"], first["id"]}


# --------------------------------------------------------------------------- each event


def test_delayed_payment_is_processing_then_paid(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    unpaid = session_object(*one_time, payment_status="unpaid")
    assert send_event(make_event("checkout.session.completed", unpaid)).status_code == 200
    assert donation(stripe_app).status == DonationStatus.PROCESSING
    assert donation(stripe_app).amount_received == 0
    paid = session_object(*one_time)
    send_event(make_event("checkout.session.async_payment_succeeded", paid))
    assert donation(stripe_app).status == DonationStatus.PAID
    assert donation(stripe_app).amount_received == 2500


def test_delayed_payment_can_fail(
    stripe_app: Flask, stripe_client: FlaskClient, send_event: Callable, one_time: tuple[str, str]
) -> None:
    unpaid = session_object(*one_time, payment_status="unpaid")
    send_event(make_event("checkout.session.completed", unpaid))
    send_event(make_event("checkout.session.async_payment_failed", unpaid))
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.FAILED
    assert gift.amount_received == 0
    page = stripe_client.get(f"/donate/thanks?session_id={one_time[1]}")
    assert "Your payment did not go through" in page.text


def test_an_expired_session_is_abandoned(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    expired = session_object(*one_time, status="expired", payment_status="unpaid")
    assert send_event(make_event("checkout.session.expired", expired)).json == {
        "received": "abandoned"
    }
    assert donation(stripe_app).status == DonationStatus.ABANDONED


def test_a_partial_then_full_refund(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    send_event(make_event("checkout.session.completed", session_object(*one_time)))
    send_event(make_event("charge.refunded", charge(1000, False), previous={"amount_refunded": 0}))
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_refunded) == (DonationStatus.PAID, 1000)
    send_event(
        make_event("charge.refunded", charge(2500, True), previous={"amount_refunded": 1000})
    )
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_refunded) == (DonationStatus.REFUNDED, 2500)
    assert gift.amount_received == 2500


def test_a_late_completion_never_undoes_a_refund(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    send_event(make_event("checkout.session.completed", session_object(*one_time)))
    send_event(make_event("charge.refunded", charge(2500, True)))
    # Out of order: an older event about the same gift arrives last.
    send_event(make_event("checkout.session.completed", session_object(*one_time)))
    send_event(make_event("checkout.session.expired", session_object(*one_time)))
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.REFUNDED
    assert gift.amount_received == 2500
    assert len(payments(stripe_app)) == 1


def test_expiry_arriving_after_payment_changes_nothing(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    send_event(make_event("checkout.session.completed", session_object(*one_time)))
    send_event(make_event("checkout.session.expired", session_object(*one_time)))
    assert donation(stripe_app).status == DonationStatus.PAID


def test_monthly_gift_records_each_month_once_with_a_running_total(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str]
) -> None:
    reference, session_id = monthly
    send_event(make_event("checkout.session.completed", monthly_session(reference, session_id)))
    first = invoice(reference, "in_test_first", billing_reason="subscription_create")
    assert send_event(make_event("invoice.paid", first)).json == {
        "received": "payment already counted"
    }
    assert donation(stripe_app).amount_received == 1000

    # Later months: the invoice names the subscription only (older API shape, no metadata).
    second = {
        "id": "in_test_second",
        "object": "invoice",
        "amount_paid": 1000,
        "currency": "eur",
        "subscription": "sub_test_one",
    }
    assert send_event(make_event("invoice.paid", second)).json == {"received": "payment recorded"}
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.PAID
    assert gift.amount_received == 2000
    assert payments(stripe_app) == [("in_test_first", 1000), ("in_test_second", 1000)]

    end_subscription(send_event)
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.ENDED
    assert gift.ended_at is not None

    # A month paid just before the end, reported after it: counted, the gift stays ended.
    send_event(make_event("invoice.paid", {**second, "id": "in_test_third"}))
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.ENDED
    assert gift.amount_received == 3000


def test_a_monthly_gift_that_ends_before_any_payment_is_not_thanked_for_money(
    stripe_app: Flask, stripe_client: FlaskClient, send_event: Callable, monthly: tuple[str, str]
) -> None:
    reference, session_id = monthly
    # A bank debit: the session completes unpaid, the debit fails, Stripe ends the gift.
    unpaid = monthly_session(reference, session_id, payment_status="unpaid")
    send_event(make_event("checkout.session.completed", unpaid))
    assert end_subscription(send_event) == {"received": "ended before any payment"}
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_received) == (DonationStatus.FAILED, 0)
    page = stripe_client.get(f"/donate/thanks?session_id={session_id}")
    assert "Your payment did not go through" in page.text
    assert "Thank you for all you gave" not in page.text

    # The one month that was paid after all, reported late: counted, and the gift ended.
    send_event(make_event("invoice.paid", invoice(reference, "in_test_first")))
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_received) == (DonationStatus.ENDED, 1000)


def test_a_paid_monthly_gift_whose_month_was_kept_out_of_its_total_still_ends_as_ended(
    stripe_app: Flask, stripe_client: FlaskClient, send_event: Callable, monthly: tuple[str, str]
) -> None:
    reference, session_id = monthly
    # The first month arrived in dollars: kept, not counted, but the gift was paid.
    in_dollars = monthly_session(reference, session_id, currency="usd")
    send_event(make_event("checkout.session.completed", in_dollars))
    assert (donation(stripe_app).status, donation(stripe_app).amount_received) == ("paid", 0)
    assert end_subscription(send_event) == {"received": "ended"}
    assert donation(stripe_app).status == DonationStatus.ENDED
    page = stripe_client.get(f"/donate/thanks?session_id={session_id}")
    assert "is set up" not in page.text


def test_an_invoice_of_nothing_does_not_mark_a_waiting_gift_paid(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str]
) -> None:
    reference, session_id = monthly
    unpaid = monthly_session(reference, session_id, payment_status="unpaid")
    send_event(make_event("checkout.session.completed", unpaid))
    free = invoice(reference, "in_test_free", amount=0)
    assert send_event(make_event("invoice.paid", free)).json == {"received": "nothing paid"}
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_received) == (DonationStatus.PROCESSING, 0)
    assert payments(stripe_app) == []


PORTAL = "https://billing.stripe.com/p/login/test_renate"
CONTACT = "gifts@renate.example"


@pytest.mark.parametrize(
    ("settings", "on_the_form", "after_giving"),
    [
        (
            {"DONOR_PORTAL_URL": PORTAL, "CONTACT_EMAIL": CONTACT},
            f'stopped at any time: <a href="{PORTAL}">manage a monthly gift</a>.',
            f'go to <a href="{PORTAL}">Stripe\'s page for managing your gift</a>',
        ),
        (
            {"CONTACT_EMAIL": CONTACT},
            f'stopped at any time by writing to <a href="mailto:{CONTACT}">{CONTACT}</a>.',
            f'stop your monthly gift at any time, write to <a href="mailto:{CONTACT}">',
        ),
        ({"CONTACT_EMAIL": ""}, "Monthly gifts can be stopped at any time.</p>", None),
    ],
    ids=["portal", "contact", "neither"],
)
def test_a_monthly_donor_is_told_how_to_change_or_stop_the_gift(
    make_app: Callable[..., Flask],
    stripe_config: dict[str, Any],
    settings: dict[str, str],
    on_the_form: str,
    after_giving: str | None,
) -> None:
    client = make_app(**stripe_config, **settings).test_client()
    for form in ("/", "/donate"):
        assert on_the_form in client.get(form).text

    reference, session_id = start(client, MONTHLY)
    thanks = f"/donate/thanks?session_id={session_id}"
    processing = client.get(thanks).text
    completed = make_event("checkout.session.completed", monthly_session(reference, session_id))
    assert post_event(client, completed).status_code == 200
    paid = client.get(thanks).text
    assert "Your monthly gift of <strong>€10.00</strong> is set up" in paid
    for page in (processing, paid):
        if after_giving is None:
            assert 'class="manage-monthly"' not in page  # nothing to promise
        else:
            assert after_giving in page

    # A one-time gift has nothing to stop.
    reference, session_id = start(client, ONE_TIME)
    completed = make_event("checkout.session.completed", session_object(reference, session_id))
    assert post_event(client, completed).status_code == 200
    page = client.get(f"/donate/thanks?session_id={session_id}").text
    assert "We have received your gift" in page
    assert 'class="manage-monthly"' not in page


def test_a_donor_coming_back_to_an_old_page_is_never_asked_to_pay_again(
    stripe_app: Flask, stripe_client: FlaskClient, send_event: Callable, one_time: tuple[str, str]
) -> None:
    reference, session_id = one_time
    send_event(make_event("checkout.session.completed", session_object(*one_time)))
    thanks = f"/donate/thanks?session_id={session_id}"
    back = stripe_client.get(f"/donate/cancelled?ref={reference}")
    assert (back.status_code, back.headers["Location"]) == (303, thanks)
    token = csrf_token(stripe_client.get("/donate").text)
    retry = stripe_client.post(f"/donate/retry/{reference}", data={"csrf_token": token})
    assert (retry.status_code, retry.headers["Location"]) == (303, thanks)
    assert "Thank you for your gift" in stripe_client.get(thanks).text


def test_first_invoice_before_the_session_completion_still_counts_once(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str]
) -> None:
    reference, session_id = monthly
    first = invoice(reference, "in_test_first", billing_reason="subscription_create")
    assert send_event(make_event("invoice.paid", first)).json == {"received": "payment recorded"}
    send_event(make_event("checkout.session.completed", monthly_session(reference, session_id)))
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.PAID
    assert gift.amount_received == 1000
    assert gift.stripe_subscription == "sub_test_one"
    assert payments(stripe_app) == [("in_test_first", 1000)]


def test_a_refunded_month_is_added_to_the_refunded_total(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str]
) -> None:
    send_event(make_event("checkout.session.completed", monthly_session(*monthly)))
    refund = charge(1000, True, amount=1000, payment_intent="pi_month", invoice="in_test_first")
    send_event(make_event("charge.refunded", refund, previous={"amount_refunded": 0}))
    gift = donation(stripe_app)
    assert gift.amount_refunded == 1000
    assert gift.status == DonationStatus.PAID  # the monthly gift itself goes on


def test_other_event_types_are_acknowledged_and_ignored(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    event = make_event("payment_intent.created", {"id": "pi_test_one", "object": "payment_intent"})
    response = send_event(event)
    assert response.status_code == 200
    assert response.json == {"received": "ignored"}
    assert donation(stripe_app).status == DonationStatus.OPEN
    assert events(stripe_app) == {event["id"]: "ignored"}


def test_events_about_gifts_we_do_not_know_are_acknowledged(
    stripe_app: Flask, send_event: Callable
) -> None:
    stranger = session_object("f" * 32, "cs_test_stranger")
    assert send_event(make_event("checkout.session.completed", stranger)).json == {
        "received": "unmatched"
    }


def test_a_live_event_is_ignored_by_a_test_mode_site(
    stripe_app: Flask,
    send_event: Callable,
    one_time: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = make_event(
        "checkout.session.completed", session_object(*one_time, livemode=True), livemode=True
    )
    with caplog.at_level(logging.WARNING):
        response = send_event(event)
    assert response.status_code == 200
    assert donation(stripe_app).status == DonationStatus.OPEN
    assert payments(stripe_app) == []
    assert f"stripe event {event['id']}" in caplog.text
    assert "livemode=True but the configured key is in test mode" in caplog.text


def test_a_test_event_is_ignored_by_a_live_site(
    make_app: Callable[..., Flask],
    stripe_config: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A test-mode event (say, from `stripe trigger` against the live endpoint) must never
    # mark a real gift paid, even when it names that gift.
    app = make_app(
        **{**stripe_config, "STRIPE_SECRET_KEY": "sk_live_abc123"}, STRIPE_ALLOW_LIVE=True
    )
    client = app.test_client()
    reference, session_id = start(client, ONE_TIME)
    assert donation(app).livemode is True
    paid = session_object(reference, session_id, livemode=False)
    test_event = make_event("checkout.session.completed", paid, livemode=False)
    with caplog.at_level(logging.WARNING):
        response = post_event(client, test_event)
    assert response.status_code == 200
    assert donation(app).status == DonationStatus.OPEN
    assert payments(app) == []
    assert f"stripe event {test_event['id']}" in caplog.text
    assert "livemode=False but the configured key is in live mode" in caplog.text

    # The same payment reported by live mode is the one that counts.
    live = session_object(reference, session_id, livemode=True)
    assert post_event(
        client, make_event("checkout.session.completed", live, livemode=True)
    ).json == {"received": "paid"}
    assert donation(app).status == DonationStatus.PAID
    assert payments(app) == [("pi_test_one", 2500)]


def test_the_thank_you_page_never_marks_anything_paid(
    stripe_app: Flask, stripe_client: FlaskClient, one_time: tuple[str, str]
) -> None:
    for _ in range(3):
        assert stripe_client.get(f"/donate/thanks?session_id={one_time[1]}").status_code == 200
    assert donation(stripe_app).status == DonationStatus.OPEN
    with stripe_app.app_context():
        assert db.session.scalar(select(func.count(WebhookEvent.id))) == 0


def test_two_partial_refunds_of_a_month_add_up_whatever_the_order(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str]
) -> None:
    # Newer API versions put no invoice on a charge, and refund events carry no
    # previous_attributes: the charge's running total is all there is to go on.
    send_event(make_event("checkout.session.completed", monthly_session(*monthly)))
    month = {"amount": 1000, "payment_intent": "pi_month", "customer": "cus_test_one"}
    later = make_event("charge.refunded", charge(700, False, id="ch_month", **month))
    earlier = make_event("charge.refunded", charge(300, False, id="ch_month", **month))
    assert send_event(later).json == {"received": "refunded in part"}
    send_event(earlier)
    assert donation(stripe_app).amount_refunded == 700
    other_month = charge(1000, True, id="ch_other_month", **{**month, "payment_intent": "pi_2"})
    send_event(make_event("charge.refunded", other_month))
    gift = donation(stripe_app)
    assert gift.amount_refunded == 1700
    assert gift.status == DonationStatus.PAID  # the monthly gift itself goes on


def test_a_partial_refund_repeated_in_a_new_event_is_not_counted_twice(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    send_event(make_event("checkout.session.completed", session_object(*one_time)))
    send_event(make_event("charge.refunded", charge(1000, False)))
    send_event(make_event("charge.refunded", charge(1000, False)))  # another event id
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_refunded) == (DonationStatus.PAID, 1000)


# ------------------------------------------------------------ before the gift is known


def pending(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(PendingEvent.event_id)))


def test_a_refund_that_overtakes_the_completion_is_applied_once_the_gift_is_known(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    # The charge carries no metadata; only the payment intent, which the completion teaches.
    refund = make_event("charge.refunded", charge(2500, True))
    response = send_event(refund)
    assert response.status_code == 200  # Stripe must not retry for days
    assert response.json == {"received": "pending"}
    assert donation(stripe_app).amount_refunded == 0
    assert pending(stripe_app) == [refund["id"]]

    send_event(make_event("checkout.session.completed", session_object(*one_time)))
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.REFUNDED
    assert (gift.amount_received, gift.amount_refunded) == (2500, 2500)
    assert pending(stripe_app) == []
    assert events(stripe_app)[refund["id"]] == "later: refunded"


def test_a_monthly_refund_before_the_completion_counts_once_the_customer_is_known(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str]
) -> None:
    # Newer API versions: a month's charge names only the customer.
    month = charge(1000, True, id="ch_month", amount=1000, payment_intent="pi_month")
    refund = make_event("charge.refunded", {**month, "customer": "cus_test_one"})
    assert send_event(refund).json == {"received": "pending"}
    send_event(make_event("checkout.session.completed", monthly_session(*monthly)))
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_received, gift.amount_refunded) == (
        DonationStatus.PAID,
        1000,
        1000,
    )
    assert pending(stripe_app) == []
    # Delivered again by Stripe: the event id is known, nothing counts twice.
    assert send_event(refund).json == {"received": "duplicate"}
    assert donation(stripe_app).amount_refunded == 1000


def test_a_first_invoice_before_the_completion_is_counted_once(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str]
) -> None:
    # Older API shape: the invoice names the subscription, which only the completion teaches.
    first = {
        "id": "in_test_first",
        "object": "invoice",
        "amount_paid": 1000,
        "currency": "eur",
        "customer": "cus_test_one",
        "subscription": "sub_test_one",
        "customer_email": "anna@example.org",
        "customer_name": "Anna Novak",
    }
    early = make_event("invoice.paid", first)
    assert send_event(early).json == {"received": "pending"}
    with stripe_app.app_context():
        kept = db.session.get(PendingEvent, early["id"]).data
    assert "anna@example.org" not in kept and "Anna" not in kept  # only what is needed

    send_event(make_event("checkout.session.completed", monthly_session(*monthly)))
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.PAID
    assert gift.amount_received == 1000
    assert payments(stripe_app) == [("in_test_first", 1000)]
    assert events(stripe_app)[early["id"]] == "later: payment already counted"
    assert pending(stripe_app) == []


def test_a_kept_month_and_its_refund_both_follow_the_gift(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str]
) -> None:
    # A second month paid and refunded, both before the first completion reaches us.
    second = {
        "id": "in_second",
        "amount_paid": 1000,
        "currency": "eur",
        "subscription": "sub_test_one",
    }
    refund = charge(
        400, False, id="ch_second", amount=1000, payment_intent="pi_2", invoice="in_second"
    )
    assert send_event(make_event("charge.refunded", refund)).json == {"received": "pending"}
    assert send_event(make_event("invoice.paid", second)).json == {"received": "pending"}
    send_event(make_event("checkout.session.completed", monthly_session(*monthly)))
    gift = donation(stripe_app)
    assert (gift.amount_received, gift.amount_refunded) == (2000, 400)
    assert pending(stripe_app) == []


@pytest.mark.parametrize("teacher", ["completion", "first month"])
def test_an_end_heard_before_its_gift_is_known_still_ends_the_gift(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str], teacher: str
) -> None:
    # The end arrives first, naming only its subscription; then the event that tells the
    # gift that subscription. The gift must not stay "active" on the dashboard.
    assert end_subscription(send_event) == {"received": "pending"}
    assert pending(stripe_app) != []
    if teacher == "completion":
        send_event(make_event("checkout.session.completed", monthly_session(*monthly)))
    else:
        send_event(make_event("invoice.paid", invoice(monthly[0], "in_test_first")))
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_received) == (DonationStatus.ENDED, 1000)
    assert gift.ended_at is not None
    assert pending(stripe_app) == []
    assert "later: ended" in events(stripe_app).values()


def test_an_end_of_another_product_s_subscription_touches_no_gift(
    stripe_app: Flask, send_event: Callable, monthly: tuple[str, str]
) -> None:
    other = {"id": "sub_shop", "object": "subscription", "status": "canceled"}
    assert send_event(make_event("customer.subscription.deleted", other)).json == {
        "received": "pending"
    }
    send_event(make_event("checkout.session.completed", monthly_session(*monthly)))
    gift = donation(stripe_app)
    assert (gift.status, gift.ended_at) == (DonationStatus.PAID, None)
    assert len(pending(stripe_app)) == 1


def test_refunds_from_another_product_on_the_account_are_acknowledged_and_touch_nothing(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    stranger = charge(5000, True, id="ch_shop", payment_intent="pi_shop", customer="cus_shop")
    assert send_event(make_event("charge.refunded", stranger)).status_code == 200
    nothing_to_go_on = charge(300, True, id="ch_bare", payment_intent=None)
    assert send_event(make_event("charge.refunded", nothing_to_go_on)).json == {
        "received": "unmatched"
    }
    send_event(make_event("checkout.session.completed", session_object(*one_time)))
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_refunded) == (DonationStatus.PAID, 0)
    assert len(pending(stripe_app)) == 1


def test_an_event_kept_longer_than_anyone_could_teach_its_gift_is_forgotten(
    stripe_app: Flask, send_event: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    with time_machine.travel(datetime.now(UTC) - timedelta(days=91)):
        old = make_event("charge.refunded", charge(100, True, id="ch_old", payment_intent="pi_x"))
        send_event(old)
    fresh = make_event("charge.refunded", charge(100, True, id="ch_new", payment_intent="pi_y"))
    with caplog.at_level(logging.WARNING):
        send_event(fresh)
    assert pending(stripe_app) == [fresh["id"]]
    assert old["id"] in caplog.text


needs_postgres = pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="SQLite lets one writer at a time in, so these two events cannot overlap there",
)


@needs_postgres
def test_a_refund_whose_gift_becomes_known_while_it_is_being_kept_is_applied(
    stripe_app: Flask, stripe_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, session_id = start(stripe_client, ONE_TIME)
    completed = make_event("checkout.session.completed", session_object(reference, session_id))
    looked = ledger._charge_donation

    answers: list[Any] = []

    def completion_lands_meanwhile(obj: dict[str, Any], *, lock: bool = True) -> Any:
        found = looked(obj, lock=lock)
        if lock and found is None:
            # Between this look and the keeping, the completion commits from another worker.
            answers.extend(at_once([lambda: post_event(stripe_app.test_client(), completed)]))
        return found

    monkeypatch.setattr(ledger, "_charge_donation", completion_lands_meanwhile)
    refund = make_event("charge.refunded", charge(2500, True))
    assert post_event(stripe_client, refund).json == {"received": "refunded"}
    assert [answer.json for answer in answers] == [{"received": "paid"}]
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_refunded) == (DonationStatus.REFUNDED, 2500)
    assert pending(stripe_app) == []


def _wait_for_a_session_held_by_the_kept_events_lock(timeout: float = 30) -> None:
    """Until another PostgreSQL session waits for the advisory lock kept events are under.

    Called inside a request, on a connection of its own beside the request's.
    """
    deadline = time.monotonic() + timeout
    with db.engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
                )
            ).scalar()
            connection.rollback()  # a new look: the view is fixed for one transaction
            if waiting:
                return
            time.sleep(0.01)
    raise AssertionError("the completion never waited for the refund being kept")


@needs_postgres
def test_a_completion_waits_for_a_refund_being_kept_and_then_applies_it(
    stripe_app: Flask, stripe_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, session_id = start(stripe_client, ONE_TIME)
    completed = make_event("checkout.session.completed", session_object(reference, session_id))
    keep = ledger._keep_pending
    others: list[threading.Thread] = []
    answers: list[Any] = []

    def completion_arrives_meanwhile(*args: Any) -> str:
        outcome = keep(*args)
        db.session.flush()  # kept, not yet committed
        other = threading.Thread(
            target=lambda: answers.append(post_event(stripe_app.test_client(), completed))
        )
        other.start()
        others.append(other)
        # The completion has reached its look at kept events, and waits for this one.
        _wait_for_a_session_held_by_the_kept_events_lock()
        return outcome

    monkeypatch.setattr(ledger, "_keep_pending", completion_arrives_meanwhile)
    refund = make_event("charge.refunded", charge(2500, True))
    assert post_event(stripe_client, refund).json == {"received": "pending"}
    others[0].join(timeout=30)
    assert not others[0].is_alive()
    assert [answer.json for answer in answers] == [{"received": "paid"}]
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_refunded) == (DonationStatus.REFUNDED, 2500)
    assert pending(stripe_app) == []


# --------------------------------------------------------------------------- currencies


def test_a_payment_in_another_currency_is_kept_but_never_added_to_the_gift(
    stripe_app: Flask,
    send_event: Callable,
    one_time: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    paid_in_dollars = session_object(*one_time, currency="usd", amount_total=2700)
    with caplog.at_level(logging.ERROR):
        response = send_event(make_event("checkout.session.completed", paid_in_dollars))
    assert response.json == {"received": "paid in USD, not counted"}
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.PAID
    assert gift.amount_received == 0  # €25.00 is not 2700 of anything in euros
    with stripe_app.app_context():
        kept = db.session.execute(select(DonationPayment.amount, DonationPayment.currency)).all()
    assert [tuple(row) for row in kept] == [(2700, "USD")]
    assert (
        f"donation {gift.reference}" in caplog.text and "in USD, not the gift's EUR" in caplog.text
    )


def test_a_month_or_a_refund_in_another_currency_is_not_added_to_the_totals(
    stripe_app: Flask,
    send_event: Callable,
    monthly: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reference, session_id = monthly
    send_event(make_event("checkout.session.completed", monthly_session(reference, session_id)))
    in_pounds = invoice(reference, "in_test_second", 900, currency="gbp")
    assert send_event(make_event("invoice.paid", in_pounds)).json == {
        "received": "payment in GBP, not counted"
    }
    month = {"amount": 1000, "customer": "cus_test_one"}
    send_event(make_event("charge.refunded", charge(1000, True, id="ch_eur", **month)))
    with caplog.at_level(logging.ERROR):
        refund = charge(900, True, id="ch_gbp", currency="gbp", **month)
        assert send_event(make_event("charge.refunded", refund)).json == {
            "received": "refunded in part in GBP, not counted"
        }
    gift = donation(stripe_app)
    assert (gift.amount_received, gift.amount_refunded) == (1000, 1000)
    assert "refund of charge ch_gbp is in GBP, not the gift's EUR" in caplog.text


# --------------------------------------------------------------------------- old sessions


def _retry_with_a_new_session(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> tuple[str, str, str]:
    """A gift whose first session Stripe has forgotten: a retry made a second one."""
    reference, first = start(stripe_client, ONE_TIME)
    fake_stripe.forget_keys()
    page = stripe_client.get(f"/donate/cancelled?ref={reference}")
    retry = stripe_client.post(
        f"/donate/retry/{reference}", data={"csrf_token": csrf_token(page.text)}
    )
    second = retry.headers["Location"].rsplit("/", 1)[1]
    assert second != first
    return reference, first, second


@pytest.mark.parametrize(
    ("kind", "ended"),
    [
        ("checkout.session.expired", DonationStatus.ABANDONED),
        ("checkout.session.async_payment_failed", DonationStatus.FAILED),
    ],
)
def test_the_end_of_an_old_session_does_not_end_the_gift(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    fake_stripe: FakeStripe,
    send_event: Callable,
    kind: str,
    ended: DonationStatus,
) -> None:
    reference, first, second = _retry_with_a_new_session(stripe_app, stripe_client, fake_stripe)
    old = session_object(reference, first, status="expired", payment_status="unpaid")
    assert send_event(make_event(kind, old)).json == {"received": "ignored: old session"}
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.OPEN  # the donor is paying on the new session
    assert gift.stripe_session_id == second
    page = stripe_client.get(f"/donate/thanks?session_id={second}")
    assert "being processed" in page.text

    # The new session's own end still counts.
    new = session_object(reference, second, status="expired", payment_status="unpaid")
    assert send_event(make_event(kind, new)).status_code == 200
    assert donation(stripe_app).status == ended


def test_a_payment_on_an_old_session_still_counts(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe, send_event: Callable
) -> None:
    reference, first, _ = _retry_with_a_new_session(stripe_app, stripe_client, fake_stripe)
    assert send_event(
        make_event("checkout.session.completed", session_object(reference, first))
    ).json == {"received": "paid"}
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_received) == (DonationStatus.PAID, 2500)
    # The donor comes back from the session they paid on, and is thanked.
    page = stripe_client.get(f"/donate/thanks?session_id={first}")
    assert "Thank you for your gift" in page.text


def test_the_donor_is_thanked_on_an_old_session_before_its_webhook_arrives(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # Stripe sends the donor back at once; the webhook usually comes a moment later.
    _, first, _ = _retry_with_a_new_session(stripe_app, stripe_client, fake_stripe)
    page = stripe_client.get(f"/donate/thanks?session_id={first}")
    assert page.status_code == 200
    assert "being processed" in page.text


@pytest.mark.parametrize("with_reference", [False, True], ids=["bare-charge", "our-metadata"])
def test_refunding_one_of_two_payments_on_one_gift_refunds_that_payment_only(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    fake_stripe: FakeStripe,
    send_event: Callable,
    with_reference: bool,
) -> None:
    # The donor paid on both the old page and the new one; staff refund the second charge.
    reference, first, second = _retry_with_a_new_session(stripe_app, stripe_client, fake_stripe)
    for session_id, intent in ((first, "pi_first"), (second, "pi_second")):
        paid = session_object(reference, session_id, payment_intent=intent)
        assert send_event(make_event("checkout.session.completed", paid)).json == {
            "received": "paid"
        }
    metadata = {"donation_reference": reference} if with_reference else {}
    refund = charge(2500, True, id="ch_second", payment_intent="pi_second", metadata=metadata)
    assert send_event(make_event("charge.refunded", refund)).json == {
        "received": "refunded in part"
    }
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_received, gift.amount_refunded) == (
        DonationStatus.PAID,
        5000,
        2500,
    )
    # The first charge refunded too: now all of it is back.
    refund = charge(2500, True, id="ch_first", payment_intent="pi_first")
    assert send_event(make_event("charge.refunded", refund)).json == {"received": "refunded"}
    assert donation(stripe_app).status == DonationStatus.REFUNDED


def test_a_refund_heard_before_the_gift_s_other_payment_leaves_it_paid(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe, send_event: Callable
) -> None:
    # Paid on both sessions; the first charge refunded; the first session's own news
    # arrives last (Stripe redelivers a failed event for days).
    reference, first, second = _retry_with_a_new_session(stripe_app, stripe_client, fake_stripe)
    paid = session_object(reference, second, payment_intent="pi_second")
    send_event(make_event("checkout.session.completed", paid))
    refund = charge(
        2500, True, id="ch_first", payment_intent="pi_first",
        metadata={"donation_reference": reference},
    )  # fmt: skip
    assert send_event(make_event("charge.refunded", refund)).json == {"received": "refunded"}
    assert donation(stripe_app).status == DonationStatus.REFUNDED
    late = session_object(reference, first, payment_intent="pi_first")
    send_event(make_event("checkout.session.completed", late))
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_received, gift.amount_refunded) == (
        DonationStatus.PAID,
        5000,
        2500,
    )


def test_a_slow_retry_never_undoes_a_payment_made_meanwhile(
    stripe_app: Flask, stripe_client: FlaskClient, fake_stripe: FakeStripe
) -> None:
    # Two clicks on "Try again": Stripe answers both with one session. The donor pays on
    # the first click's page, and its webhook lands, while Stripe is still answering the
    # second; that answer must not put the paid gift back to waiting for payment.
    fake_stripe.drop_next(path="/v1/checkout/sessions")
    assert post_form(stripe_client, "/donate", ONE_TIME).status_code == 503
    reference = donation(stripe_app).reference

    def paid_elsewhere(session: dict[str, Any]) -> None:
        def deliver() -> None:  # the webhook, in another worker
            event = make_event(
                "checkout.session.completed", session_object(reference, session["id"])
            )
            assert post_event(stripe_app.test_client(), event).json == {"received": "paid"}

        worker = threading.Thread(target=deliver)
        worker.start()
        worker.join()

    fake_stripe.meanwhile = ("/v1/checkout/sessions", paid_elsewhere)
    page = stripe_client.get(f"/donate/cancelled?ref={reference}")
    retry = stripe_client.post(
        f"/donate/retry/{reference}", data={"csrf_token": csrf_token(page.text)}
    )
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_received) == (DonationStatus.PAID, 2500)
    # The donor is shown their gift, not sent to pay again.
    assert retry.status_code == 303
    assert retry.headers["Location"] == f"/donate/thanks?session_id={gift.stripe_session_id}"
    assert "Thank you for your gift" in stripe_client.get(retry.headers["Location"]).text


# --------------------------------------------------------------------------- each path alone


def test_the_first_invoice_alone_marks_a_monthly_gift_paid(
    stripe_app: Flask,
    stripe_client: FlaskClient,
    send_event: Callable,
    monthly: tuple[str, str],
) -> None:
    # The completion may be late or lost: the first month's invoice is enough.
    reference, session_id = monthly
    first = invoice(reference, "in_test_first", billing_reason="subscription_create")
    assert send_event(make_event("invoice.paid", first)).json == {"received": "payment recorded"}
    gift = donation(stripe_app)
    assert gift.status == DonationStatus.PAID
    assert gift.paid_at is not None
    assert gift.amount_received == 1000
    page = stripe_client.get(f"/donate/thanks?session_id={session_id}")
    assert "Thank you for your gift" in page.text


def test_a_one_time_refund_is_matched_by_the_reference_its_charge_carries(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str]
) -> None:
    # Stripe copies the payment intent's metadata onto its charge: the reference alone finds
    # the gift, even before (or without) the completion that teaches the payment intent.
    reference, _ = one_time
    metadata = {"donation_reference": reference, "frequency": "one_time"}
    refund = charge(2500, True, payment_intent="pi_not_yet_known", metadata=metadata)
    assert send_event(make_event("charge.refunded", refund)).json == {"received": "refunded"}
    gift = donation(stripe_app)
    assert (gift.status, gift.amount_refunded) == (DonationStatus.REFUNDED, 2500)
    assert pending(stripe_app) == []


# --------------------------------------------------------------------------- locks


@pytest.mark.parametrize("matched_by", ["customer", "invoice"])
def test_refunds_of_several_months_at_once_add_up(
    stripe_app: Flask, stripe_client: FlaskClient, send_event: Callable, matched_by: str
) -> None:
    # Each refund sums the gift's charges: without the lock on the gift, two at once each
    # see only their own charge and the later write loses the other's amount.
    reference, session_id = start(stripe_client, MONTHLY)
    send_event(make_event("checkout.session.completed", monthly_session(reference, session_id)))
    months, rounds = 6, 3
    for n in range(months * rounds):
        send_event(make_event("invoice.paid", invoice(reference, f"in_month_{n}")))
    server = LiveServer(stripe_app).start()
    expected = 0
    try:
        for round_ in range(rounds):
            bodies = []
            for n in range(round_ * months, (round_ + 1) * months):
                amount = 100 + n
                expected += amount
                link = {"customer": "cus_test_one"}
                if matched_by == "invoice":
                    link = {"customer": None, "invoice": f"in_month_{n}"}
                refund = charge(
                    amount, False, id=f"ch_month_{n}", amount=1000, payment_intent=None, **link
                )
                bodies.append(json.dumps(make_event("charge.refunded", refund)).encode())
            assert _deliver_at_once(server, bodies) == [200] * months
            assert donation(stripe_app).amount_refunded == expected
    finally:
        server.stop()


def test_refunds_kept_before_currencies_were_recorded_still_count(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'refunds.db'}"
    app = create_app(base_config(url, tmp_path))
    with app.app_context():
        upgrade(revision="0005")
        db.session.execute(
            text(
                "INSERT INTO donation (reference, amount, fee_covered, currency, frequency,"
                " status, livemode, anonymous, amount_received, amount_refunded, created_at,"
                " updated_at) VALUES ('r', 1000, 0, 'GBP', 'monthly', 'paid', 0, 0, 2000, 300,"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
        db.session.execute(
            text(
                "INSERT INTO charge_refund (charge_id, donation_id, amount_refunded, updated_at)"
                " VALUES ('ch_1', 1, 300, '2026-01-01 00:00:00')"
            )
        )
        db.session.commit()
        upgrade()
        assert db.session.get(ChargeRefund, "ch_1").currency == "GBP"
        db.session.remove()
        db.engine.dispose()


def test_the_dashboard_shows_money_left_out_of_the_totals(
    stripe_app: Flask, send_event: Callable, one_time: tuple[str, str], admin_client: FlaskClient
) -> None:
    assert "Needs a look" not in admin_client.get("/admin/").text
    early = charge(500, False, id="ch_early", payment_intent="pi_unknown", customer="cus_unknown")
    send_event(make_event("charge.refunded", early))
    paid_in_dollars = session_object(*one_time, currency="usd", amount_total=2700)
    send_event(make_event("checkout.session.completed", paid_in_dollars))

    html = admin_client.get("/admin/").text
    assert "Needs a look" in html
    assert "<strong>1 Stripe event</strong>" in html
    assert f"Payment of $27.00 on gift <code>{one_time[0]}</code>" in html

    # The same, told by `flask check` for a cron job to mail.
    told = stripe_app.test_cli_runner().invoke(args=["check"])
    assert told.exit_code == 1
    lines = told.output.splitlines()
    assert lines[0].startswith(
        "- 1 Stripe event (refunds, monthly payments or ends of monthly gifts) waits for the "
        "gift it belongs to, the oldest since 20"
    )
    assert lines[1] == (
        f"- Payment of $27.00 on gift {one_time[0]} (test) is in a currency other than the "
        "gift's, so left out of its totals: check it in the Stripe Dashboard."
    )
    assert lines[2] == "The admin overview (/admin/) shows the same."
