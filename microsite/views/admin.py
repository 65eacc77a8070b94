"""The admin area: sign in, dashboard, lists and exports."""

from __future__ import annotations

import json
import posixpath
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    has_request_context,
    make_response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_wtf.csrf import CSRFError
from sqlalchemy import desc, select
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Response as BaseResponse

from .. import auth, exports, in_admin_area, records, render_error
from ..extensions import limiter
from ..forms import (
    ActionForm,
    DonationFilterForm,
    EraseForm,
    LoginForm,
    PersonDownloadForm,
    PersonSearchForm,
    PledgeFilterForm,
    country_names,
)
from ..models import AuditLog, Donation, DonationStatus, Pledge, db, utcnow
from ..security import client_network

bp = Blueprint("admin", __name__, url_prefix="/admin")

PER_PAGE = 50
# Far past any real list; keeps the row offset within what a database integer can hold.
MAX_PAGE = 1_000_000
# The largest id a database integer column holds: past it, an address is a 404.
MAX_ID = 2**31 - 1
PUBLIC_ENDPOINTS = {"admin.login"}
# Search text may be a person's name or email: it is not carried into the sign-in URL.
PRIVATE_ARGS = {"q"}
# Sec-Fetch-Site values of a request the admin made from our own pages or the address bar.
OWN_FETCH_SITES = {"same-origin", "none"}
# A download asked for while signed out comes back to its list, to be exported from there:
# after signing in, the browser would otherwise keep showing the sign-in page as it downloads.
EXPORT_LISTS = {
    "admin.export_pledges": "admin.pledges",
    "admin.export_donations": "admin.donations",
}
# Labels short enough for a table column.
SHORT_RHYTHM = {"daily": "Every day", "weekly": "Every week", "feb8": "On 8 February"}


# --------------------------------------------------------------------------- guard


@bp.before_request
def require_admin() -> BaseResponse | None:
    """Send anyone not signed in to the sign-in page; the one guard for all of /admin."""
    # Read before session_admin() clears a timed-out session (see logout).
    g.session_owner = auth.session_owner() if request.endpoint == "admin.logout" else None
    g.admin = auth.session_admin()
    if g.admin is not None or g.session_owner is not None:
        return None
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    return _to_sign_in(g.get("session_ended"))


def _to_sign_in(ended: str | None) -> BaseResponse:
    """To the sign-in page, saying why the session ended if it did, then back here.

    A form sent after the session ended did nothing: the admin comes back to the page
    the form was on, to send it again.
    """
    changing = request.method not in ("GET", "HEAD")
    if ended is not None:
        flash(_session_ended_note(ended, changing), "info")
    if not changing:
        return redirect(url_for("admin.login", next=_return_path()))
    return redirect(url_for("admin.login", next=_referring_path()), code=303)


def _session_ended_note(ended: str, changing: bool) -> str:
    minutes = int(current_app.config["ADMIN_IDLE_MINUTES"])
    hours = int(current_app.config["ADMIN_ABSOLUTE_HOURS"])
    why = {
        "idle": f"You were signed out after {_count(minutes, 'minute')} without activity.",
        "absolute": f"You were signed out: a session lasts at most {_count(hours, 'hour')}.",
        "elsewhere": "You were signed out, in another tab or window or by a change to your "
        "account.",
    }[ended]
    if changing:
        return f"{why} Nothing was changed: sign in again, then send the form once more."
    return f"{why} Sign in again to carry on."


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _with_query(path: str, pairs: list[tuple[str, str]]) -> str:
    query = urlencode(pairs)
    return f"{path}?{query}" if query else path


def _public_pairs(args: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, v in args.items(multi=True) if k not in PRIVATE_ARGS]


def _return_path() -> str:
    """Where to come back to after signing in: this page and its filters, minus search text."""
    path = request.path
    if request.endpoint in EXPORT_LISTS:
        path = url_for(EXPORT_LISTS[request.endpoint])
    return _with_query(path, _public_pairs(request.args))


