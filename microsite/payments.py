"""The only module that imports stripe: start Checkout, verify and apply webhook events."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, NoReturn

import stripe
from flask import Flask, current_app
from sqlalchemy import case, delete, func, or_, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from .models import (
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

__all__ = [
    "BadWebhook",
    "CheckoutUnavailable",
    "DonationInput",
    "LiveKeyRefused",
    "StripeSettingsError",
    "WebhookBusy",
    "apply_webhook",
    "card_fee",
    "donation_by_reference",
    "donation_for_session",
    "donation_settings",
    "exponent",
    "format_money",
    "init_app",
    "payments_configured",
    "record_donation",
    "start_checkout",
    "symbol",
    "to_major",
    "to_minor",
]

# Where the donation's reference travels in every Stripe object that carries metadata.
REFERENCE_KEY = "donation_reference"

# How old (or, unlike Stripe's own check, how far in the future) a signature may be.
SIGNATURE_TOLERANCE = 300

SESSION_ID_PREFIXES = ("cs_test_", "cs_live_")

# --------------------------------------------------------------------------- settings


class StripeSettingsError(RuntimeError):
    """The Stripe settings would make the site take money it should not, or none at all."""


class LiveKeyRefused(StripeSettingsError):
    """A live key was given without the operator's explicit permission to take real money."""


def key_mode(key: str) -> str | None:
    """ "test" or "live" for a Stripe secret or restricted key; None when there is no key."""
    if not key:
        return None
    if key.startswith(("sk_test_", "rk_test_")):
        return "test"
    if key.startswith(("sk_live_", "rk_live_")):
        return "live"
    raise StripeSettingsError(
        "STRIPE_SECRET_KEY is not a Stripe secret key. It should start with sk_test_ "
        "(or rk_test_ for a restricted key); you will find it in Stripe's dashboard under "
        "Developers, API keys, with 'Test mode' switched on."
    )


def init_app(app: Flask) -> None:
    """Check the Stripe settings at start and make the client the views use."""
    key = str(app.config["STRIPE_SECRET_KEY"] or "").strip()
    mode = key_mode(key)
    if mode == "live" and not app.config["STRIPE_ALLOW_LIVE"]:
        raise LiveKeyRefused(
            "STRIPE_SECRET_KEY is a live key: donations would take real money. "
            "This site runs in Stripe's test mode unless you decide otherwise. "
            "Use a test key (sk_test_...), or set STRIPE_ALLOW_LIVE=1 to accept real payments."
        )
    app.extensions["stripe_mode"] = mode
    # Read once, so a mistyped amount or currency setting stops the start, not a donor.
    app.extensions["donation_settings"] = _read_donation_settings(app.config)
    if mode is not None:
        retries = int(app.config["STRIPE_MAX_NETWORK_RETRIES"])
        timeout = stripe_timeout(app.config.get("STRIPE_TIMEOUT", DEFAULT_STRIPE_TIMEOUT), retries)
        # Explicitly: the library's own client would wait 80 seconds for each attempt.
        http_client = app.config.get("STRIPE_HTTP_CLIENT")
        if http_client is None:
            http_client = stripe.RequestsClient(timeout=timeout)
        app.extensions["stripe_http_client"] = http_client
        base = str(app.config["STRIPE_API_BASE"] or "").rstrip("/")
        app.extensions["stripe"] = stripe.StripeClient(
            key,
            base_addresses={"api": base} if base else None,
            http_client=http_client,
            max_network_retries=retries,
        )
        if not app.config["STRIPE_WEBHOOK_SECRET"]:
            app.logger.warning(
                "STRIPE_WEBHOOK_SECRET is not set: no gift can be confirmed as paid "
                "until Stripe's webhook signing secret is configured"
            )

    @app.context_processor
    def payment_mode() -> dict[str, str | None]:
        return {"stripe_mode": mode}


# Gunicorn ends a worker that takes longer than 30 seconds (its default --timeout), and the
# donor then sees the proxy's raw error page. Every attempt at a Stripe call, with the pauses
# between attempts, must end before that, so the donor sees our own calm page instead.
STRIPE_TIME_BUDGET = 25.0
DEFAULT_STRIPE_TIMEOUT = 5
# Opening a connection to Stripe takes well under a second when all is well.
STRIPE_CONNECT_TIMEOUT = 2.0


