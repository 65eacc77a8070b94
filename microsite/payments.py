"""The only module that imports stripe: its settings, Checkout sessions, webhook signatures.

What a verified event does to the database is ledger.py's; money and amounts are money.py's.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import stripe
from email_validator import EmailNotValidError, validate_email
from flask import Flask, current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from . import ledger
from .ledger import REFERENCE_KEY
from .models import CheckoutSession, Donation, DonationStatus, Frequency, db
from .money import (
    DonationSettings,
    StripeSettingsError,
    decimal_setting,
    format_money,
    read_donation_settings,
)

__all__ = [
    "BadWebhook",
    "CheckoutUnavailable",
    "DonationInput",
    "LiveKeyRefused",
    "StripeSettingsError",
    "apply_webhook",
    "donation_by_reference",
    "donation_for_session",
    "init_app",
    "payments_configured",
    "record_donation",
    "start_checkout",
]


# How old (or, unlike Stripe's own check, how far in the future) a signature may be.
SIGNATURE_TOLERANCE = 300

SESSION_ID_PREFIXES = ("cs_test_", "cs_live_")

# --------------------------------------------------------------------------- settings


class LiveKeyRefused(StripeSettingsError):
    """A live key was given without the operator's explicit permission to take real money."""


def key_mode(key: str) -> str | None:
    """ "test" or "live" for a Stripe secret or restricted key; None when there is no key."""
    if not key:
        return None
    if key.startswith(("sk_test_", "rk_test_")):
        mode = "test"
    elif key.startswith(("sk_live_", "rk_live_")):
        mode = "live"
    else:
        raise StripeSettingsError(
            "STRIPE_SECRET_KEY is not a Stripe secret key. It should start with sk_test_ "
            "(or rk_test_ for a restricted key); you will find it in Stripe's dashboard under "
            "Developers, API keys, with 'Test mode' switched on."
        )
    # After its prefix a key is letters, digits and underscores. Anything else came with a
    # copy (a space, an ellipsis where it was cut short), and Stripe would refuse every
    # call in a way that looks like the network failing.
    prefix, rest = key[:8], key[8:]
    odd = next((n for n, char in enumerate(rest) if not _KEY_CHARACTER.fullmatch(char)), None)
    if not rest or odd is not None:
        said = f"nothing after {prefix}" if not rest else _character_at(key, len(prefix) + odd)
        raise StripeSettingsError(
            f"STRIPE_SECRET_KEY has {said}, which no Stripe key has. Copy it again, whole, "
            "from Stripe's dashboard (Developers, API keys)."
        )
    return mode


_KEY_CHARACTER = re.compile(r"[A-Za-z0-9_]")
_CHARACTER_NAMES = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a line break"}


def _character_at(value: str, index: int) -> str:
    """One character of a secret, told so that it can be found without showing the rest."""
    char = value[index]
    if char in _CHARACTER_NAMES:
        told = _CHARACTER_NAMES[char]
    elif char.isprintable() and not char.isspace():
        told = f"'{char}'" + ("" if char.isascii() else f" (U+{ord(char):04X})")
    else:
        told = f"U+{ord(char):04X}"
    return f"{told} at character {index + 1}"


