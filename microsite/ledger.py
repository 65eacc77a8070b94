"""Stripe's events, once verified, applied to the database exactly once: the truth about
what was paid, refunded and ended.

Each event id is recorded once, in the same transaction as its effect; states only move
forward; a payment or refund that arrives before its gift is known is kept until an event
names the gift. payments.py verifies the signature before anything here sees an event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import case, delete, func, or_, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from .models import (
    STATUS_RANK,
    ChargeRefund,
    Donation,
    DonationPayment,
    DonationStatus,
    Frequency,
    PendingEvent,
    WebhookEvent,
    db,
    utcnow,
)
from .money import STRIPE_MAX_MINOR

# Where the donation's reference travels in every Stripe object that carries metadata.
REFERENCE_KEY = "donation_reference"


class WebhookBusy(Exception):
    """The database stayed busy; Stripe will deliver the event again."""


def apply_event(event: dict[str, Any]) -> str:
    """Apply a verified event exactly once. Returns what was done, for the log."""
    for attempt in range(5):
        try:
            return _apply_once(event)
        except IntegrityError:
            db.session.rollback()
            if db.session.get(WebhookEvent, event["id"]) is not None:
                return "duplicate"
            # Another event recorded the same payment at the same moment: apply again,
            # now that its row is there to be seen.
        except _GiftAppeared:
            # The gift became known while this event was about to be kept for later.
            db.session.rollback()
        except OperationalError:
            # SQLite: another writer held the database past the busy timeout.
            # PostgreSQL: a deadlock between two events, broken by the server.
            db.session.rollback()
            if db.session.get(WebhookEvent, event["id"]) is not None:
                return "duplicate"
            time.sleep(0.05 * (attempt + 1))
    raise WebhookBusy(event["id"])


def live_mode() -> bool:
    """Whether the configured Stripe key takes real money."""
    return current_app.extensions.get("stripe_mode") == "live"


def _apply_once(event: dict[str, Any]) -> str:
    event_id, kind = event["id"], event["type"]
    if db.session.get(WebhookEvent, event_id) is not None:
        return "duplicate"
    record = WebhookEvent(id=event_id, type=kind[:100], livemode=bool(event.get("livemode")))
    db.session.add(record)
    # Claim the id first: a concurrent delivery of the same event stops here.
    db.session.flush()
    obj = event["data"]["object"]
    if record.livemode != live_mode():
        current_app.logger.warning(
            "stripe event %s (%s) ignored: livemode=%s but the configured key is in %s mode",
            event_id,
            kind,
            record.livemode,
            "live" if live_mode() else "test",
        )
        outcome = "ignored: livemode"
    elif kind not in HANDLERS:
        outcome = "ignored"
    else:
        outcome, donation = HANDLERS[kind](obj)
        if donation is not None and kind in TEACHING:
            _replay_pending(donation)
        elif outcome == UNMATCHED and kind in KEPT_UNTIL_MATCHED:
            outcome = _keep_pending(event_id, kind, obj)
    record.outcome = outcome[:40]
    db.session.commit()
    current_app.logger.info("stripe event %s (%s): %s", event_id, kind, outcome)
    return outcome


UNMATCHED = "unmatched"

# What a handler did, and the gift it did it to (None when no gift was found).
Applied = tuple[str, Donation | None]


# Stripe's ids are a few dozen characters; the columns that keep them take 255.
MAX_ID_LENGTH = 255


def stripe_text(value: Any) -> bool:
    """Whether a field holds text as Stripe's ids, types and our references are: printable
    ASCII that fits a column. A NUL, which PostgreSQL cannot store, a lone surrogate, which
    no database can, or a control character is none of Stripe's."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_LENGTH
        and value.isascii()
        and value.isprintable()
    )


def _id(value: Any) -> str | None:
    """A Stripe id whether the field holds the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if stripe_text(value) else None


def _amount(value: Any) -> int | None:
    """An amount in minor units as Stripe sends one: a whole number it could charge."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= STRIPE_MAX_MINOR:
        return value
    return None