def _retry_pauses(retries: int) -> float:
    """The longest the stripe library sleeps between its attempts, in all."""
    initial, longest = stripe.HTTPClient.INITIAL_DELAY, stripe.HTTPClient.MAX_DELAY
    return sum(max(initial, min(initial * 2**n, longest)) for n in range(retries))


def stripe_timeout(value: Any, retries: int) -> tuple[float, float]:
    """How long one attempt may take to connect and then to be answered, in seconds.

    Refused at start when the attempts together could outlast STRIPE_TIME_BUDGET.
    """
    read = float(_decimal(value, "STRIPE_TIMEOUT"))
    if read <= 0:
        raise StripeSettingsError("STRIPE_TIMEOUT must be more than 0 seconds, like 5")
    if retries < 0:
        raise StripeSettingsError("STRIPE_MAX_NETWORK_RETRIES must be 0 or more")
    connect = min(STRIPE_CONNECT_TIMEOUT, read)
    longest = (retries + 1) * (connect + read) + _retry_pauses(retries)
    if longest > STRIPE_TIME_BUDGET:
        raise StripeSettingsError(
            f"STRIPE_TIMEOUT={value} with STRIPE_MAX_NETWORK_RETRIES={retries} could keep a "
            f"donor waiting {longest:.0f} seconds for Stripe, more than the "
            f"{STRIPE_TIME_BUDGET:.0f} seconds that keep a page inside gunicorn's 30-second "
            "worker timeout. Lower one of them."
        )
    return (connect, read)


def payments_configured() -> bool:
    return "stripe" in current_app.extensions


def _client() -> stripe.StripeClient:
    return current_app.extensions["stripe"]


def _live() -> bool:
    return current_app.extensions.get("stripe_mode") == "live"


# --------------------------------------------------------------------------- money

# ISO 4217 currencies Stripe charges in whole units: 1000 JPY is unit_amount=1000.
# fmt: off
ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
    "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
})
# fmt: on
SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$", "JPY": "¥"}

# Stripe counts these in thousandths (with a last digit of 0); this site counts in
# hundredths, so it would charge ten times too little.
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# Currencies with rules of their own at Stripe, which this site does not follow.
SPECIAL_RULES = {
    "ISK": "Stripe takes ISK in hundredths, but only whole krónur (amounts divisible by 100)",
    "HUF": "Stripe pays out HUF only in whole forints, though it charges in hundredths",
    "TWD": "Stripe pays out TWD only in whole dollars, though it charges in hundredths",
    "UGX": "Stripe has a rule of its own for how UGX amounts are written",
}


def _currency(code: str, name: str) -> str:
    """A configured currency this site charges correctly; StripeSettingsError otherwise."""
    if not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise StripeSettingsError(
            f"{name}: {code!r} is not a three-letter currency code like EUR or GBP"
        )
    if code in THREE_DECIMAL:
        raise StripeSettingsError(
            f"{name}: {code} has three decimal places at Stripe, and this site counts in "
            f"hundredths: every gift would be charged ten times too little. Remove {code}."
        )
    if code in SPECIAL_RULES:
        raise StripeSettingsError(
            f"{name}: {SPECIAL_RULES[code]}; this site does not follow that rule, "
            f"so it cannot take gifts in {code}. Remove {code}."
        )
    return code


# The smallest charge Stripe accepts, in major units, for the currencies it lists.
# A gift below it would only fail at Stripe, so the form asks for at least this much.
# fmt: off
STRIPE_MINIMUMS = {
    "USD": "0.50", "AED": "2.00", "AUD": "0.50", "BGN": "1.00", "BRL": "0.50",
    "CAD": "0.50", "CHF": "0.50", "CZK": "15.00", "DKK": "2.50", "EUR": "0.50",
    "GBP": "0.30", "HKD": "4.00", "INR": "0.50", "JPY": "50",
    "MXN": "10", "MYR": "2", "NOK": "3.00", "NZD": "0.50", "PLN": "2.00",
    "RON": "2.00", "SEK": "3.00", "SGD": "0.50", "THB": "10",
}
# fmt: on