def check_webhook_secret(secret: str) -> None:
    """Refuse a signing secret that could never match Stripe's signatures.

    Stripe's own secrets are whsec_ and letters and digits; only what no secret can hold
    (a space, a control character, anything beyond ASCII) is refused, a wrong beginning
    only pointed out (see init_app).
    """
    odd = next((n for n, char in enumerate(secret) if not "!" <= char <= "~"), None)
    if odd is not None:
        raise StripeSettingsError(
            f"STRIPE_WEBHOOK_SECRET has {_character_at(secret, odd)}, which no signing secret "
            "has: every event would be refused. Copy it again, whole, from the webhook "
            "endpoint in Stripe's dashboard, or from `stripe listen`."
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
    site_url = str(app.config["SITE_URL"]).strip()
    if mode == "live" and not site_url:
        # Without it, the addresses Stripe sends donors back to follow the request's Host
        # header, which anyone can set: a real Checkout page could return to another site.
        raise StripeSettingsError(
            "SITE_URL is not set: with a live key it must be, so that Stripe sends donors "
            "back to this site's own address. Set it to the public address, for example "
            "SITE_URL=https://donate.example.org."
        )
    if mode and not site_url and not (app.debug or app.testing):
        app.logger.warning(
            "SITE_URL is not set: links and Stripe's return addresses follow each request's "
            "Host header. Set SITE_URL to the public address before the site is public."
        )
    portal = donor_portal_url(app.config["DONOR_PORTAL_URL"])
    check_webhook_secret(str(app.config["STRIPE_WEBHOOK_SECRET"] or ""))
    app.extensions["stripe_mode"] = mode
    # Read once, so a mistyped amount or currency setting stops the start, not a donor.
    app.extensions["donation_settings"] = settings = read_donation_settings(app.config)
    _note_presets_not_offered(app, settings)
    # Checked with no key too: a setting made ready before the key stops the start now.
    retries = int(app.config["STRIPE_MAX_NETWORK_RETRIES"])
    timeout = stripe_timeout(app.config["STRIPE_TIMEOUT"], retries)
    if mode is not None:
        # Explicitly: the library's own client would wait 80 seconds for each attempt.
        http_client = app.config.get("STRIPE_HTTP_CLIENT")
        if http_client is None:
            http_client = stripe.RequestsClient(timeout=timeout)
        app.extensions["stripe_http_client"] = http_client
        app.extensions["stripe_timeout"] = timeout
        base = str(app.config["STRIPE_API_BASE"] or "").rstrip("/")
        app.extensions["stripe"] = stripe.StripeClient(
            key,
            base_addresses={"api": base} if base else None,
            http_client=http_client,
            max_network_retries=retries,
        )
        secret = app.config["STRIPE_WEBHOOK_SECRET"]
        if secret and not secret.startswith("whsec_"):
            app.logger.warning(
                "STRIPE_WEBHOOK_SECRET does not start with whsec_: it is probably not the "
                "webhook's signing secret, and every event would be refused. Copy it from "
                "the webhook endpoint in Stripe's dashboard, or from `stripe listen`."
            )
        if not secret:
            app.logger.warning(
                "STRIPE_WEBHOOK_SECRET is not set: no gift can be confirmed as paid "
                "until Stripe's webhook signing secret is configured"
            )

    @app.context_processor
    def payment_mode() -> dict[str, str | None]:
        return {"stripe_mode": mode, "donor_portal_url": portal}


def donor_portal_url(raw: Any) -> str:
    """The link monthly donors follow to change or stop their gift, checked at start."""
    url = str(raw or "").strip()
    parts = urlsplit(url)
    if url and (parts.scheme != "https" or not parts.hostname):
        raise StripeSettingsError(
            f"DONOR_PORTAL_URL must be an https:// address, not {url!r}. Use the login link "
            "of Stripe's customer portal (Settings, Billing, Customer portal), which looks "
            "like https://billing.stripe.com/p/login/..."
        )
    return url


def _note_presets_not_offered(app: Flask, settings: DonationSettings) -> None:
    """Tell the operator which presets a currency leaves out: one list serves every
    currency, and a preset below Stripe's smallest charge in one is not offered in it."""
    for code in settings.currencies:
        left_out = [p for p in settings.presets if p not in settings.presets_for(code)]
        if left_out:
            app.logger.warning(
                "DONATION_PRESETS: %s not offered in %s, below the smallest gift taken in it (%s)",
                ", ".join(map(str, left_out)),
                code,
                settings.minimum_for(code),
            )


# Gunicorn ends a worker that takes longer than 30 seconds (its default --timeout), and the
# donor then sees the proxy's raw error page. Every attempt at a Stripe call, with the pauses
# between attempts, must end before that, so the donor sees our own calm page instead.
STRIPE_TIME_BUDGET = 25.0
# Opening a connection to Stripe takes well under a second when all is well.
STRIPE_CONNECT_TIMEOUT = 2.0


def _retry_pauses(retries: int) -> float:
    """The longest the stripe library sleeps between its attempts, in all.

    Each pause doubles up to the longest; past the first few every pause is the longest,
    so those are counted at once (a mistyped huge number of retries must not overflow).
    """
    initial, longest = stripe.HTTPClient.INITIAL_DELAY, stripe.HTTPClient.MAX_DELAY
    growing = min(retries, 64)
    pauses = sum(max(initial, min(initial * 2**n, longest)) for n in range(growing))
    return pauses + (retries - growing) * longest


def _longest_call(timeout: tuple[float, float], retries: int) -> float:
    """The longest one Stripe call can take: every attempt timing out, and the pauses."""
    return (retries + 1) * sum(timeout) + _retry_pauses(retries)


def retries_within(seconds: float) -> int | None:
    """How many retries a Stripe call may make and still end within these seconds; None
    when not even one attempt would (the page's time has been spent already)."""
    timeout = current_app.extensions["stripe_timeout"]
    for retries in range(int(current_app.config["STRIPE_MAX_NETWORK_RETRIES"]), -1, -1):
        if _longest_call(timeout, retries) <= seconds:
            return retries
    return None


def stripe_timeout(value: Any, retries: int) -> tuple[float, float]:
    """How long one attempt may take to connect and then to be answered, in seconds.

    Refused at start when the attempts together could outlast STRIPE_TIME_BUDGET.
    """
    read = float(decimal_setting(value, "STRIPE_TIMEOUT"))
    if read <= 0:
        raise StripeSettingsError("STRIPE_TIMEOUT must be more than 0 seconds, like 5")
    if retries < 0:
        raise StripeSettingsError("STRIPE_MAX_NETWORK_RETRIES must be 0 or more")
    connect = min(STRIPE_CONNECT_TIMEOUT, read)
    longest = _longest_call((connect, read), retries)
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
        self,
        status: int,
        reference: str,
        request_id: str | None,
        *,
        passing: bool = True,
        too_small: bool = False,
    ) -> None:
        super().__init__(f"checkout unavailable for donation {reference}")
        self.status = status
        self.reference = reference
        self.request_id = request_id
        self.passing = passing
        # Below Stripe's smallest charge in the gift's currency: the donor can put it right.
        self.too_small = too_small