def _landing(target: str | None) -> str | None:
    """Where a sign-in's `next` may lead: a page of ours, and for a download its list.

    A sign-in link naming an export (sent in an email, or put on another site) must not
    download the list the moment the admin signs in: the download would follow our own
    form, so it would look like one asked for from our pages. The path is matched as the
    browser will load it (escapes decoded, "//" and "./" folded, redirects followed) and
    the address given back is rebuilt from the route it matched, so no spelling of an
    export's address gets past; one that matches no page leads to the overview.
    """
    path = auth.safe_next(target)
    if path is None:
        return None
    parts = urlsplit(path)
    decoded = unquote(parts.path)
    folded = posixpath.normpath(decoded) + ("/" if decoded.endswith("/") and decoded != "/" else "")
    adapter = current_app.url_map.bind("")
    for _ in range(3):
        try:
            endpoint, values = adapter.match(folded, method="GET")
        except RequestRedirect as moved:
            folded = urlsplit(moved.new_url).path
            continue
        except HTTPException:
            return None
        if endpoint in EXPORT_LISTS:
            endpoint, values = EXPORT_LISTS[endpoint], {}
        return _with_query(url_for(endpoint, **values), parse_qsl(parts.query))
    return None


def _referring_path() -> str | None:
    """The admin page a form was sent from, minus search text; None if not one of ours."""
    referrer = urlsplit(request.referrer or "")
    if f"{referrer.scheme}://{referrer.netloc}/" != request.host_url:
        return None
    path = auth.safe_next(referrer.path)
    if path is None or not path.startswith(f"{bp.url_prefix}/"):
        return None
    return _with_query(path, _public_pairs(MultiDict(parse_qsl(referrer.query))))


@bp.errorhandler(CSRFError)
def form_out_of_date(error: CSRFError) -> BaseResponse | tuple[str, int]:
    """An admin form whose token no longer matches the session: most often the admin signed
    out (or was signed out) in another tab, which ended the session the token belonged to.

    Nothing is done; the admin is told why, and where to go on from.
    """
    admin = auth.session_admin()
    if request.endpoint == "admin.logout" and admin is None:
        flash("You are signed out.", "ok")
        return redirect(url_for("admin.login"), code=303)
    if admin is None:
        return _to_sign_in(g.get("session_ended") or "elsewhere")
    # Still signed in, with a page opened before the latest sign-in (or a form that came
    # without its token): refused, with the way back to a fresh copy of the page.
    return render_error(
        400,
        "That page was out of date",
        "Nothing was changed: the form came from a page opened before you last signed in. "
        "Open the page again and send the form once more.",
        action_url=_referring_path() or url_for("admin.dashboard"),
        action_label="Open the page again",
    )


@bp.after_app_request
def no_store(response: Response) -> Response:
    """Admin pages hold personal data: never keep them in a browser or proxy cache."""
    if in_admin_area():
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


def own_ids(form: Any, prefix: str) -> Any:
    """Give a form's fields ids of their own, so that several forms can share a page.

    Only the ids change (labels follow them); the names the server reads stay as they are.
    """
    for field in form:
        field.id = f"{prefix}-{field.name}"
        if field.label is not None:
            field.label.field_id = field.id
    return form


# Amounts on screen use the site-wide money() template global (donate.py), as the public
# pages do; only the CSV exports keep plain numbers.
@bp.app_context_processor
def admin_globals() -> dict[str, Any]:
    """What admin pages show around their content; also for an error page under /admin
    that no admin route matched (a link cut short), which the guard above never saw."""
    if not has_request_context() or not in_admin_area():
        return {}
    if "admin" not in g:
        g.admin = auth.session_admin()
    return {
        "admin": g.get("admin"),
        # Only rendered here, never read: formdata=None keeps it off the request's body,
        # which an error page (a 413 for one too large) must not read again.
        "action_form": own_ids(ActionForm(formdata=None), "signout"),
        "may_still_charge": records.may_still_charge,
        "has_stripe_ids": records.has_stripe_ids,
        "short_rhythm": SHORT_RHYTHM,
        "country_names": country_names(),
    }


# --------------------------------------------------------------------------- sign in


def _client_key() -> str:
    return f"client:{client_network(request.remote_addr)}"


def _account_key() -> str:
    return "account:" + auth.normalise_email(request.form.get("email", ""))[:254]


def _client_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _account_limit() -> str:
    return current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"]


def _known_browser() -> bool:
    """A browser the account's admin signed in from is not held by others' attempts."""
    return auth.is_known_browser(
        request.cookies.get(auth.KNOWN_BROWSER_COOKIE), request.form.get("email", "")
    )