def exponent(currency: str) -> int:
    """How many minor-unit digits Stripe uses for this currency."""
    return 0 if currency.upper() in ZERO_DECIMAL else 2


def to_minor(amount: Decimal, currency: str) -> int:
    """A major-unit amount as integer minor units; the caller has checked its precision."""
    return int(amount.scaleb(exponent(currency)).to_integral_value(rounding=ROUND_CEILING))


def to_major(minor: int, currency: str) -> Decimal:
    """Integer minor units back as a Decimal in major units: 2550 EUR is 25.50."""
    return Decimal(minor).scaleb(-exponent(currency))


def format_money(minor: int, currency: str) -> str:
    """Minor units as people read them: €25.00, £10.50, ¥1,000, CHF 30.00."""
    digits = exponent(currency)
    text = f"{to_major(minor, currency):,.{digits}f}"
    symbol = SYMBOLS.get(currency.upper())
    return f"{symbol}{text}" if symbol else f"{currency.upper()} {text}"


def symbol(currency: str) -> str:
    return SYMBOLS.get(currency.upper(), currency.upper() + " ")


def card_fee(amount: int, currency: str, percent: Decimal, fixed: Decimal) -> int:
    """What to add so that, after a fee of percent plus fixed, the charity receives amount.

    An estimate from the configured fee, rounded up to the next minor unit.
    """
    fixed_minor = fixed.scaleb(exponent(currency))
    total = (Decimal(amount) + fixed_minor) / (1 - percent / 100)
    return int(total.to_integral_value(rounding=ROUND_CEILING)) - amount


@dataclass(frozen=True)
class DonationSettings:
    currencies: tuple[str, ...]
    default_currency: str
    presets: tuple[Decimal, ...]
    minimum: Decimal
    maximum: Decimal
    fee_percent: Decimal
    fee_fixed: Decimal

    def fee(self, amount: int, currency: str) -> int:
        return card_fee(amount, currency, self.fee_percent, self.fee_fixed)

    def minimum_for(self, currency: str) -> Decimal:
        """The configured minimum, raised to Stripe's own smallest charge in this currency."""
        floor = Decimal(STRIPE_MINIMUMS.get(currency.upper(), "0"))
        return max(self.minimum, floor)


def _items(value: str | Iterable[Any]) -> list[str]:
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [part.strip() for part in parts if part.strip()]