DEDICATION_LABELS = {"honour": "In honour of", "memory": "In memory of"}


def record_donation(data: DonationInput) -> Donation:
    """Store a gift as pending before anything is asked of Stripe."""
    donation = Donation(
        amount=data.amount,
        fee_covered=data.fee_covered,
        currency=data.currency.upper(),
        frequency=data.frequency.value,
        status=DonationStatus.PENDING.value,
        livemode=ledger.live_mode(),
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


# Noted on a gift when Stripe refused to start its Checkout (a wrong key, a bad parameter).
REFUSED_NOTE = "Stripe refused the checkout: "
# Noted on a gift when Stripe answered with a server error, followed by that request's id.
SERVER_ERROR_NOTE = "Stripe answered a server error to request "
# Noted on a gift below Stripe's smallest charge in its currency, which the site did not know.
TOO_SMALL_NOTE = "Below Stripe's smallest charge in {currency}; the donor was asked for more."


def idempotency_key(donation: Donation, step: str = "checkout") -> str:
    """The same for every attempt at one gift, so a retry can never make a second session
    (step "checkout") or a second Stripe Customer (step "customer").

    Except after Stripe answered with a server error: Stripe replays that answer for the
    same key for a day, so the next attempt uses a key named after the failed request. A
    network failure leaves the key as it was, since the session may have been made.
    """
    key = f"donation-{donation.reference}-{step}"
    note = donation.failure_reason or ""
    if note.startswith(SERVER_ERROR_NOTE):
        key += "-" + note.removeprefix(SERVER_ERROR_NOTE)
    return key


def stripe_email(address: str | None) -> str | None:
    """The donor's address as Stripe is sent it, to prefill Checkout: in ASCII, a domain in
    the xn-- form mail servers know it by. An address whose part before the @ is not ASCII
    (zoë@...) is kept here but not sent: should Stripe refuse it, the whole checkout would
    fail with it, and the donor can type an address on Stripe's page."""
    if not address:
        return None
    try:
        return validate_email(address, check_deliverability=False).ascii_email
    except EmailNotValidError:
        return None


def customer_params(donation: Donation) -> dict[str, Any] | None:
    """A Stripe Customer for a donor who gave their name, or None.

    Checkout takes an email address to prefill (customer_email) but no name: a name reaches
    Stripe, and shows beside the payment in its dashboard, only on a Customer.
    """
    if not donation.donor_name:
        return None
    params: dict[str, Any] = {
        "name": donation.donor_name,
        "metadata": {REFERENCE_KEY: donation.reference},
    }
    if email := stripe_email(donation.donor_email):
        params["email"] = email
    return params


def _customer(donation: Donation) -> None:
    """Make the gift's Stripe Customer once, and keep its id on the gift.

    A retry reuses the stored id rather than asking again: after a server error the next
    attempt has a new idempotency key, and asking with it would make a second Customer.
    """
    params: Any = customer_params(donation)
    if donation.stripe_customer or params is None:
        return
    customer = _client().v1.customers.create(
        params=params,
        options={"idempotency_key": idempotency_key(donation, "customer")},
    )
    donation.stripe_customer = str(customer["id"])


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
    # Stripe takes one or the other: a Customer brings its own email address to prefill.
    if donation.stripe_customer:
        params["customer"] = donation.stripe_customer
    elif email := stripe_email(donation.donor_email):
        params["customer_email"] = email
    return params


def start_checkout(donation: Donation, *, success_url: str, cancel_url: str) -> str | None:
    """Create (or, on a retry, find again) the gift's Checkout Session; its URL for the donor.
    None if the gift was paid (or began to be) while Stripe was answering.

    A named donor's gift takes two calls, the Customer and then the session. Both together
    keep within STRIPE_TIME_BUDGET: the second has only the retries that fit in what the
    first left, and is not tried at all when no attempt would fit (the donor is asked to
    try again, which reuses the Customer made).
    """
    started = time.monotonic()
    try:
        _customer(donation)
        retries = retries_within(STRIPE_TIME_BUDGET - (time.monotonic() - started))
        if retries is None:
            raise stripe.APIConnectionError(
                "no time left for the checkout session after making the customer"
            )
        params: Any = checkout_params(donation, success_url=success_url, cancel_url=cancel_url)
        session = _client().v1.checkout.sessions.create(
            params=params,
            options={"idempotency_key": idempotency_key(donation), "max_network_retries": retries},
        )
        session_id, url = str(session["id"]), str(session["url"])
    except (stripe.StripeError, KeyError) as exc:
        _checkout_failed(donation, exc)
    # A retry a day later (Stripe has forgotten the key) makes a new session: follow it.
    # Only while the gift is still waiting for one: Stripe may take seconds to answer, and
    # meanwhile a second click's session may have been paid and its webhook applied. The
    # gift loaded before the call would not know; the row, updated only if still waiting,
    # does, in one statement on any database.
    opened = _move_from(
        donation, STARTABLE, status=DonationStatus.OPEN, stripe_session_id=session_id
    )
    # An earlier attempt's refusal is past: the admin overview no longer counts the gift
    # as refused. A server error's note stays: it names the idempotency key that worked.
    if opened and not (donation.failure_reason or "").startswith(SERVER_ERROR_NOTE):
        donation.failure_reason = None
    # Kept among the gift's sessions, in the same commit (the same one again, on most
    # retries). The row lock taken above makes a second click wait and then find it.
    if opened and db.session.get(CheckoutSession, session_id) is None:
        db.session.add(CheckoutSession(session_id=session_id, donation_id=donation.id))
    try:
        db.session.commit()
    except IntegrityError:
        # A second click answered with the same session recorded all this first.
        db.session.rollback()
    return url if opened else None


# Gifts that may be sent to a Checkout session: no money has moved for them.
STARTABLE = (DonationStatus.PENDING, DonationStatus.NOT_STARTED, DonationStatus.OPEN)


def _move_from(donation: Donation, statuses: tuple[DonationStatus, ...], **values: Any) -> bool:
    """Set values on the gift's row if it is still in one of these statuses; True if so.
    The gift in memory is read again afterwards, whichever it was."""
    db.session.flush()  # what this request changed already (the Customer) is kept either way
    moved = db.session.execute(
        update(Donation)
        .where(Donation.id == donation.id, Donation.status.in_(statuses))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(donation, list(values))
    return bool(moved.rowcount)


# Anything shaped like an email address, in a message from Stripe.
ADDRESS = re.compile(r"[^\s'\"<>()]+@[^\s'\"<>()]+")


def _error_param(exc: Exception) -> str | None:
    """Which parameter Stripe found fault with (customer_email, say): a name, not a value."""
    error = getattr(exc, "error", None)
    param = getattr(error, "param", None)
    return param if isinstance(param, str) else None


def _checkout_failed(donation: Donation, exc: Exception) -> NoReturn:
    """Record a gift as not started, log why, and tell the view what the donor should see."""
    request_id = getattr(exc, "request_id", None)
    status = getattr(exc, "http_status", None)
    # Stripe answers 409 while another request with the same idempotency key is still
    # running (a second click while Stripe is slow): the next try finds the first's answer.
    in_progress = status == 409
    # Stripe's smallest charge is known here for its main currencies only (STRIPE_MINIMUMS);
    # in another, a small gift is the first to find it. The donor is asked for more.
    too_small = getattr(exc, "code", None) == "amount_too_small"
    # Any other 4xx but a rate limit answers the same way however often it is asked.
    refused = (
        isinstance(exc, stripe.StripeError)
        and isinstance(status, int)
        and 400 <= status < 500
        and not in_progress
        and not too_small
        and not isinstance(exc, stripe.RateLimitError)
    )
    # Stripe's words say what to put right ("Invalid API Key provided"), but may quote the
    # address it refused, and the log outlives an erasure: logged without any address. They
    # are kept whole on the gift (blanked when the person is erased) for the admin overview.
    current_app.logger.log(
        logging.ERROR if refused else logging.WARNING,
        "stripe: %s checkout for donation %s: %s: %s (status %s, code %s, param %s, "
        "stripe request id %s)",
        "refused the" if refused else "could not start",
        donation.reference,
        type(exc).__name__,
        ADDRESS.sub("[an address]", str(getattr(exc, "user_message", None) or exc)),
        status or "none",
        getattr(exc, "code", None) or "none",
        _error_param(exc) or "none",
        request_id or "none",
    )
    # A gift only just made; on a retry the gift has moved past this already, and may
    # have been paid meanwhile by a second click's session.
    _move_from(donation, (DonationStatus.PENDING,), status=DonationStatus.NOT_STARTED)
    if isinstance(status, int) and status >= 500 and _safe_request_id(request_id):
        donation.failure_reason = SERVER_ERROR_NOTE + request_id
    elif too_small:
        donation.failure_reason = TOO_SMALL_NOTE.format(currency=donation.currency)
    elif refused:
        # Kept on the gift so the admin overview shows it: it will not pass by itself.
        reason = getattr(exc, "user_message", None) or type(exc).__name__
        donation.failure_reason = f"{REFUSED_NOTE}{reason} (request {request_id or 'none'})"[:255]
    db.session.commit()
    busy = in_progress or isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError)
    raise CheckoutUnavailable(
        422 if too_small else 503 if busy else 502,
        donation.reference,
        request_id,
        passing=not refused,
        too_small=too_small,
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
    current = db.session.scalar(select(Donation).where(Donation.stripe_session_id == session_id))
    if current is not None:
        return current
    # One the gift has moved on from (a retry made a newer one), which the donor paid on.
    return db.session.scalar(
        select(Donation)
        .join(CheckoutSession, CheckoutSession.donation_id == Donation.id)
        .where(CheckoutSession.session_id == session_id)
    )


# --------------------------------------------------------------------------- webhooks


class BadWebhook(Exception):
    """A webhook request that is not a genuine, readable Stripe event."""


def verify_event(payload: bytes, header: str | None) -> dict[str, Any]:
    """Check the raw body's signature, then read it. Raises BadWebhook for anything else."""
    secret = current_app.config["STRIPE_WEBHOOK_SECRET"]
    if not secret:
        current_app.logger.error("webhook refused: STRIPE_WEBHOOK_SECRET is not set")
        raise BadWebhook("no webhook secret configured")
    # Stripe's header is ASCII; the stripe library's comparison raises TypeError on
    # anything else, which a stranger could send.
    if header is not None and not header.isascii():
        raise BadWebhook("signature: header is not ASCII")
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
    except RecursionError as exc:  # nested deeper than any event Stripe sends
        raise BadWebhook("body is nested too deep") from exc
    if not (
        isinstance(event, dict)
        and ledger.stripe_text(event.get("id"))
        and ledger.stripe_text(event.get("type"))
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise BadWebhook("body is not a Stripe event")
    return event


def apply_webhook(payload: bytes, header: str | None) -> str:
    """Verify an event and apply it exactly once. Returns what was done, for the log."""
    return ledger.apply_event(verify_event(payload, header))
