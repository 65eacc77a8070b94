"""CSV exports: exactly the filtered rows, safe in a spreadsheet, audited."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from microsite.exports import neutralise
from microsite.models import AuditLog, db
from tests.admin_fixtures import ADMIN_EMAIL

PLEDGE_HEADER = [
    "Pledged at (UTC)", "Name", "Email", "Country code", "Country", "How they pray",
    "Prayer intention", "Shown publicly", "Consent version", "Consented at (UTC)",
]  # fmt: skip

NAMES = ["Zoë Brontë", "Łukasz Żółć", "Олена Коваленко", "محمد الأحمد", "李小龙", "Ἀθηνᾶ"]


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "no byte-order mark"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def audit_rows(app: Flask) -> list[AuditLog]:
    with app.app_context():
        return list(db.session.scalars(select(AuditLog).order_by(AuditLog.id)))


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1 555", "'+1 555"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tTab", "'\tTab"),
        ("\rCR", "'\rCR"),
        ("Maria = Mary", "Maria = Mary"),
        # Some spreadsheets trim leading spaces on import, so look past them too.
        ("  =1+1", "'  =1+1"),
        (" \n@SUM(A1)", "' \n@SUM(A1)"),
        ("\u00a0-2+3", "'\u00a0-2+3"),
        (" Maria", " Maria"),
        # Full-width signs, which some spreadsheet locales read as the ASCII ones.
        ("\uff1d1+1", "'\uff1d1+1"),
        ("\uff0bSUM(A1)", "'\uff0bSUM(A1)"),
        (" \uff20A1", "' \uff20A1"),
        ("\uff2daria", "\uff2daria"),
        ("", ""),
    ],
)
def test_neutralise(raw: str, safe: str) -> None:
    assert neutralise(raw) == safe


def test_pledge_export_content(
    app: Flask, admin_client: FlaskClient, add_pledge: Callable[..., None]
) -> None:
    add_pledge('Anne "Nan" O\'Neil, Jr.', "anne@example.org", created="2026-01-02T03:04:05",
               country="IE", rhythm="weekly", intention="Line one\nline two, with a comma",
               show_publicly=True)  # fmt: skip
    add_pledge("=cmd|' /C calc'!A0", "formula@example.org", created="2026-01-03T00:00:00")
    for n, name in enumerate(NAMES):
        add_pledge(name, f"s{n}@example.org", created=f"2026-01-04T00:00:{n:02d}", country="UA")

    response = admin_client.get("/admin/pledges.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="renate-pledges-')
    assert disposition.endswith('.csv"')
    body = response.get_data()
    assert b"\r\n" in body and b"\n\n" not in body.replace(b"\r\n", b"")
    rows = read_csv(body)
    assert rows[0] == PLEDGE_HEADER
    by_email = {row[2]: row for row in rows[1:]}
    assert len(rows) == 1 + 2 + len(NAMES)
    anne = by_email["anne@example.org"]
    assert anne == [
        "2026-01-02T03:04:05Z", 'Anne "Nan" O\'Neil, Jr.', "anne@example.org", "IE", "Ireland",
        "Every week", "Line one\nline two, with a comma", "yes", "2026-11-pledge-v1",
        "2026-01-02T03:04:05Z",
    ]  # fmt: skip
    assert by_email["formula@example.org"][1] == "'=cmd|' /C calc'!A0"
    assert [by_email[f"s{n}@example.org"][1] for n in range(len(NAMES))] == NAMES
    # Newest first, as the list shows them.
    assert rows[1][1] == NAMES[-1]


def test_export_holds_exactly_the_filtered_rows(
    app: Flask, admin_client: FlaskClient, add_pledge: Callable[..., None]
) -> None:
    add_pledge("In Italy", "it@example.org", country="IT", created="2026-02-01T10:00:00")
    add_pledge("In Italy later", "it2@example.org", country="IT", created="2026-02-05T10:00:00")
    add_pledge("In Spain", "es@example.org", country="ES", created="2026-02-01T10:00:00")
    query = "country=IT&until=2026-02-03"
    page = admin_client.get(f"/admin/pledges?{query}").text
    shown = [c.split("</td>")[0] for c in page.split('<td data-label="Name">')[1:]]
    rows = read_csv(admin_client.get(f"/admin/pledges.csv?{query}").get_data())
    assert [row[1] for row in rows[1:]] == shown == ["In Italy"]

    [_sign_in, export] = audit_rows(app)
    assert export.actor == ADMIN_EMAIL
    assert export.action == "export_pledges"
    assert export.row_count == 1
    assert json.loads(export.details) == {
        "filters": {"country": "IT", "until": "2026-02-03"},
        "via": "web",
    }


def test_an_export_finds_names_whatever_their_accents_as_the_list_does(
    admin_client: FlaskClient, add_pledge: Callable[..., None], add_donation: Callable[..., str]
) -> None:
    for n, name in enumerate(NAMES):
        add_pledge(name, f"s{n}@example.org", created=f"2026-01-04T00:00:{n:02d}")
        add_donation(donor_name=name, donor_email=f"d{n}@example.org")
    for typed, found in (("zoe bronte", "Zoë Brontë"), ("LUKASZ", "Łukasz Żółć"),
                         ("оле", "Олена Коваленко"), ("αθηνα", "Ἀθηνᾶ")):  # fmt: skip
        pledges = read_csv(admin_client.get("/admin/pledges.csv", query_string={"q": typed}).data)
        donations = read_csv(
            admin_client.get("/admin/donations.csv", query_string={"q": typed}).data
        )
        assert [row[1] for row in pledges[1:]] == [found], typed
        assert [row[donations[0].index("Donor name")] for row in donations[1:]] == [found], typed


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("/admin/pledges.csv?country=it", "Country"),
        ("/admin/pledges.csv?since=2026-11-31", "From"),
        ("/admin/pledges.csv?since=28/11/2026&country=IT", "From"),
        ("/admin/pledges.csv?public=true", "Shown publicly"),
        ("/admin/donations.csv?status=Paid", "Status"),
        ("/admin/donations.csv?currency=eur", "Currency"),
        ("/admin/donations.csv?mode=LIVE", "Live or test"),
    ],
)
def test_an_export_link_with_a_filter_that_cannot_be_read_exports_nothing(
    app: Flask,
    admin_client: FlaskClient,
    add_pledge: Callable[..., None],
    add_donation,
    url: str,
    problem: str,
) -> None:
    add_pledge("In Italy", "it@example.org", country="IT")
    add_pledge("In Spain", "es@example.org", country="ES")
    add_donation(currency="EUR")
    response = admin_client.get(url)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "These filters could not be used" in response.text
    assert f"<li>{problem}" in response.text
    assert "Correct the filters" in response.text
    assert [row.action for row in audit_rows(app)] == ["sign_in"]


@pytest.mark.parametrize(
    ("url", "back"),
    [
        ("/admin/pledges.csv?since=2026-13-01&endpoint=x&country=IT",
         'href="/admin/pledges?since=2026-13-01&amp;country=IT"'),
        ("/admin/pledges.csv?country=ZZ&_method=POST", 'href="/admin/pledges?country=ZZ"'),
        ("/admin/donations.csv?mode=x&endpoint=x&_external=1", 'href="/admin/donations?mode=x"'),
    ],
)  # fmt: skip
def test_a_hand_edited_export_link_gets_its_page_back_without_the_foreign_keys(
    admin_client: FlaskClient, url: str, back: str
) -> None:
    response = admin_client.get(url)
    assert response.status_code == 400
    assert back in response.text


@pytest.mark.parametrize("number", [2**31, 10**20])
def test_an_erasure_number_past_any_database_integer_is_not_found(
    admin_client: FlaskClient, number: int
) -> None:
    # 2**31 overflows PostgreSQL's integer; 10**20, SQLite's driver.
    assert admin_client.get(f"/admin/erasures/{number}").status_code == 404


def test_donation_export(app: Flask, admin_client: FlaskClient, add_donation) -> None:
    add_donation(created="2026-01-05T10:00:00", amount=2500, fee_covered=63, amount_received=2563,
                 donor_name="+Plus Person", message="@everyone, thanks", livemode=True)  # fmt: skip
    add_donation(created="2026-01-06T10:00:00", currency="GBP", livemode=False)
    rows = read_csv(admin_client.get("/admin/donations.csv?mode=live").get_data())
    assert rows[0][:7] == ["Created at (UTC)", "Reference", "Mode", "Status", "Frequency",
                           "Currency", "Gift"]  # fmt: skip
    [row] = rows[1:]
    record = dict(zip(rows[0], row, strict=True))
    assert record["Mode"] == "live"
    assert record["Gift"] == "25.00"
    assert record["Fee covered"] == "0.63"
    assert record["Charged each time"] == "25.63"
    assert record["Donor name"] == "'+Plus Person"
    assert record["Message"] == "'@everyone, thanks"
    assert record["Paid at (UTC)"] == "2026-01-05T10:00:00Z"
    assert audit_rows(app)[-1].action == "export_donations"


def test_a_donation_s_status_in_the_export_is_worded_as_the_list_words_it(
    admin_client: FlaskClient, add_donation
) -> None:
    add_donation(status="not_started", amount_received=0)
    add_donation(status="paid")
    rows = read_csv(admin_client.get("/admin/donations.csv").get_data())
    statuses = [dict(zip(rows[0], row, strict=True))["Status"] for row in rows[1:]]
    assert sorted(statuses) == ["not started", "paid"]
    assert "Not started" in admin_client.get("/admin/donations?status=not_started").text


def test_export_of_nothing_is_a_header_only(admin_client: FlaskClient) -> None:
    rows = read_csv(admin_client.get("/admin/pledges.csv").get_data())
    assert rows == [PLEDGE_HEADER]


@pytest.mark.parametrize("url", ["/admin/pledges.csv", "/admin/donations.csv"])
@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_export_started_from_another_site_is_refused(
    app: Flask, admin_client: FlaskClient, add_pledge: Callable[..., None], url: str, site: str
) -> None:
    # A link or page elsewhere could start the download: the session cookie rides along.
    add_pledge("Maria Rossi", "maria@example.org")
    response = admin_client.get(f"{url}?rhythm=daily", headers={"Sec-Fetch-Site": site})
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    # Signing in again would not help: the way on is the list itself, filters kept.
    assert "a list is downloaded only from its own page here" in response.text
    list_url = url.removesuffix(".csv")
    assert f'<a class="button" href="{list_url}?rhythm=daily">Open the list</a>' in response.text
    assert "Maria" not in response.text
    assert [row.action for row in audit_rows(app)] == ["sign_in"]  # nothing was exported


@pytest.mark.parametrize("url", ["/admin/pledges.csv", "/admin/donations.csv"])
@pytest.mark.parametrize("site", ["same-origin", "none", None])
def test_export_from_our_own_pages_or_the_address_bar_is_allowed(
    admin_client: FlaskClient, url: str, site: str | None
) -> None:
    headers = {"Sec-Fetch-Site": site} if site else {}
    response = admin_client.get(url, headers=headers)
    assert response.status_code == 200
    assert response.get_data().startswith(b"\xef\xbb\xbf")


@pytest.mark.parametrize(
    "query",
    ["until=9999-12-31", "since=0001-01-01", "since=0001-01-01&until=9999-12-31"],
)
@pytest.mark.parametrize("kind", ["pledges", "donations"])
def test_dates_at_either_end_of_the_calendar_leave_that_end_open(
    admin_client: FlaskClient, add_pledge, add_donation, kind: str, query: str
) -> None:
    add_pledge("Maria Rossi", "maria@example.org", created="2026-01-10T08:00:00")
    add_donation(created="2026-01-10T08:00:00", donor_name="Ana Pereira")
    name = "Maria Rossi" if kind == "pledges" else "Ana Pereira"
    page = admin_client.get(f"/admin/{kind}?{query}")
    assert page.status_code == 200
    assert name in page.text
    assert "field-error" not in page.text
    export = admin_client.get(f"/admin/{kind}.csv?{query}")
    assert export.status_code == 200
    rows = read_csv(export.get_data())
    assert len(rows) == 2
    assert name in rows[1]


@pytest.mark.parametrize("kind", ["pledges", "donations"])
def test_a_start_on_the_last_day_of_the_calendar_finds_nothing(
    admin_client: FlaskClient, add_pledge, add_donation, kind: str
) -> None:
    add_pledge("Maria Rossi", "maria@example.org", created="2026-01-10T08:00:00")
    add_donation(created="2026-01-10T08:00:00")
    assert admin_client.get(f"/admin/{kind}?since=9999-12-31").status_code == 200
    rows = read_csv(admin_client.get(f"/admin/{kind}.csv?since=9999-12-31").get_data())
    assert len(rows) == 1
