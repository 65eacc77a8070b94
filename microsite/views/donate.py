"""The donation form, the way to Stripe Checkout, and the way back."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response

from .. import (
    absolute_url,
    reload_the_form_page,
    retry_after_header,
    seconds_to_wait,
    too_many_attempts_page,
)
from ..extensions import limiter
from ..forms import OTHER_AMOUNT, DonationForm, amount_value
from ..ledger import live_mode
from ..models import Donation, DonationStatus, Frequency
from ..money import (
    CODE_SPACE,
    SIGNS,
    decimal_places,
    donation_settings,
    exponent,
    format_money,
    symbol,
    to_major,
    to_minor,
)
from ..payments import (
    STARTABLE,
    CheckoutUnavailable,
    DonationInput,
    donation_by_reference,
    donation_for_session,
    payments_configured,
    record_donation,
    start_checkout,
)

bp = Blueprint("donate", __name__, url_prefix="/donate")

# The session key listing the gifts this browser started.
OWN_GIFTS = "own_gifts"

# A gift whose money is taken or on its way: its donor must never be told to give again.
UNDER_WAY = (
    DonationStatus.PROCESSING,
    DonationStatus.PAID,
    DonationStatus.ENDED,
    DonationStatus.REFUNDED,
)


def _rate_limit() -> str:
    return current_app.config["DONATE_RATE_LIMIT"]


@bp.app_template_global()
def new_donation_form() -> DonationForm:
    """An empty donation form, for pages (the article) whose view does not make one."""
    return DonationForm(formdata=None)


@bp.app_template_global()
def money(minor: int, currency: str) -> str:
    return format_money(minor, currency)


@bp.app_template_global()
def donation_widget(form: DonationForm) -> dict[str, Any]:
    """What the form shows beside its fields: the currency, the fee estimate, script data."""
    settings, currency = form.settings, form.chosen_currency
    offered = settings.presets_for(currency)
    shown = {amount_value(p) for p in offered}
    try:
        gift = form.gift_in_minor_units()
        if not settings.minimum_for(currency) <= to_major(gift, currency) <= settings.maximum:
            raise ValueError("not a gift the form takes")
    except (ValueError, ArithmeticError):  # nothing usable chosen: the estimate for a preset
        gift = to_minor(offered[0], currency) if offered else 0
    return {
        "currency": currency,
        "symbol": symbol(currency),
        # A preset's button never breaks its line, and puts a code above its number
        # (site.css), where the no-break space after it would push the code off centre.
        "button_symbol": symbol(currency).replace(CODE_SPACE, " "),
        "gift": gift,
        "fee": settings.fee(gift, currency) if gift else 0,
        "fee_percent": f"{settings.fee_percent.normalize():f}",
        "fee_fixed": _fee_fixed(currency),
        "fee_fixed_plain": _fee_fixed_plain(),
        "offered": shown,
        "first_amount": _first_amount(form, shown),
        "script": {
            "percent": str(settings.fee_percent),
            "signs": "".join(SIGNS),
            "currencies": {code: _script_currency(code) for code in settings.currencies},
        },
    }


def _first_amount(form: DonationForm, offered: set[str]) -> str:
    """The id of the first amount the form shows in its currency, for the error summary to
    land on: a preset not offered in it is hidden, and "Other" is always shown."""
    return next(option.id for option in form.amount if option.data in offered | {OTHER_AMOUNT})


def _fee_fixed(currency: str) -> str:
    """The fixed part of the card fee as the rule line shows it, in the chosen currency."""
    fixed = donation_settings().fee_fixed
    return format_money(to_minor(fixed, currency), currency)


def _fee_fixed_plain() -> str:
    """The fixed part of the card fee without a currency: "0.25", "0.30", "1".

    The server adds it in whichever currency the donor chooses (money.card_fee); a page
    without script cannot change its currency sign when the choice changes, so it gives
    the plain number. An empty string when there is no fixed part.
    """
    fixed = donation_settings().fee_fixed
    if not fixed:
        return ""
    places = decimal_places(fixed)
    return f"{fixed:,.{max(2, places) if places else 0}f}"


def _script_currency(code: str) -> dict[str, Any]:
    """What donate.js needs to read an amount as the server does (money.parse_amount), to
    show the rule and estimate in this currency, and to offer only the presets it takes."""
    settings = donation_settings()
    return {
        "symbol": symbol(code),
        "exponent": exponent(code),
        "signs": "".join(sign for sign, meant in SIGNS.items() if code in meant),
        "fixed": _fee_fixed(code),
        "fixed_minor": to_minor(settings.fee_fixed, code),
        "minimum": to_minor(settings.minimum_for(code), code),
        "maximum": to_minor(settings.maximum, code),
        "presets": [amount_value(p) for p in settings.presets_for(code)],
    }


def _go_to_checkout(donation: Donation) -> Response | tuple[str, int]:
    # Appended as it is: url_for would percent-encode the braces Stripe looks for.
    success_url = absolute_url(url_for("donate.thanks")) + "?session_id={CHECKOUT_SESSION_ID}"
    cancel_url = absolute_url(url_for("donate.cancelled", ref=donation.reference))
    try:
        url = start_checkout(donation, success_url=success_url, cancel_url=cancel_url)
    except CheckoutUnavailable as exc:
        if exc.too_small:
            return _form_page(_asked_for_more(donation), exc.status)
        page = render_template("donate/unavailable.html", donation=donation, passing=exc.passing)
        return page, exc.status
    if url is None:
        # Paid, or begun to be, through another click while Stripe answered this one.
        return _where_it_stands(donation) or redirect(
            url_for("donate.cancelled", ref=donation.reference), code=303
        )
    return redirect(url, code=303)


def _asked_for_more(donation: Donation) -> DonationForm:
    """The donor's form again, told beside the amount that Stripe takes no charge that small
    in this currency."""
    form = _form_for(donation)
    field = form.other_amount if form.amount.data == OTHER_AMOUNT else form.amount
    field.errors = [
        f"{format_money(donation.amount + donation.fee_covered, donation.currency)} is less "
        f"than our payment provider, Stripe, can take in {donation.currency}. "
        "Please choose a larger amount."
    ]
    return form


def _form_page(form: DonationForm, status: int = 200, **extra: object) -> tuple[str, int]:
    return render_template("donate/form.html", donation_form=form, **extra), status


@bp.route("", methods=["GET", "POST"])
@limiter.limit(_rate_limit, methods=["POST"])
def donate() -> Response | tuple[str, int]:
    """Show the form; on POST, record the gift and send the donor to Stripe Checkout."""
    form = DonationForm()
    if form.is_submitted() and form.homepage.data:
        # The honeypot: a person never fills it in. The same quiet answer whatever else
        # was sent, so a card-testing bot learns nothing from it.
        return redirect(url_for("donate.donate"), code=303)
    if not form.validate_on_submit():
        return _form_page(form, 422 if form.is_submitted() else 200)
    if not payments_configured():
        return _form_page(form, 503, not_configured=True)
    donation = record_donation(
        DonationInput(
            amount=form.gift_in_minor_units(),
            currency=form.chosen_currency,
            frequency=Frequency(form.frequency.data),
            fee_covered=form.fee_in_minor_units(),
            donor_name=form.donor_name.data or None,
            donor_email=form.donor_email.data or None,
            anonymous=form.anonymous.data,
            dedication_kind=form.dedication_kind.data or None,
            dedication_name=form.dedication_name.data or None,
            message=form.message.data or None,
        )
    )
    # This browser may see the gift's personal details again if the donor comes back.
    session[OWN_GIFTS] = [donation.reference, *session.get(OWN_GIFTS, [])][:5]
    return _go_to_checkout(donation)


@bp.errorhandler(CSRFError)
def refused(error: CSRFError) -> Response | tuple[str, int]:
    """A gift sent without this site's cookie, or from before it was renewed: the form
    again as filled in, with a token that works; nothing kept, nothing asked of Stripe."""
    if request.endpoint != "donate.donate":
        return reload_the_form_page()
    form = DonationForm()
    form.homepage.data = ""
    return _form_page(form, 400, refused_as_sent=True)


@bp.errorhandler(TooManyRequests)
def too_many(error: TooManyRequests) -> tuple[str, int, dict[str, str]]:
    """Too many gifts sent from one place in a short while (card testers do that): a
    person gets the form again as filled in, told that nothing was taken and when to
    send it again; nothing is kept and nothing asked of Stripe."""
    if request.endpoint != "donate.donate":
        return too_many_attempts_page()  # "Back to the page" leads to the gift's form
    retry = seconds_to_wait()
    form = DonationForm()
    form.homepage.data = ""
    page, status = _form_page(form, 429, too_many={"retry": retry})
    return page, status, retry_after_header(retry)


@bp.post("/retry/<reference>")
@limiter.limit(_rate_limit)
def retry(reference: str) -> Response | tuple[str, int]:
    """Try Stripe again for the same gift: the same idempotency key, never a second session.

    Only from the browser that started the gift: the reference travels in the cancel URL,
    and the Checkout session it leads to shows the donor's email address. Anyone else is
    sent to the cancelled page, which shows no personal details to strangers.
    """
    donation = donation_by_reference(reference)
    if donation is None:
        abort(404)
    back = redirect(url_for("donate.cancelled", ref=donation.reference), code=303)
    if not _started_here(donation):
        return back
    if not payments_configured():
        return _form_page(_form_for(donation), 503, not_configured=True)
    if donation.status not in STARTABLE:  # later states have their answer already
        return _where_it_stands(donation) or back
    if donation.livemode != live_mode():
        # Made under the other Stripe mode's key (a test gift, before the site took real
        # money): a Checkout now would charge for it in this mode. Its form, to give anew.
        return back
    if donation.currency not in donation_settings().currencies:
        # Taken down since the gift was made: the form again, asking for a currency offered.
        return _form_page(_form_for(donation), 409)
    return _go_to_checkout(donation)


@bp.get("/retry/<reference>")
def retry_page(reference: str) -> Response:
    """The address a failed retry leaves in the browser's history: opened again, it leads
    to the gift's cancelled page (its form, or its thank-you page once paid)."""
    donation = donation_by_reference(reference)
    if donation is None:
        abort(404)
    return redirect(url_for("donate.cancelled", ref=donation.reference), code=303)