def _currency(value: Any, default: str) -> str | None:
    """An ISO 4217 code in upper case, the default when none is given; None when the field
    holds something that is not a currency code."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha():
        return value.upper()
    return None


def _metadata_reference(*metadatas: Any) -> str | None:
    for metadata in metadatas:
        if isinstance(metadata, dict) and stripe_text(metadata.get(REFERENCE_KEY)):
            return metadata[REFERENCE_KEY]
    return None


def _find_donation(
    reference: str | None = None,
    *,
    session: str | None = None,
    payment_intent: str | None = None,
    subscription: str | None = None,
    invoice: str | None = None,
    lock: bool = True,
) -> Donation | None:
    """The gift an event speaks of, locked for this transaction unless told otherwise."""
    conditions = []
    if reference:
        conditions.append(Donation.reference == reference)
    if session:
        conditions.append(Donation.stripe_session_id == session)
    if payment_intent:
        conditions.append(Donation.stripe_payment_intent == payment_intent)
    # A payment is recorded under its payment intent (one-time) or invoice (monthly): a
    # gift paid on two sessions (a retry made a second) knows the second's intent here.
    for ref in (payment_intent, invoice):
        if ref:
            conditions.append(
                Donation.id.in_(
                    select(DonationPayment.donation_id).where(DonationPayment.stripe_ref == ref)
                )
            )
    if subscription:
        conditions.append(Donation.stripe_subscription == subscription)
    for condition in conditions:
        query = select(Donation).where(condition)
        donation = db.session.scalar(query.with_for_update() if lock else query)
        if donation is not None:
            return donation
    return None


def _monthly_gift_of_customer(customer: str | None, *, lock: bool = True) -> Donation | None:
    """A monthly gift by its Stripe customer: newer API versions put neither invoice nor
    our metadata on a subscription's charges, and Checkout makes a customer per gift."""
    if not customer:
        return None
    query = (
        select(Donation)
        .where(Donation.stripe_customer == customer, Donation.frequency == Frequency.MONTHLY)
        .order_by(Donation.id.desc())
        .limit(1)
    )
    return db.session.scalar(query.with_for_update() if lock else query)


def _record_payment(donation: Donation, ref: str | None, amount: Any, currency: Any) -> str:
    """Add one payment to a gift's running total, unless it is already counted.

    "counted", "known" (counted before), "none" (nothing to count), or the payment's
    currency when it is not the gift's: kept as a payment, but never added to the total.
    """
    amount, code = _amount(amount), _currency(currency, donation.currency)
    if not ref or not amount or code is None:
        return "none"
    known = select(DonationPayment.id).where(DonationPayment.stripe_ref == ref)
    if db.session.scalar(known) is not None:
        return "known"
    db.session.add(DonationPayment(donation=donation, stripe_ref=ref, amount=amount, currency=code))
    # stripe_ref is unique: if another event is recording this payment right now, stop here.
    db.session.flush()
    if code != donation.currency:
        current_app.logger.error(
            "donation %s: payment %s of %s is in %s, not the gift's %s: kept, not counted",
            donation.reference,
            ref,
            amount,
            code,
            donation.currency,
        )
        return code
    donation.amount_received += amount
    if (
        donation.status == DonationStatus.REFUNDED
        and donation.amount_refunded < donation.amount_received
    ):
        # A gift paid twice (on two sessions) whose refund of one payment arrived before
        # the other payment's news: it has kept money, so it is paid after all. The one
        # step back the ranks allow, as it is the amounts that say "refunded".
        donation.status = DonationStatus.PAID
    return "counted"


def _mark_paid(donation: Donation) -> None:
    donation.advance(DonationStatus.PAID)
    donation.paid_at = donation.paid_at or utcnow()
    if donation.ended_at is not None:
        # The subscription's end was heard before this payment: paid, and since ended.
        donation.advance(DonationStatus.ENDED)


# --------------------------------------------------------------------------- sessions


def _session_donation(session: dict[str, Any]) -> Donation | None:
    return _find_donation(
        _metadata_reference(session.get("metadata")) or _id(session.get("client_reference_id")),
        session=_id(session.get("id")),
    )


def _follow_session(donation: Donation, session: dict[str, Any], *, current: bool) -> None:
    """Learn the ids a session carries. current: the donor paid, or began to, on it."""
    session_id = _id(session.get("id"))
    if session_id and (current or donation.stripe_session_id is None):
        donation.stripe_session_id = session_id
    donation.stripe_payment_intent = donation.stripe_payment_intent or _id(
        session.get("payment_intent")
    )
    donation.stripe_subscription = donation.stripe_subscription or _id(session.get("subscription"))
    donation.stripe_customer = donation.stripe_customer or _id(session.get("customer"))


def _old_session(donation: Donation, session: dict[str, Any]) -> bool:
    """A session the gift has moved on from: a retry made a newer one for the donor."""
    session_id = _id(session.get("id"))
    return bool(session_id and donation.stripe_session_id not in (None, session_id))