def _decimal(value: Any, name: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise StripeSettingsError(f"{name} must be a number, like 10 or 2.50") from exc
    if not number.is_finite():
        raise StripeSettingsError(f"{name} must be a number, like 10 or 2.50, not {value}")
    return number


def donation_settings() -> DonationSettings:
    """The donation form's currencies, presets, limits and fee estimate (read at start)."""
    return current_app.extensions["donation_settings"]


def _read_donation_settings(config: Any) -> DonationSettings:
    codes = [code.upper() for code in _items(config["DONATION_CURRENCIES"])]
    currencies = tuple(_currency(code, "DONATION_CURRENCIES") for code in codes)
    default = _currency(
        str(config["DONATION_DEFAULT_CURRENCY"]).strip().upper(), "DONATION_DEFAULT_CURRENCY"
    )
    if default not in currencies:
        currencies = (default, *currencies)
    settings = DonationSettings(
        currencies=currencies,
        default_currency=default,
        presets=tuple(_decimal(p, "DONATION_PRESETS") for p in _items(config["DONATION_PRESETS"])),
        minimum=_decimal(config["DONATION_MIN"], "DONATION_MIN"),
        maximum=_decimal(config["DONATION_MAX"], "DONATION_MAX"),
        fee_percent=_decimal(config["DONATION_FEE_PERCENT"], "DONATION_FEE_PERCENT"),
        fee_fixed=_decimal(config["DONATION_FEE_FIXED"], "DONATION_FEE_FIXED"),
    )
    if not 0 <= settings.fee_percent < 100:
        raise StripeSettingsError(
            "DONATION_FEE_PERCENT must be at least 0 and below 100, like 1.5 (for 1.5%)"
        )
    if settings.fee_fixed < 0:
        raise StripeSettingsError("DONATION_FEE_FIXED must be 0 or more, like 0.25")
    if settings.minimum <= 0:
        raise StripeSettingsError("DONATION_MIN must be more than 0, like 1")
    if settings.maximum < settings.minimum:
        raise StripeSettingsError(
            f"DONATION_MAX ({settings.maximum}) must be at least DONATION_MIN ({settings.minimum})"
        )
    for preset in settings.presets:
        if not settings.minimum <= preset <= settings.maximum:
            raise StripeSettingsError(
                f"DONATION_PRESETS: {preset} is outside DONATION_MIN ({settings.minimum}) "
                f"to DONATION_MAX ({settings.maximum})"
            )
    return settings


# --------------------------------------------------------------------------- checkout


@dataclass(frozen=True)
class DonationInput:
    amount: int  # minor units
    currency: str
    frequency: Frequency
    fee_covered: int = 0
    donor_name: str | None = None
    donor_email: str | None = None
    anonymous: bool = False
    dedication_kind: str | None = None
    dedication_name: str | None = None
    message: str | None = None


class CheckoutUnavailable(Exception):
    """Stripe could not start Checkout.

    passing: the trouble usually passes (the network, Stripe's own servers, its rate limit),
    so the donor may try again. Otherwise Stripe refused the request itself (a 4xx: a key,
    a parameter, an idempotency key): trying again would fail the same way until someone
    puts the settings or the code right.
    """

    def __init__(
        self, status: int, reference: str, request_id: str | None, *, passing: bool = True
    ) -> None:
        super().__init__(f"checkout unavailable for donation {reference}")
        self.status = status
        self.reference = reference
        self.request_id = request_id
        self.passing = passing


DEDICATION_LABELS = {"honour": "In honour of", "memory": "In memory of"}


def record_donation(data: DonationInput) -> Donation:
    """Store a gift as pending before anything is asked of Stripe."""
    donation = Donation(
        amount=data.amount,
        fee_covered=data.fee_covered,
        currency=data.currency.upper(),
        frequency=data.frequency.value,
        status=DonationStatus.PENDING.value,
        livemode=_live(),
        donor_name=data.donor_name or None,
        donor_email=data.donor_email or None,
        anonymous=data.anonymous,
        dedication_kind=data.dedication_kind or None,
        dedication_name=(data.dedication_name or None) if data.dedication_kind else None,
        message=data.message or None,
    )
    db.session.add(donation)
    db.session.commit()
    return donation


# Noted on a gift when Stripe answered with a server error, followed by that request's id.
SERVER_ERROR_NOTE = "Stripe answered a server error to request "


def idempotency_key(donation: Donation) -> str:
    """The same for every attempt at one gift, so a retry can never make a second session.

    Except after Stripe answered with a server error: Stripe replays that answer for the
    same key for a day, so the next attempt uses a key named after the failed request. A
    network failure leaves the key as it was, since the session may have been made.
    """
    key = f"donation-{donation.reference}-checkout"
    note = donation.failure_reason or ""
    if note.startswith(SERVER_ERROR_NOTE):
        key += "-" + note.removeprefix(SERVER_ERROR_NOTE)
    return key


def checkout_params(donation: Donation, *, success_url: str, cancel_url: str) -> dict[str, Any]:
    """The Checkout Session for a gift: an inline price, its reference everywhere."""
    monthly = donation.frequency == Frequency.MONTHLY
    metadata = {REFERENCE_KEY: donation.reference, "frequency": donation.frequency}
    if donation.dedication_kind and donation.dedication_name:
        label = DEDICATION_LABELS.get(donation.dedication_kind, donation.dedication_kind)
        metadata["dedication"] = f"{label} {donation.dedication_name}"
    if donation.anonymous:
        metadata["anonymous"] = "yes"
    name = "Monthly gift to RENATE" if monthly else "Gift to RENATE"
    product: dict[str, Any] = {"name": name}
    if donation.fee_covered:
        product["description"] = (
            f"{format_money(donation.amount, donation.currency)} gift plus "
            f"{format_money(donation.fee_covered, donation.currency)} to cover the card fee"
        )
    price: dict[str, Any] = {
        "currency": donation.currency.lower(),
        "unit_amount": donation.total,
        "product_data": product,
    }
    params: dict[str, Any] = {
        "mode": "subscription" if monthly else "payment",
        # Never let Checkout show the gift converted into the donor's local currency: the
        # gift, and every event about it, stays in the currency the donor chose.
        "adaptive_pricing": {"enabled": False},
        "line_items": [{"quantity": 1, "price_data": price}],
        "client_reference_id": donation.reference,
        "metadata": metadata,
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if monthly:
        price["recurring"] = {"interval": "month"}
        params["subscription_data"] = {"metadata": metadata, "description": name}
    else:
        params["submit_type"] = "donate"
        params["payment_intent_data"] = {"metadata": metadata, "description": name}
    if donation.donor_email:
        params["customer_email"] = donation.donor_email
    return params


def start_checkout(donation: Donation, *, success_url: str, cancel_url: str) -> str:
    """Create (or, on a retry, find again) the gift's Checkout Session; its URL for the donor."""
    try:
        params: Any = checkout_params(donation, success_url=success_url, cancel_url=cancel_url)
        session = _client().v1.checkout.sessions.create(
            params=params, options={"idempotency_key": idempotency_key(donation)}
        )
        session_id, url = str(session["id"]), str(session["url"])
    except (stripe.StripeError, KeyError) as exc:
        _checkout_failed(donation, exc)
    # A retry a day later (Stripe has forgotten the key) makes a new session: follow it.
    donation.stripe_session_id = session_id
    donation.advance(DonationStatus.OPEN)
    db.session.commit()
    return url


def _checkout_failed(donation: Donation, exc: Exception) -> NoReturn:
    """Record a gift as not started, log why, and tell the view what the donor should see."""
    request_id = getattr(exc, "request_id", None)
    status = getattr(exc, "http_status", None)
    # A 4xx other than a rate limit answers the same way however often it is asked.
    refused = (
        isinstance(exc, stripe.StripeError)
        and isinstance(status, int)
        and 400 <= status < 500
        and not isinstance(exc, stripe.RateLimitError)
    )
    current_app.logger.log(
        logging.ERROR if refused else logging.WARNING,
        "stripe: %s checkout for donation %s: %s: %s (stripe request id %s)",
        "refused the" if refused else "could not start",
        donation.reference,
        type(exc).__name__,
        getattr(exc, "user_message", None) or exc,
        request_id or "none",
    )
    donation.advance(DonationStatus.NOT_STARTED)
    if isinstance(status, int) and status >= 500 and _safe_request_id(request_id):
        donation.failure_reason = SERVER_ERROR_NOTE + request_id
    db.session.commit()
    busy = isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError)
    raise CheckoutUnavailable(
        503 if busy else 502, donation.reference, request_id, passing=not refused
    ) from exc


def _safe_request_id(request_id: Any) -> bool:
    """A request id fit to end an idempotency key: Stripe's are like req_Ab12Cd34."""
    return (
        isinstance(request_id, str)
        and 0 < len(request_id) <= 100
        and request_id.isascii()
        and request_id.replace("_", "").isalnum()
    )


def donation_by_reference(reference: str) -> Donation | None:
    if not reference or len(reference) != 32 or not reference.isalnum():
        return None
    return db.session.scalar(select(Donation).where(Donation.reference == reference))


def donation_for_session(session_id: str) -> Donation | None:
    """The gift a Checkout Session belongs to, or None for an unknown or malformed id."""
    if (
        not session_id.startswith(SESSION_ID_PREFIXES)
        or len(session_id) > 255
        or not session_id.replace("_", "").isalnum()
        or not session_id.isascii()
    ):
        return None
    return db.session.scalar(select(Donation).where(Donation.stripe_session_id == session_id))


# --------------------------------------------------------------------------- webhooks


class BadWebhook(Exception):
    """A webhook request that is not a genuine, readable Stripe event."""


class WebhookBusy(Exception):
    """The database stayed busy; Stripe will deliver the event again."""


def verify_event(payload: bytes, header: str | None) -> dict[str, Any]:
    """Check the raw body's signature, then read it. Raises BadWebhook for anything else."""
    secret = current_app.config["STRIPE_WEBHOOK_SECRET"]
    if not secret:
        current_app.logger.error("webhook refused: STRIPE_WEBHOOK_SECRET is not set")
        raise BadWebhook("no webhook secret configured")
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, SIGNATURE_TOLERANCE)
    except stripe.SignatureVerificationError as exc:
        raise BadWebhook(f"signature: {exc.user_message}") from exc
    except ValueError as exc:  # a body that is not UTF-8
        raise BadWebhook("body is not text") from exc
    # Stripe's check only looks at age; a signature dated in the future is refused too.
    # Every t= element must be a plain timestamp: one that is not would fail int() below.
    stamps = [part[2:] for part in (header or "").split(",") if part.startswith("t=")]
    if not all(stamp.isascii() and stamp.isdigit() and len(stamp) <= 12 for stamp in stamps):
        raise BadWebhook("signature: unreadable timestamp")
    if any(int(stamp) > time.time() + SIGNATURE_TOLERANCE for stamp in stamps):
        raise BadWebhook("signature: timestamp in the future")
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise BadWebhook("body is not JSON") from exc
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise BadWebhook("body is not a Stripe event")
    return event


