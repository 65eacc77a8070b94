"""One person's data: find it, download it, erase it, and keep the audit log clean of it."""

from __future__ import annotations

import csv
import html as html_lib
import io
import json
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from microsite.models import AuditLog, Donation, Pledge, db
from tests.admin_fixtures import lookup, page_token
from tests.helpers import csrf_token, post_form

EMAIL = "Maria.Rossi@Example.org"


@pytest.fixture
def maria(add_pledge: Callable[..., None], add_donation: Callable[..., str]) -> list[str]:
    add_pledge("Maria Rossi", EMAIL, country="IT", intention="For my sister")
    add_pledge("Someone Else", "else@example.org")
    return [
        add_donation(donor_name="Maria Rossi", donor_email=EMAIL.lower(), message="In hope",
                     dedication_kind="memory", dedication_name="Nonna Lucia",
                     stripe_session_id="cs_test_maria1", stripe_payment_intent="pi_maria1"),
        add_donation(donor_name="M. Rossi", donor_email=EMAIL, frequency="monthly",
                     livemode=True, stripe_session_id="cs_live_maria2",
                     stripe_customer="cus_maria2", stripe_subscription="sub_maria2"),
        add_donation(donor_name="Other Donor", donor_email="other@example.org"),
    ]  # fmt: skip


def test_find_a_person_by_email_in_any_case(admin_client: FlaskClient, maria) -> None:
    page = lookup(admin_client, "maria.rossi@example.ORG")
    assert page.status_code == 200
    html = page.text
    assert "Maria Rossi" in html
    assert "For my sister" in html
    assert "In hope" in html
    assert "M. Rossi" in html
    assert "Other Donor" not in html
    assert "Someone Else" not in html


def test_finding_nobody_says_so(admin_client: FlaskClient, maria) -> None:
    page = lookup(admin_client, "nobody@example.org")
    assert "No pledge and no donation use this email address." in page.text


def session_of(client: FlaskClient) -> dict:
    """What the browser's session cookie holds (signed, not encrypted: anyone can read it)."""
    with client.session_transaction() as session:
        return dict(session)


def download(client: FlaskClient, fmt: str, email: str = EMAIL):
    token = page_token(client, "/admin/people")
    return client.post(
        "/admin/people/download", data={"csrf_token": token, "email": email, "format": fmt}
    )


def test_download_as_json(app: Flask, admin_client: FlaskClient, maria) -> None:
    response = download(admin_client, "json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    data = json.loads(response.get_data())
    assert data["pledge"]["name"] == "Maria Rossi"
    assert data["pledge"]["intention"] == "For my sister"
    assert data["pledge"]["consent_version"] == "2026-11-pledge-v1"
    # Written for the person to read, in the words and to the second as the exports give them.
    assert data["pledge"]["country"] == "Italy"
    assert data["pledge"]["rhythm"] == "Every day"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["pledge"]["consented_at"])
    assert {d["frequency"] for d in data["donations"]} == {"one-time", "monthly"}
    assert {d["donor_name"] for d in data["donations"]} == {"Maria Rossi", "M. Rossi"}
    with app.app_context():
        entry = db.session.scalars(select(AuditLog).order_by(AuditLog.id.desc())).first()
    assert entry.action == "person_download"
    assert entry.row_count == 3
    assert "maria" not in (entry.details or "").lower()


def test_download_as_csv(admin_client: FlaskClient, maria) -> None:
    response = download(admin_client, "csv")
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["Record", "Field", "Value"]
    assert ["pledge", "name", "Maria Rossi"] in rows
    assert ["donation 1", "dedication_name", "Nonna Lucia"] in rows or [
        "donation 2",
        "dedication_name",
        "Nonna Lucia",
    ] in rows


def test_download_needs_csrf(admin_client: FlaskClient, maria) -> None:
    response = admin_client.post("/admin/people/download", data={"email": EMAIL, "format": "json"})
    assert response.status_code == 400


def erase(client: FlaskClient, confirm: str, email: str = EMAIL):
    token = page_token(client, "/admin/people")
    return client.post(
        "/admin/people/erase", data={"csrf_token": token, "email": email, "confirm": confirm}
    )