def _session_paid(session: dict[str, Any], donation: Donation) -> str:
    if donation.frequency == Frequency.MONTHLY:
        # The first month's invoice: the same ref invoice.paid uses, so it counts once.
        ref = _id(session.get("invoice"))
    else:
        ref = _id(session.get("payment_intent")) or _id(session.get("id"))
    counted = _record_payment(donation, ref, session.get("amount_total"), session.get("currency"))
    _mark_paid(donation)
    return "paid" if counted in ("counted", "known", "none") else f"paid in {counted}, not counted"


def on_session_completed(session: dict[str, Any]) -> Applied:
    donation = _session_donation(session)
    if donation is None:
        return UNMATCHED, None
    # Paid (or begun to be paid) on this session, even an older one: it is the gift's now,
    # so the thank-you page the donor returns to finds it.
    _follow_session(donation, session, current=True)
    if session.get("payment_status") in ("paid", "no_payment_required"):
        return _session_paid(session, donation), donation
    # A delayed method (a bank debit): the money arrives, or not, in a later event.
    donation.advance(DonationStatus.PROCESSING)
    return "processing", donation


def on_async_payment_succeeded(session: dict[str, Any]) -> Applied:
    donation = _session_donation(session)
    if donation is None:
        return UNMATCHED, None
    _follow_session(donation, session, current=True)
    return _session_paid(session, donation), donation


def _session_ended(session: dict[str, Any], status: DonationStatus, outcome: str) -> Applied:
    """A session that ended without the money: the gift moves to status, unless the donor
    is paying on a newer session right now (the old one's end is not the gift's)."""
    donation = _session_donation(session)
    if donation is None:
        return UNMATCHED, None
    if _old_session(donation, session):
        return "ignored: old session", None
    _follow_session(donation, session, current=False)
    if donation.advance(status) and status == DonationStatus.FAILED:
        donation.failure_reason = "The payment did not go through."
    return outcome, donation


def on_async_payment_failed(session: dict[str, Any]) -> Applied:
    return _session_ended(session, DonationStatus.FAILED, "failed")


def on_session_expired(session: dict[str, Any]) -> Applied:
    return _session_ended(session, DonationStatus.ABANDONED, "abandoned")


# --------------------------------------------------------------------------- money events


def _charge_donation(charge: dict[str, Any], *, lock: bool = True) -> Donation | None:
    return _find_donation(
        _metadata_reference(charge.get("metadata")),
        payment_intent=_id(charge.get("payment_intent")),
        invoice=_id(charge.get("invoice")),
        lock=lock,
    ) or _monthly_gift_of_customer(_id(charge.get("customer")), lock=lock)


def on_charge_refunded(charge: dict[str, Any]) -> Applied:
    charge_id, refunded = _id(charge.get("id")), _amount(charge.get("amount_refunded"))
    if charge_id is None or refunded is None:
        return "ignored", None
    donation = _charge_donation(charge)
    if donation is None:
        return UNMATCHED, None
    code = _currency(charge.get("currency"), donation.currency)
    if code is None:
        return "ignored: no currency", None
    # The charge's amount_refunded is its running total: keep the largest seen per charge,
    # and the gift's refunded amount is their sum, in whatever order the events arrive.
    record = db.session.get(ChargeRefund, charge_id)
    if record is None:
        record = ChargeRefund(
            charge_id=charge_id, donation_id=donation.id, amount_refunded=refunded, currency=code
        )
        db.session.add(record)
    else:
        record.amount_refunded = max(record.amount_refunded, refunded)
    db.session.flush()
    donation.amount_refunded = (
        db.session.scalar(
            select(func.sum(ChargeRefund.amount_refunded)).where(
                ChargeRefund.donation_id == donation.id,
                ChargeRefund.currency == donation.currency,
            )
        )
        or 0
    )
    if record.currency != donation.currency:
        current_app.logger.error(
            "donation %s: refund of charge %s is in %s, not the gift's %s: kept, not counted",
            donation.reference,
            charge_id,
            record.currency,
            donation.currency,
        )
    # Refunded in full only when all that was received is back: a gift paid twice (on two
    # sessions) and refunded once has kept one payment.
    returned_all = donation.amount_refunded >= donation.amount_received
    if donation.frequency == Frequency.ONE_TIME and charge.get("refunded") is True and returned_all:
        donation.advance(DonationStatus.REFUNDED)
        outcome = "refunded"
    else:
        # A monthly gift goes on when one month is refunded.
        outcome = "refunded in part"
    if record.currency != donation.currency:
        outcome += f" in {record.currency}, not counted"
    return outcome, donation