def apply_webhook(payload: bytes, header: str | None) -> str:
    """Verify an event and apply it exactly once. Returns what was done, for the log."""
    event = verify_event(payload, header)
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


def _apply_once(event: dict[str, Any]) -> str:
    event_id, kind = event["id"], event["type"]
    if db.session.get(WebhookEvent, event_id) is not None:
        return "duplicate"
    record = WebhookEvent(id=event_id, type=kind[:100], livemode=bool(event.get("livemode")))
    db.session.add(record)
    # Claim the id first: a concurrent delivery of the same event stops here.
    db.session.flush()
    obj = event["data"]["object"]
    if record.livemode != _live():
        current_app.logger.warning(
            "stripe event %s (%s) ignored: livemode=%s but the configured key is in %s mode",
            event_id,
            kind,
            record.livemode,
            "live" if _live() else "test",
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


def _id(value: Any) -> str | None:
    """A Stripe id whether the field holds the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _metadata_reference(*metadatas: Any) -> str | None:
    for metadata in metadatas:
        if isinstance(metadata, dict) and isinstance(metadata.get(REFERENCE_KEY), str):
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
    if subscription:
        conditions.append(Donation.stripe_subscription == subscription)
    if invoice:
        conditions.append(
            Donation.id.in_(
                select(DonationPayment.donation_id).where(DonationPayment.stripe_ref == invoice)
            )
        )
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
    if not ref or not isinstance(amount, int) or amount <= 0:
        return "none"
    known = select(DonationPayment.id).where(DonationPayment.stripe_ref == ref)
    if db.session.scalar(known) is not None:
        return "known"
    code = str(currency or donation.currency).upper()
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
    return "counted"


def _mark_paid(donation: Donation) -> None:
    donation.advance(DonationStatus.PAID)
    donation.paid_at = donation.paid_at or utcnow()


# --------------------------------------------------------------------------- sessions


def _session_donation(session: dict[str, Any]) -> Donation | None:
    return _find_donation(
        _metadata_reference(session.get("metadata")) or session.get("client_reference_id"),
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


def on_async_payment_failed(session: dict[str, Any]) -> Applied:
    donation = _session_donation(session)
    if donation is None:
        return UNMATCHED, None
    if _old_session(donation, session):
        return "ignored: old session", None
    _follow_session(donation, session, current=False)
    if donation.advance(DonationStatus.FAILED):
        donation.failure_reason = "The payment did not go through."
    return "failed", donation


def on_session_expired(session: dict[str, Any]) -> Applied:
    donation = _session_donation(session)
    if donation is None:
        return UNMATCHED, None
    # The donor may be paying on a newer session right now: the old one's end is not the gift's.
    if _old_session(donation, session):
        return "ignored: old session", None
    _follow_session(donation, session, current=False)
    donation.advance(DonationStatus.ABANDONED)
    return "abandoned", donation


# --------------------------------------------------------------------------- money events


def _charge_donation(charge: dict[str, Any], *, lock: bool = True) -> Donation | None:
    return _find_donation(
        _metadata_reference(charge.get("metadata")),
        payment_intent=_id(charge.get("payment_intent")),
        invoice=_id(charge.get("invoice")),
        lock=lock,
    ) or _monthly_gift_of_customer(_id(charge.get("customer")), lock=lock)


def on_charge_refunded(charge: dict[str, Any]) -> Applied:
    charge_id, refunded = _id(charge.get("id")), charge.get("amount_refunded")
    if charge_id is None or not isinstance(refunded, int):
        return "ignored", None
    donation = _charge_donation(charge)
    if donation is None:
        return UNMATCHED, None
    code = str(charge.get("currency") or donation.currency).upper()
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
    if donation.frequency == Frequency.ONE_TIME and charge.get("refunded") is True:
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
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    details = details or invoice.get("subscription_details") or {}
    subscription = _id(invoice.get("subscription")) or _id(details.get("subscription"))
    return subscription, details.get("metadata")


def _invoice_reference(invoice: dict[str, Any]) -> str | None:
    _, metadata = _invoice_subscription(invoice)
    lines = (invoice.get("lines") or {}).get("data") or [{}]
    return _metadata_reference(metadata, lines[0].get("metadata"), invoice.get("metadata"))


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
    _mark_paid(donation)
    outcomes = {"counted": "payment recorded", "known": "payment already counted"}
    return outcomes.get(counted, f"payment in {counted}, not counted"), donation


def on_subscription_deleted(subscription: dict[str, Any]) -> Applied:
    donation = _find_donation(
        _metadata_reference(subscription.get("metadata")),
        subscription=_id(subscription.get("id")),
    )
    if donation is None:
        return UNMATCHED, None
    if donation.advance(DonationStatus.ENDED):
        donation.ended_at = utcnow()
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

# Money events kept when no gift is known for them yet.
KEPT_UNTIL_MATCHED = frozenset({"charge.refunded", "invoice.paid"})
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
    finder = _invoice_donation if kind == "invoice.paid" else _charge_donation
    if finder(obj, lock=False) is not None:
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


# --------------------------------------------------------------------------- the form's edge

_AMOUNT = re.compile(r"(\d{1,9})(?:[.,](\d+))?")
# An amount with a currency code before or after it: "EUR 30", "30 eur".
_WITH_CODE = re.compile(r"([A-Za-z]{3})?([\d.,]+)([A-Za-z]{3})?")

# The signs a donor may type before or after an amount, and the currencies each can mean.
# fmt: off
SIGNS = {
    "€": frozenset({"EUR"}),
    "£": frozenset({"GBP", "GIP", "FKP", "SHP"}),
    "¥": frozenset({"JPY", "CNY"}),
    "$": frozenset({
        "USD", "AUD", "BBD", "BMD", "BND", "BSD", "BZD", "CAD", "FJD", "GYD", "HKD", "JMD",
        "KYD", "LRD", "MXN", "NAD", "NZD", "SBD", "SGD", "SRD", "TTD", "XCD",
    }),
}
# fmt: on


def parse_amount(text: str, currency: str) -> Decimal:
    """What a donor typed as a Decimal in major units; ValueError with a plain message.

    A currency sign or code that is not the chosen currency's is refused rather than
    ignored: "$25" with EUR chosen is not €25.
    """
    code = currency.upper()
    cleaned = text.strip().replace("\u00a0", "").replace(" ", "")
    for sign, meant in SIGNS.items():
        if sign in cleaned:
            if code not in meant:
                raise ValueError(
                    f"You typed {sign} but chose {code}. Choose the currency you meant, "
                    "or enter the amount without a sign."
                )
            cleaned = cleaned.strip(sign)
    with_code = _WITH_CODE.fullmatch(cleaned)
    if with_code:
        for typed in (with_code.group(1), with_code.group(3)):
            if typed and typed.upper() != code:
                raise ValueError(
                    f"You typed {typed.upper()} but chose {code}. Choose the currency you "
                    "meant, or enter the amount without a currency."
                )
        cleaned = with_code.group(2)
    match = _AMOUNT.fullmatch(cleaned)
    if not match:
        raise ValueError("Enter an amount in numbers, like 30 or 30.50.")
    whole, fraction = match.group(1), match.group(2) or ""
    digits = exponent(code)
    if len(fraction) == 3:
        raise ValueError("Enter the amount without a thousands separator, like 1000 or 30.50.")
    if len(fraction) > digits:
        if digits == 0:
            raise ValueError(f"Enter a whole number: {code} has no smaller unit.")
        raise ValueError("Enter at most two decimal places, like 30.50.")
    return Decimal(f"{whole}.{fraction or '0'}")