# Every sign-in attempt is counted as it arrives, before its password is checked: the
# count and the test are one step, so attempts sent all at once cannot get past the limit.
@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_client_limit, key_func=_client_key, methods=["POST"])
@limiter.limit(_account_limit, key_func=_account_key, methods=["POST"], exempt_when=_known_browser)
def login() -> BaseResponse | tuple[str, int] | str:
    """Sign an admin in, then send them where they were going."""
    form = LoginForm()
    if request.method == "GET":
        form.next.data = _landing(request.args.get("next")) or ""
        if g.admin is not None:
            return redirect(form.next.data or url_for("admin.dashboard"))
    failed = False
    if form.validate_on_submit():
        admin = auth.authenticate(form.email.data, form.password.data)
        if admin is not None:
            auth.start_session(admin)
            records.audit(admin.email, "sign_in")
            current_app.logger.info("admin sign-in: %s", admin.email)
            response = redirect(_landing(form.next.data) or url_for("admin.dashboard"), code=303)
            response.set_cookie(
                auth.KNOWN_BROWSER_COOKIE,
                auth.known_browser_token(admin),
                max_age=auth.KNOWN_BROWSER_DAYS * 86400,
                path=url_for("admin.login"),
                secure=current_app.config["SESSION_COOKIE_SECURE"],
                httponly=True,
                samesite="Strict",
            )
            return response
        # Name the account only when it exists: a password typed into the email box
        # must never reach the log.
        known = auth.find_admin(form.email.data)
        records.audit(known.email if known else "unknown account", "sign_in_failed")
        current_app.logger.warning(
            "admin sign-in failed for %s from %s",
            known.email if known else "an unknown account",
            request.remote_addr,
        )
        failed = True
    status = 401 if failed else 422 if form.is_submitted() else 200
    form.password.data = ""
    return render_template("admin/login.html", form=form, failed=failed), status


@bp.post("/logout")
def logout() -> BaseResponse:
    """Sign out everywhere: the session cookie, and any copy of it, stops working.

    This works from a session past its idle or absolute limit too: its own cookie no
    longer signs anyone in, but a copy someone else kept busy would. CSRFProtect checked
    the form's token before the guard could clear the session.
    """
    admin = g.admin or g.session_owner
    if admin is not None:
        email = admin.email
        auth.end_session(admin)
        records.audit(email, "sign_out")
        current_app.logger.info("admin sign-out: %s", email)
        flash("You are signed out.", "ok")
    return redirect(url_for("admin.login"), code=303)


# --------------------------------------------------------------------------- dashboard


@bp.get("/")
def dashboard() -> str:
    """Totals for pledges and donations, live and test apart, and recent activity."""
    return render_template("admin/dashboard.html", stats=records.dashboard())


# --------------------------------------------------------------------------- lists


def _page() -> int:
    """The page asked for, clamped to 1..MAX_PAGE; anything not a number is page 1."""
    return min(MAX_PAGE, max(1, request.args.get("page", 1, type=int) or 1))


