"""The prayer-pledge form."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response

from .. import reload_the_form_page, retry_after_header, seconds_to_wait, too_many_attempts_page
from ..extensions import limiter
from ..forms import CONSENT_VERSION, PledgeForm
from ..pledges import PledgeInput, public_summary, record_pledge

bp = Blueprint("pledge", __name__, url_prefix="/pledge")


def _rate_limit() -> str:
    return current_app.config["PLEDGE_RATE_LIMIT"]


@bp.route("", methods=["GET", "POST"])
@limiter.limit(_rate_limit, methods=["POST"])
def pledge() -> Response | tuple[str, int] | str:
    """Show the form; on POST, record the pledge and say thank you."""
    form = PledgeForm()
    if form.is_submitted() and form.website.data:
        # The honeypot: a person never fills it in. Thanked whatever else was sent,
        # so a bot learns nothing from the answer; stored nowhere.
        return redirect(url_for("pledge.thanks"), code=303)
    if form.validate_on_submit():
        record_pledge(
            PledgeInput(
                name=form.name.data,
                email=form.email.data,
                country=form.country.data or None,
                rhythm=form.rhythm.data,
                intention=form.intention.data or None,
                show_publicly=form.show_publicly.data,
                consent_version=CONSENT_VERSION,
            )
        )
        # The same answer whether or not the address had pledged before.
        return redirect(url_for("pledge.thanks"), code=303)
    status = 422 if form.is_submitted() else 200
    return render_template("pledge/form.html", form=form, pledges=public_summary()), status


@bp.get("/thanks")
def thanks() -> str:
    """Thank the visitor and show how many now pray."""
    return render_template("pledge/thanks.html", pledges=public_summary())


@bp.errorhandler(CSRFError)
def refused(error: CSRFError) -> tuple[str, int]:
    """A pledge sent without this site's cookie, or from before it was renewed: the form
    again as filled in, with a token that works, and nothing kept."""
    if request.endpoint != "pledge.pledge":
        return reload_the_form_page()
    form = PledgeForm()
    form.website.data = ""
    page = render_template(
        "pledge/form.html", form=form, pledges=public_summary(), refused_as_sent=True
    )
    return page, 400


@bp.errorhandler(TooManyRequests)
def too_many(error: TooManyRequests) -> tuple[str, int, dict[str, str]]:
    """Too many pledges sent from one place in a short while: the form again as filled
    in, nothing kept, and when it may be sent again."""
    if request.endpoint != "pledge.pledge":
        return too_many_attempts_page()
    form = PledgeForm()
    form.website.data = ""
    retry = seconds_to_wait()
    page = render_template(
        "pledge/form.html", form=form, pledges=public_summary(), too_many={"retry": retry}
    )
    return page, 429, retry_after_header(retry)