def _invoice_subscription(invoice: dict[str, Any]) -> tuple[str | None, Any]:
    """The subscription id and its metadata, where older and newer API versions put them."""
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    if not isinstance(details, dict):
        details = invoice.get("subscription_details")
    if not isinstance(details, dict):
        details = {}
    subscription = _id(invoice.get("subscription")) or _id(details.get("subscription"))
    return subscription, details.get("metadata")


def _invoice_reference(invoice: dict[str, Any]) -> str | None:
    _, metadata = _invoice_subscription(invoice)
    lines = invoice.get("lines")
    data = lines.get("data") if isinstance(lines, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    line_metadata = first.get("metadata") if isinstance(first, dict) else None
    return _metadata_reference(metadata, line_metadata, invoice.get("metadata"))


def _invoice_donation(invoice: dict[str, Any], *, lock: bool = True) -> Donation | None:
    subscription, _ = _invoice_subscription(invoice)
    return _find_donation(_invoice_reference(invoice), subscription=subscription, lock=lock)


def on_invoice_paid(invoice: dict[str, Any]) -> Applied:
    donation = _invoice_donation(invoice)
    if donation is None:
        return UNMATCHED, None
    subscription, _ = _invoice_subscription(invoice)
    donation.stripe_subscription = donation.stripe_subscription or subscription
    donation.stripe_customer = donation.stripe_customer or _id(invoice.get("customer"))
    counted = _record_payment(
        donation, _id(invoice.get("id")), invoice.get("amount_paid"), invoice.get("currency")
    )
    if counted == "none":
        # An invoice of nothing (a free month, were one ever given) pays for nothing:
        # it must not turn a gift still waiting for its money into a paid one.
        return "nothing paid", donation
    _mark_paid(donation)
    outcomes = {"counted": "payment recorded", "known": "payment already counted"}
    return outcomes.get(counted, f"payment in {counted}, not counted"), donation


def _subscription_donation(subscription: dict[str, Any], *, lock: bool = True) -> Donation | None:
    return _find_donation(
        _metadata_reference(subscription.get("metadata")),
        subscription=_id(subscription.get("id")),
        lock=lock,
    )


def on_subscription_deleted(subscription: dict[str, Any]) -> Applied:
    donation = _subscription_donation(subscription)
    if donation is None:
        return UNMATCHED, None
    donation.ended_at = donation.ended_at or utcnow()
    if STATUS_RANK[donation.status] < STATUS_RANK[DonationStatus.PAID]:
        # No month was ever paid (a bank debit that failed, say): the gift never started,
        # and its donor must not be thanked for money that never came. A gift once paid
        # ends as ended, even if what it was paid in was kept out of its total.
        if donation.advance(DonationStatus.FAILED):
            donation.failure_reason = "The monthly gift ended before its first payment."
        return "ended before any payment", donation
    donation.advance(DonationStatus.ENDED)
    return "ended", donation


HANDLERS: dict[str, Callable[[dict[str, Any]], Applied]] = {
    "checkout.session.completed": on_session_completed,
    "checkout.session.async_payment_succeeded": on_async_payment_succeeded,
    "checkout.session.async_payment_failed": on_async_payment_failed,
    "checkout.session.expired": on_session_expired,
    "charge.refunded": on_charge_refunded,
    "invoice.paid": on_invoice_paid,
    "customer.subscription.deleted": on_subscription_deleted,
}


# --------------------------------------------------------------------------- events kept for later
#
# A refund or a month's payment can reach us before the event that tells us which gift it
# belongs to: a monthly gift's charges carry only the customer, learned from the session's
# completion or the first invoice. Such an event is kept, with the ids that could later tie it
# to a gift, and applied in the same transaction as the event that teaches a gift one of them.
# It is acknowledged with 200 meanwhile: a charge from another product on the same Stripe
# account must not make Stripe retry for days and then disable the endpoint.

# Events kept when no gift is known for them yet: money, and the end of a monthly gift
# (an end heard before its gift's subscription would otherwise leave the gift "active").
KEPT_UNTIL_MATCHED = frozenset({"charge.refunded", "invoice.paid", "customer.subscription.deleted"})
# How each kept kind finds its gift.
FINDERS: dict[str, Callable[..., Donation | None]] = {
    "charge.refunded": _charge_donation,
    "invoice.paid": _invoice_donation,
    "customer.subscription.deleted": _subscription_donation,
}
# Events that can teach a gift the ids a kept event waits for.
TEACHING = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "invoice.paid",
    }
)
# Long after any event that could teach its gift: Stripe stops resending after three days.
PENDING_KEPT_FOR = timedelta(days=90)
# PostgreSQL advisory lock taken while kept events are stored or looked for, so that an event
# being kept and the event teaching its gift cannot pass each other unseen.
PENDING_LOCK = 0x52454E41