def _clean(form: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The valid filter values; a filter with an error is left out, on list and export alike."""
    form.validate()
    values: dict[str, Any] = {}
    for name in names:
        field = form[name]
        if not field.errors and field.data not in (None, ""):
            values[name] = field.data
    return values


def pledge_filters() -> tuple[PledgeFilterForm, records.PledgeFilters]:
    form = PledgeFilterForm(formdata=request.args)
    values = _clean(form, ("q", "since", "until", "country", "rhythm", "public"))
    return form, records.PledgeFilters(**values)


def donation_filters() -> tuple[DonationFilterForm, records.DonationFilters]:
    form = DonationFilterForm(
        formdata=request.args,
        statuses=[s.value for s in DonationStatus],
        currencies=records.donation_currencies(),
    )
    values = _clean(form, ("q", "since", "until", "status", "frequency", "currency", "mode"))
    return form, records.DonationFilters(**values)


def _paginate(query: Any) -> Any:
    """One page of a list, by the page number asked for (out of range gives an empty page)."""
    return db.paginate(query, page=_page(), per_page=PER_PAGE, error_out=False)


@bp.get("/pledges")
def pledges() -> str:
    """Pledges, newest first, narrowed by the filters."""
    form, filters = pledge_filters()
    page = _paginate(records.filter_pledges(select(Pledge), filters))
    return render_template("admin/pledges.html", form=form, filters=filters, page=page)


@bp.get("/donations")
def donations() -> str:
    """Donations, newest first, narrowed by the filters."""
    form, filters = donation_filters()
    page = _paginate(records.filter_donations(select(Donation), filters))
    return render_template(
        "admin/donations.html",
        form=form,
        filters=filters,
        page=page,
        test_count=records.test_donations_among(filters),
    )


def _refuse_cross_site(list_endpoint: str) -> None:
    """Refuse a download started by another site's link or page (its cookie rides along).

    Browsers that send Sec-Fetch-Site say where a request came from; one without it
    (an old browser, curl) is let through, as the session cookie still has to be valid.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in OWN_FETCH_SITES:
        current_app.logger.warning(
            "export refused: %s request for %s by %s", site, request.path, g.admin.email
        )
        page, status = render_error(
            403,
            "Downloads start from the admin pages",
            "For the safety of the people listed, a list is downloaded only from its own "
            "page here, not from a link in an email or on another site. Open the list, check "
            "its filters, and press Export CSV there.",
            action_url=_with_query(url_for(list_endpoint), list(request.args.items(multi=True))),
            action_label="Open the list",
        )
        abort(make_response(page, status))


def _download(export: exports.Export) -> Response:
    body = exports.stream_csv(export, actor=g.admin.email, via="web")
    response = Response(stream_with_context(body), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{export.filename(utcnow().date())}"'
    )
    return response


def _refuse_unreadable_filters(form: Any, list_endpoint: str) -> None:
    """Export nothing when a filter could not be read (a hand-edited or old link).

    The list shows such a filter's error and leaves it out; a file has nowhere to show
    one, and leaving the filter out would quietly export more rows than were asked for.
    """
    if not form.errors:
        return
    problems = [f"{form[name].label.text}: {messages[0]}" for name, messages in form.errors.items()]
    page, status = render_error(
        400,
        "These filters could not be used",
        "Nothing was exported, so that the file never holds more than was asked for.",
        problems=problems,
        # Only the filters' own names: any other key is not ours to pass to url_for.
        action_url=_with_query(
            url_for(list_endpoint),
            [(k, v) for k, v in request.args.items(multi=True) if k in form],
        ),
        action_label="Correct the filters",
    )
    abort(make_response(page, status))


@bp.get("/pledges.csv")
def export_pledges() -> Response:
    """Download exactly the pledges the list shows with these filters."""
    _refuse_cross_site("admin.pledges")
    form, filters = pledge_filters()
    _refuse_unreadable_filters(form, "admin.pledges")
    return _download(exports.pledge_export(filters))


@bp.get("/donations.csv")
def export_donations() -> Response:
    """Download exactly the donations the list shows with these filters."""
    _refuse_cross_site("admin.donations")
    form, filters = donation_filters()
    _refuse_unreadable_filters(form, "admin.donations")
    return _download(exports.donation_export(filters))


# --------------------------------------------------------------------------- audit log


@bp.get("/audit")
def audit_log() -> str:
    """Who signed in, exported or erased what, and when; newest first."""
    page = _paginate(select(AuditLog).order_by(desc(AuditLog.at), desc(AuditLog.id)))
    return render_template(
        "admin/audit.html",
        page=page,
        details=records.audit_details,
        filters_in_words=_filters_in_words,
    )


def _filters_in_words(action: str, filters: dict[str, str]) -> list[tuple[str, str]]:
    """An export's filters as its list's form shows them ("How they pray: Every day"),
    not as the codes the link carries ("rhythm=feb8"); a key no form knows, as it is."""
    form = (
        PledgeFilterForm(formdata=None)
        if action == "export_pledges"
        else DonationFilterForm(
            formdata=None,
            statuses=[s.value for s in DonationStatus],
            currencies=[filters.get("currency", "")],
        )
    )
    words = []
    for key, value in filters.items():
        field = form._fields.get(key)
        if field is None or key == "q":  # the search text itself is never kept
            words.append((field.label.text if field else key, value))
            continue
        names = {choice.value: choice.label for choice in getattr(field, "choices", None) or []}
        if key == "rhythm":
            names = SHORT_RHYTHM  # as the list's column gives it
        words.append((field.label.text, names.get(value, value)))
    return words


# --------------------------------------------------------------------------- one person


@bp.route("/people", methods=["GET", "POST"])
def people() -> str:
    """Find everything held about one email address.

    A POST, so the address stays out of the URL, the browser's history and access logs.
    """
    form = PersonSearchForm()
    person = None
    if form.validate_on_submit():
        person = records.find_person(form.email.data)
        records.audit(g.admin.email, "person_lookup", {"found": "yes" if person.found else "no"})
    # formdata=None: the search's own "email" in this request's body is not theirs.
    return _person_page(form, person, EraseForm(formdata=None, email=_held(person)))


def _held(person: Any) -> str:
    """The address, as stored, that the page's download and erase forms act on."""
    return person.email if person else ""


def _person_page(form: PersonSearchForm, person: Any, erase: EraseForm) -> str:
    """The person page: the search, what is held, and its download and erase forms."""
    download = PersonDownloadForm(formdata=None, email=_held(person))
    return render_template(
        "admin/people.html",
        form=form,
        person=person,
        download=own_ids(download, "download"),
        erase=own_ids(erase, "erase"),
    )


@bp.get("/people/download")
@bp.get("/people/erase")
def person_again() -> BaseResponse:
    """The address a download or a refused erasure left in the address bar, opened again.

    Those forms only POST and what they acted on is not in the address, so go to the search.
    """
    return redirect(url_for("admin.people"), code=303)


@bp.post("/people/download")
def person_download() -> BaseResponse:
    """Download one person's data, as JSON or CSV, for a subject access request."""
    form = PersonDownloadForm()
    if not form.validate_on_submit():
        abort(400)
    person = records.find_person(form.email.data)
    if not person.found:
        return _nothing_held()
    data = records.person_data(person)
    records.audit(
        g.admin.email,
        "person_download",
        {"format": form.format.data},
        row_count=(1 if person.pledge else 0) + len(person.donations),
    )
    current_app.logger.info("personal data downloaded by %s", g.admin.email)
    today = utcnow().date().isoformat()
    if form.format.data == "csv":
        body = b"".join(exports.csv_lines(("Record", "Field", "Value"), _person_rows(data)))
        mimetype, suffix = "text/csv; charset=utf-8", "csv"
    else:
        body = json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
        mimetype, suffix = "application/json", "json"
    response = Response(body, content_type=mimetype)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="renate-personal-data-{today}.{suffix}"'
    )
    return response