def _started_here(donation: Donation) -> bool:
    """Whether this browser started the gift (see OWN_GIFTS)."""
    return donation.reference in session.get(OWN_GIFTS, [])


def _where_it_stands(donation: Donation) -> Response | None:
    """The gift's own page when its money is taken or on its way, so a donor who comes
    back through an old page or the back button is never invited to pay twice."""
    if donation.status in UNDER_WAY and donation.stripe_session_id:
        return redirect(url_for("donate.thanks", session_id=donation.stripe_session_id), code=303)
    return None


def _form_for(donation: Donation) -> DonationForm:
    """The form filled in with a stored gift's choices, for a donor who comes back.

    Names, email, message and dedication only for the browser that gave them: the
    reference travels in URLs, and a URL is easily shared.

    A gift in a currency the site no longer offers keeps its other choices, but not its
    amount: ¥5000 must not come back as €5000. The form's currency_note says so.
    """
    settings = donation_settings()
    data: dict[str, object] = {
        "frequency": donation.frequency,
        "cover_fee": donation.fee_covered > 0,
        "anonymous": donation.anonymous,
    }
    still_offered = donation.currency in settings.currencies
    if still_offered:
        major = to_major(donation.amount, donation.currency)
        amount = amount_value(major)
        preset = amount in {amount_value(p) for p in settings.presets}
        data |= {
            "currency": donation.currency,
            "amount": amount if preset else OTHER_AMOUNT,
            "other_amount": "" if preset else str(major),
        }
    if _started_here(donation):
        data |= {
            "dedication_kind": donation.dedication_kind or "",
            "dedication_name": donation.dedication_name or "",
            "donor_name": donation.donor_name or "",
            "donor_email": donation.donor_email or "",
            "message": donation.message or "",
        }
    form = DonationForm(formdata=None, data=data)
    form.currency_note = (
        None
        if still_offered
        else f"Your gift of {format_money(donation.amount, donation.currency)} was in "
        f"{donation.currency}, which we no longer take online. Please choose the amount "
        "again in one of the currencies offered."
    )
    return form


@bp.get("/cancelled")
def cancelled() -> Response | tuple[str, int]:
    """Back from Checkout without paying: the form again, with their choices kept."""
    donation = donation_by_reference(request.args.get("ref", ""))
    if donation is None:  # nothing to bring back: only the form
        return _form_page(DonationForm(formdata=None))
    return _where_it_stands(donation) or _form_page(_form_for(donation), cancelled=True)


@bp.get("/thanks")
def thanks() -> str | tuple[str, int]:
    """Show what is known about the gift; only a signed webhook ever marks it paid.

    An unknown session gets a page of its own: a donor who has just paid must not be
    left wondering whether the money went astray.
    """
    donation = donation_for_session(request.args.get("session_id", ""))
    if donation is None:
        return render_template("donate/not_found.html"), 404
    return render_template("donate/thanks.html", donation=donation)