class _GiftAppeared(Exception):
    """While an event was about to be kept, another one made its gift known: apply again."""


def _lock_pending() -> None:
    # SQLite lets one writer at a time in already; every event writes its id first.
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PENDING_LOCK})


def _waiting_for(kind: str, obj: dict[str, Any]) -> dict[str, str | None]:
    """The ids that could later tie a kept event to its gift."""
    if kind == "invoice.paid":
        subscription, _ = _invoice_subscription(obj)
        return {"subscription": subscription}
    if kind == "customer.subscription.deleted":
        # Its customer is not enough: one donor may give monthly twice.
        return {"subscription": _id(obj.get("id"))}
    return {
        "payment_intent": _id(obj.get("payment_intent")),
        "customer": _id(obj.get("customer")),
        "invoice": _id(obj.get("invoice")),
    }


def _slim(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Only what the handler reads: no names, emails or addresses are kept."""
    if kind == "invoice.paid":
        subscription, _ = _invoice_subscription(obj)
        fields = {"amount_paid": obj.get("amount_paid"), "subscription": subscription}
        reference = _invoice_reference(obj)
    elif kind == "customer.subscription.deleted":
        fields = {}
        reference = _metadata_reference(obj.get("metadata"))
    else:
        fields = {
            "amount_refunded": obj.get("amount_refunded"),
            "refunded": obj.get("refunded"),
            "payment_intent": _id(obj.get("payment_intent")),
            "invoice": _id(obj.get("invoice")),
        }
        reference = _metadata_reference(obj.get("metadata"))
    return {
        "id": _id(obj.get("id")),
        "currency": obj.get("currency"),
        "customer": _id(obj.get("customer")),
        "metadata": {REFERENCE_KEY: reference} if reference else {},
        **fields,
    }


def _keep_pending(event_id: str, kind: str, obj: dict[str, Any]) -> str:
    ids = _waiting_for(kind, obj)
    if not any(ids.values()):
        return UNMATCHED  # nothing could ever tie it to a gift
    _lock_pending()
    # Looked for again under the lock: an event teaching the gift may have just committed.
    if FINDERS[kind](obj, lock=False) is not None:
        raise _GiftAppeared(event_id)
    db.session.add(
        PendingEvent(event_id=event_id, type=kind, data=json.dumps(_slim(kind, obj)), **ids)
    )
    too_old = PendingEvent.received_at < utcnow() - PENDING_KEPT_FOR
    expired = db.session.scalars(select(PendingEvent.event_id).where(too_old)).all()
    if expired:
        db.session.execute(delete(PendingEvent).where(PendingEvent.event_id.in_(expired)))
        current_app.logger.warning(
            "stripe events kept %d days without a gift of ours, forgotten: %s",
            PENDING_KEPT_FOR.days,
            ", ".join(expired),
        )
    current_app.logger.info(
        "stripe event %s (%s): no gift known for it yet; kept until one is", event_id, kind
    )
    return "pending"


def _replay_pending(donation: Donation) -> None:
    """Apply the kept events that the gift's ids now tie to it, in this transaction."""
    _lock_pending()
    for _ in range(5):  # a month's payment can teach the customer a kept refund waits for
        conditions = [
            PendingEvent.invoice.in_(
                select(DonationPayment.stripe_ref).where(DonationPayment.donation_id == donation.id)
            )
        ]
        if donation.stripe_payment_intent:
            conditions.append(PendingEvent.payment_intent == donation.stripe_payment_intent)
        if donation.stripe_subscription:
            conditions.append(PendingEvent.subscription == donation.stripe_subscription)
        if donation.stripe_customer and donation.frequency == Frequency.MONTHLY:
            conditions.append(PendingEvent.customer == donation.stripe_customer)
        kept = db.session.scalars(
            select(PendingEvent)
            .where(or_(*conditions))
            .order_by(
                case((PendingEvent.type == "invoice.paid", 0), else_=1),
                PendingEvent.received_at,
                PendingEvent.event_id,
            )
        ).all()
        applied = False
        for pending in kept:
            outcome, _ = HANDLERS[pending.type](json.loads(pending.data))
            if outcome == UNMATCHED:
                continue
            applied = True
            db.session.delete(pending)
            original = db.session.get(WebhookEvent, pending.event_id)
            if original is not None:
                original.outcome = f"later: {outcome}"[:40]
            current_app.logger.info(
                "stripe event %s (%s) kept until now: %s",
                pending.event_id,
                pending.type,
                outcome,
            )
        if not applied:
            return
