"""One person's data: find it, download it, erase it, and keep the audit log clean of it."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from microsite.models import AuditLog, Donation, Pledge, db
from tests.admin_fixtures import lookup, page_token

EMAIL = "Maria.Rossi@Example.org"


@pytest.fixture
def maria(add_pledge: Callable[..., None], add_donation: Callable[..., str]) -> list[str]:
    add_pledge("Maria Rossi", EMAIL, country="IT", intention="For my sister")
    add_pledge("Someone Else", "else@example.org")
    return [
        add_donation(donor_name="Maria Rossi", donor_email=EMAIL.lower(), message="In hope",
                     dedication_kind="memory", dedication_name="Nonna Lucia"),
        add_donation(donor_name="M. Rossi", donor_email=EMAIL, frequency="monthly"),
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


def test_erasure(app: Flask, admin_client: FlaskClient, maria: list[str]) -> None:
    before = admin_client.get("/admin/pledges.csv").get_data().decode("utf-8-sig")
    assert "Maria Rossi" in before

    response = erase(admin_client, EMAIL.upper())
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/people"
    assert "Erased: 1 pledge deleted, 2 donations kept" in admin_client.get("/admin/people").text

    with app.app_context():
        assert db.session.scalar(select(Pledge).where(Pledge.email_key == EMAIL.casefold())) is None
        assert db.session.scalar(select(Pledge).where(Pledge.name == "Someone Else"))
        kept = {d.reference: d for d in db.session.scalars(select(Donation))}
        for reference in maria[:2]:
            donation = kept[reference]
            assert donation.donor_name is None
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
    assert "<code>country=IT</code>" in html
    assert "Erased a person" in html
    assert "Signed in" in html
    assert "Rossi" not in html


def test_erasure_finds_donations_whatever_the_case_of_a_non_ascii_address(
    app: Flask, admin_client: FlaskClient, add_pledge, add_donation
) -> None:
    # SQL's lower() folds ASCII only (SQLite), and never turns ß into ss as casefold does.
    email = "ZOË.Straße@example.de"
    add_pledge("Zoë Straße", email)
    references = [
        add_donation(donor_name="Zoë Straße", donor_email=email),
        add_donation(donor_name="Z. Strasse", donor_email="zoë.strasse@example.de"),
    ]
    typed = "zoë.straße@example.de"
    found = lookup(admin_client, typed).text
    assert "Z. Strasse" in found
    assert erase(admin_client, typed, email=typed).status_code == 303
    with app.app_context():
        for reference in references:
            donation = db.session.scalar(select(Donation).where(Donation.reference == reference))
            assert donation.donor_name is None
            assert donation.donor_email is None