def _person_rows(data: dict[str, Any]) -> list[tuple[str, str, Any]]:
    rows: list[tuple[str, str, Any]] = [("request", "email", data["email"])]
    rows.append(("request", "exported_at", data["exported_at"]))
    if data["pledge"]:
        rows += [("pledge", key, value) for key, value in data["pledge"].items()]
    for n, donation in enumerate(data["donations"], start=1):
        rows += [(f"donation {n}", key, value) for key, value in donation.items()]
    return rows


@bp.post("/people/erase")
def person_erase() -> BaseResponse | tuple[str, int]:
    """Erase a person: pledge deleted, donations kept for the accounts but made anonymous."""
    form = EraseForm()
    if not form.validate_on_submit():
        person = records.find_person(form.email.data or "")
        search = PersonSearchForm(data={"email": person.email})
        return _person_page(search, person, form), 422
    if not records.find_person(form.email.data).found:
        return _nothing_held()  # erased already, in another tab or by a colleague
    erasure = records.erase_person(form.email.data, actor=g.admin.email)
    current_app.logger.info(
        "erasure by %s: %d pledge deleted, %d donations blanked",
        g.admin.email,
        erasure.pledges,
        erasure.donations,
    )
    pledge = "the pledge deleted" if erasure.pledges else "no pledge was held"
    donations = (
        f"{erasure.donations} donation{'' if erasure.donations == 1 else 's'} kept without "
        "the person's details"
        if erasure.donations
        else "no donations were held"
    )
    flash(f"Erased: {pledge}; {donations}.", "ok")
    return redirect(url_for("admin.erasure", entry_id=erasure.audit_id), code=303)


def _nothing_held() -> BaseResponse:
    """A download or an erasure for an address no longer held: say so, do nothing."""
    # Not the address itself: a flash waits in the session cookie, which anyone holding
    # the browser can read.
    flash(
        "Nothing is held for that address any more: it may have been erased already. "
        "Nothing was done.",
        "info",
    )
    return redirect(url_for("admin.people"), code=303)


@bp.get(f"/erasures/<int(max={MAX_ID}):entry_id>")
def erasure(entry_id: int) -> str:
    """What an erasure left at Stripe: the ids to delete there, and gifts still charging."""
    entry = db.get_or_404(AuditLog, entry_id)
    if entry.action != "erase":
        abort(404)
    return render_template(
        "admin/erasure.html", entry=entry, donations=records.erased_donations(entry)
    )