def test_erase_needs_the_email_typed_again(app: Flask, admin_client: FlaskClient, maria) -> None:
    response = erase(admin_client, "someone@else.org")
    assert response.status_code == 422
    assert "That is not the same email address. Nothing was erased." in response.text
    with app.app_context():
        assert db.session.scalar(select(Pledge).where(Pledge.name == "Maria Rossi")) is not None


class _Ids(HTMLParser):
    """Every id on a page, and what each label and link into the page points to."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.label_targets: list[str] = []
        self.autofocused: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(found["id"] or "")
        if tag == "label" and found.get("for"):
            self.label_targets.append(found["for"] or "")
        if "autofocus" in found:
            self.autofocused.append(found.get("id") or tag)


def current_nav(html: str) -> list[str]:
    return re.findall(r'aria-current="page">([^<]+)</a>', html)


def test_a_mistyped_confirmation_takes_the_admin_to_the_error(
    admin_client: FlaskClient, maria
) -> None:
    html = erase(admin_client, "someone@else.org").text
    page = _Ids(html)
    # The page opens on the message (focused, so scrolled to), which leads to the field.
    assert page.autofocused == ["erase-error"]
    error = html.split('id="erase-error"')[1].split("</div>")[0]
    assert 'href="#erase-confirm"' in error
    assert "That is not the same email address. Nothing was erased." in error
    assert re.search(r'<div class="error-summary" role="alert" tabindex="-1" autofocus', html)
    assert 'for="erase-confirm"' in html
    assert re.search(
        r'<input[^>]*aria-invalid="true"[^>]*id="erase-confirm"[^>]*name="confirm"', html
    )
    # Still under "Find a person", and the person is still shown.
    assert current_nav(html) == ["Find a person"]
    assert "Maria Rossi" in html


def test_every_field_on_the_person_page_has_an_id_of_its_own(
    admin_client: FlaskClient, maria
) -> None:
    for html in (lookup(admin_client, EMAIL).text, erase(admin_client, "wrong@else.org").text):
        page = _Ids(html)
        repeated = {i for i in page.ids if page.ids.count(i) > 1}
        assert repeated == set()
        assert set(page.label_targets) <= set(page.ids)
        assert {"email", "download-format", "erase-confirm"} <= set(page.label_targets)
        # The names the server reads are unchanged.
        for name in ("email", "format", "confirm", "csrf_token"):
            assert f'name="{name}"' in html


def test_the_person_page_keeps_find_a_person_highlighted(admin_client: FlaskClient, maria) -> None:
    assert current_nav(admin_client.get("/admin/people").text) == ["Find a person"]
    assert current_nav(lookup(admin_client, EMAIL).text) == ["Find a person"]
    done = erase(admin_client, EMAIL)
    assert current_nav(admin_client.get(done.headers["Location"]).text) == ["Find a person"]


@pytest.mark.parametrize("url", ["/admin/people/erase", "/admin/people/download"])
def test_opening_a_person_form_address_again_leads_back_to_the_search(
    app: Flask, admin_client: FlaskClient, maria, url: str
) -> None:
    response = admin_client.get(url)
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/people"
    assert admin_client.get(url, follow_redirects=True).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count(Pledge.id))) == 2  # nothing erased
        actions = db.session.scalars(select(AuditLog.action)).all()
    assert actions == ["sign_in"]


def test_erasure(app: Flask, admin_client: FlaskClient, maria: list[str]) -> None:
    before = admin_client.get("/admin/pledges.csv").get_data().decode("utf-8-sig")
    assert "Maria Rossi" in before

    response = erase(admin_client, EMAIL.upper())
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/admin/erasures/")
    assert (
        "Erased: the pledge deleted; 2 donations kept without the person&#39;s details."
        in admin_client.get(response.headers["Location"]).text
    )

    with app.app_context():
        assert db.session.scalar(select(Pledge).where(Pledge.email_key == EMAIL.casefold())) is None
        assert db.session.scalar(select(Pledge).where(Pledge.name == "Someone Else"))
        kept = {d.reference: d for d in db.session.scalars(select(Donation))}
        for reference in maria[:2]:
            donation = kept[reference]
            assert donation.donor_name is None
            assert donation.donor_name_key is None  # the name, folded for the search
            assert donation.donor_email is None
            assert donation.message is None
            assert donation.dedication_kind is None
            assert donation.dedication_name is None
            assert donation.amount_received == 2500  # the accounts still add up
        assert kept[maria[2]].donor_name == "Other Donor"
        entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "erase")).one()

    # The log says what was done, not to whom.
    logged = f"{entry.actor} {entry.details}".lower()
    for personal in ("maria", "rossi", "example.org", "sister", "hope", "lucia"):
        assert personal not in logged
    assert entry.row_count == 3

    # Gone from the next exports and from the search.
    pledges_csv = admin_client.get("/admin/pledges.csv").get_data().decode("utf-8-sig")
    donations_csv = admin_client.get("/admin/donations.csv").get_data().decode("utf-8-sig")
    for text in (pledges_csv, donations_csv):
        assert "Maria" not in text
        assert "Rossi" not in text
        assert EMAIL.lower() not in text.lower()
    assert "Someone Else" in pledges_csv
    assert "Other Donor" in donations_csv
    found = lookup(admin_client, EMAIL).text
    assert "No pledge and no donation use this email address." in found
    for listing in ("pledges", "donations"):
        assert "Rossi" not in admin_client.get(f"/admin/{listing}?q=rossi").text


def _hidden_email(html: str, form_action: str) -> str:
    form = html.split(f'action="{form_action}"', 1)[1].split("</form>", 1)[0]
    return html_lib.unescape(re.search(r'name="email" type="hidden" value="([^"]*)"', form)[1])


def test_the_address_shown_is_the_one_to_type_to_erase(
    app: Flask, admin_client: FlaskClient, add_pledge: Callable[..., None]
) -> None:
    add_pledge("Jürgen Bücher", "Juergen@bücher.example")
    # Found through the form the address takes in some mail programs, with stray spaces.
    page = lookup(admin_client, "  JUERGEN@xn--bcher-kva.example ").text
    assert "Jürgen Bücher" in page
    # The page's forms act on the address as the page shows it, not on the text searched.
    assert "What we hold for JUERGEN@bücher.example" in page
    assert _hidden_email(page, "/admin/people/erase") == "JUERGEN@bücher.example"
    assert _hidden_email(page, "/admin/people/download") == "JUERGEN@bücher.example"
    token = csrf_token(page)
    response = admin_client.post(
        "/admin/people/erase",
        data={"csrf_token": token, "email": "Juergen@bücher.example",
              "confirm": "juergen@BÜCHER.example"},
    )  # fmt: skip
    assert response.status_code == 303
    with app.app_context():
        assert db.session.scalar(select(func.count(Pledge.id))) == 0


def test_erasing_an_address_erased_already_does_nothing_and_says_so(
    app: Flask, admin_client: FlaskClient, maria
) -> None:
    assert erase(admin_client, EMAIL).status_code == 303
    again = erase(admin_client, EMAIL)  # the same form sent twice, or from a second tab
    assert again.status_code == 303
    assert again.headers["Location"] == "/admin/people"
    assert "maria" not in str(session_of(admin_client)).lower()
    page = admin_client.get("/admin/people").text
    assert "Nothing is held for that address any more" in page
    with app.app_context():
        erasures = db.session.scalars(select(AuditLog).where(AuditLog.action == "erase")).all()
    assert len(erasures) == 1


def test_downloading_an_address_no_longer_held_says_so(admin_client: FlaskClient, maria) -> None:
    erase(admin_client, EMAIL)
    response = download(admin_client, "json")  # from a page opened before the erasure
    assert response.status_code == 303
    assert "maria" not in str(session_of(admin_client)).lower()
    page = admin_client.get(response.headers["Location"]).text
    assert "Nothing is held for that address any more" in page


def test_erasure_is_logged_in_the_app_log_without_the_person(
    admin_client: FlaskClient, maria, caplog
) -> None:
    caplog.set_level("INFO")
    erase(admin_client, EMAIL)
    assert "erasure by" in caplog.text
    assert "rossi" not in caplog.text.lower()


def test_audit_log_page_shows_who_did_what(admin_client: FlaskClient, maria) -> None:
    admin_client.get("/admin/pledges.csv?country=IT").get_data()
    erase(admin_client, EMAIL)
    page = admin_client.get("/admin/audit")
    assert page.status_code == 200
    html = page.text
    assert "Exported pledges" in html
    assert '<span class="filter-used">Country: Italy</span>' in html
    assert "Erased a person" in html
    assert "Signed in" in html
    assert "Rossi" not in html


def test_erasure_finds_donations_whatever_the_case_of_a_non_ascii_address(
    app: Flask, admin_client: FlaskClient, add_pledge, add_donation
) -> None:
    # Capitals beyond ASCII are matched (SQL's lower() may fold ASCII only); ß and ss are
    # different letters, so strasse@ is another person's address and is left alone.
    email = "ZOË.Straße@example.de"
    add_pledge("Zoë Straße", email)
    theirs = [
        add_donation(donor_name="Zoë Straße", donor_email=email),
        add_donation(donor_name="Z. Straße", donor_email="zoë.STRAßE@example.de"),
    ]
    other = add_donation(donor_name="Z. Strasse", donor_email="zoë.strasse@example.de")
    typed = "zoë.straße@example.de"
    found = lookup(admin_client, typed).text
    assert "Z. Straße" in found
    assert "Z. Strasse" not in found
    assert erase(admin_client, typed, email=typed).status_code == 303
    with app.app_context():
        for reference in theirs:
            donation = db.session.scalar(select(Donation).where(Donation.reference == reference))
            assert donation.donor_name is None
            assert donation.donor_name_key is None  # the name, folded for the search
            assert donation.donor_email is None
        kept = db.session.scalar(select(Donation).where(Donation.reference == other))
        assert kept.donor_email == "zoë.strasse@example.de"
        assert db.session.scalar(select(func.count(Pledge.id))) == 0


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        # A mail program may show an international domain in its ASCII form...
        ("ana@xn--bcher-kva.example", "ana@bücher.example"),
        # ...or give an accent as a letter and a combining mark (as pasted on a Mac).
        (unicodedata.normalize("NFD", "josé@example.org"), "josé@example.org"),
    ],
)
def test_a_person_is_found_and_erased_however_their_address_is_written(
    app: Flask, client: FlaskClient, admin_client: FlaskClient, add_donation, typed, stored
) -> None:
    pledged = post_form(
        client, "/pledge", {"name": "Ana", "email": typed, "rhythm": "daily", "consent": "y"}
    )
    assert pledged.status_code == 303
    add_donation(donor_name="Ana Gift", donor_email=stored)
    found = lookup(admin_client, typed).text
    assert "No pledge and no donation" not in found
    assert "Ana Gift" in found
    assert "Ana" in admin_client.get("/admin/pledges", query_string={"q": typed}).text
    assert erase(admin_client, typed, email=typed).status_code == 303
    with app.app_context():
        assert db.session.scalar(select(func.count(Pledge.id))) == 0
        assert db.session.scalar(select(Donation.donor_email)) is None


def test_the_person_page_shows_what_stripe_holds(admin_client: FlaskClient, maria) -> None:
    html = lookup(admin_client, EMAIL).text
    # Every Stripe id we have for their donations, linked in the Dashboard's live or test mode.
    for stripe_id in ("cs_test_maria1", "pi_maria1", "cs_live_maria2", "cus_maria2", "sub_maria2"):
        assert stripe_id in html
    assert 'href="https://dashboard.stripe.com/test/payments/pi_maria1"' in html
    assert 'href="https://dashboard.stripe.com/customers/cus_maria2"' in html
    assert 'href="https://dashboard.stripe.com/subscriptions/sub_maria2"' in html
    assert "Stripe keeps its own copy of this person's details" in html
    assert "staff must delete it in the Stripe Dashboard" in html
    # The monthly gift is still taking money: said before anyone presses Erase.
    erase_form = html.split('class="erase-form"')[1]
    assert "1 monthly gift will keep charging" in erase_form
    assert html.count("Still charging:") == 1
    assert "cus_" not in lookup(admin_client, "other@example.org").text


def test_an_ended_monthly_gift_is_not_said_to_be_charging(
    admin_client: FlaskClient, add_donation
) -> None:
    add_donation(donor_email="ended@example.org", frequency="monthly", status="ended",
                 ended_at=datetime(2026, 2, 1, tzinfo=UTC), stripe_subscription="sub_ended",
                 stripe_customer="cus_ended")  # fmt: skip
    html = lookup(admin_client, "ended@example.org").text
    assert "sub_ended" in html
    assert "Still charging:" not in html
    assert "will keep charging" not in html


def test_after_erasure_the_stripe_ids_to_delete_are_shown(
    admin_client: FlaskClient, maria: list[str]
) -> None:
    response = erase(admin_client, EMAIL)
    page = admin_client.get(response.headers["Location"])
    assert page.status_code == 200
    html = page.text
    assert "Still at Stripe" in html
    for stripe_id in ("cs_test_maria1", "pi_maria1", "cus_maria2", "sub_maria2"):
        assert stripe_id in html
    assert "Stripe keeps its own copy of this person's details" in html
    assert "Still charging:" in html
    for reference in maria[:2]:
        assert reference in html
    assert maria[2] not in html  # someone else's gift
    assert "Rossi" not in html
    # The audit log leads back to it, and only erasures have such a page.
    audit = admin_client.get("/admin/audit").text
    assert f'href="{response.headers["Location"]}"' in audit
    assert admin_client.get("/admin/erasures/1").status_code == 404  # the sign-in entry
    assert admin_client.get("/admin/erasures/999").status_code == 404


@pytest.mark.sqlite_file
@pytest.mark.parametrize("built_with_secure_delete", [True, False])
def test_erased_details_leave_no_trace_in_the_sqlite_files(
    app: Flask, admin_client: FlaskClient, maria, built_with_secure_delete: bool
) -> None:
    with app.app_context():
        assert db.engine.dialect.name == "sqlite"  # on the PostgreSQL pass too: see the mark
        path = Path(db.engine.url.database)
        if not built_with_secure_delete:
            # As with an SQLite built without SECURE_DELETE on by default.
            db.engine.dispose()
            event.listen(
                db.engine, "connect", lambda conn, _: conn.execute("PRAGMA secure_delete=OFF")
            )
    personal = [value.encode("utf-8") for value in (
        "Maria Rossi", "M. Rossi", EMAIL, EMAIL.casefold(), "For my sister", "In hope",
        "Nonna Lucia", "maria rossi", "m. rossi",  # the last two as the search keeps them
    )]  # fmt: skip

    def stored() -> bytes:
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())

    assert all(value in stored() for value in personal)  # the check can see them
    assert erase(admin_client, EMAIL).status_code == 303
    left = [value.decode() for value in personal if value in stored()]
    assert left == []
    assert b"Someone Else" in stored()  # the others' data is still there


def test_stripes_words_quoting_the_donor_are_downloaded_and_then_erased(
    app: Flask, admin_client: FlaskClient, add_donation: Callable[..., str]
) -> None:
    from microsite.payments import REFUSED_NOTE

    quoted = f"{REFUSED_NOTE}Invalid email address: {EMAIL.lower()} (request req_1)"
    refused = add_donation(
        donor_email=EMAIL.lower(), status="not_started", amount_received=0, failure_reason=quoted
    )
    assert EMAIL.lower() in admin_client.get("/admin/").text  # the overview's latest refusal
    data = json.loads(download(admin_client, "json").get_data())
    assert [d["failure_reason"] for d in data["donations"]] == [quoted]

    erase(admin_client, EMAIL)
    assert EMAIL.lower() not in admin_client.get("/admin/").text
    assert EMAIL.lower() not in admin_client.get("/admin/donations.csv").get_data().decode()
    with app.app_context():
        kept = db.session.scalar(select(Donation).where(Donation.reference == refused))
    assert kept.failure_reason == REFUSED_NOTE + "its words were erased with the donor's data."


def test_the_person_page_shows_a_gift_s_dedication(admin_client: FlaskClient, maria) -> None:
    # A name the erasure removes: staff see it before they erase, or read it out on request.
    html = lookup(admin_client, EMAIL).text
    assert "In memory of <bdi>Nonna Lucia</bdi>" in html
