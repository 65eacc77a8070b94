"""The dashboard and the pledge and donation lists, with their filters."""

from __future__ import annotations

import csv
import html as html_lib
import io
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from microsite import auth
from tests.admin_fixtures import ADMIN_EMAIL, ADMIN_PASSWORD, lookup, sign_in


@pytest.fixture
def some_pledges(add_pledge: Callable[..., None]) -> None:
    add_pledge("Maria Rossi", "maria@example.org", created="2026-01-10T08:00:00",
               country="IT", rhythm="daily", show_publicly=True)  # fmt: skip
    add_pledge("Jan Novák", "jan@example.org", created="2026-02-01T23:59:00",
               country="CZ", rhythm="weekly")  # fmt: skip
    add_pledge("Olena Kovalenko", "olena@example.org", created="2026-02-02T00:00:00",
               country="UA", rhythm="feb8", show_publicly=True)  # fmt: skip
    add_pledge("Anonymous Friend", "friend@example.org", created="2026-03-01T12:00:00")


def names(html: str) -> list[str]:
    """The names shown in the list, in order."""
    return [cell.split("</td>")[0] for cell in html.split('<td data-label="Name">')[1:]]


def test_pledges_newest_first(admin_client: FlaskClient, some_pledges) -> None:
    page = admin_client.get("/admin/pledges")
    assert page.status_code == 200
    assert names(page.text) == ["Anonymous Friend", "Olena Kovalenko", "Jan Novák", "Maria Rossi"]
    assert "4 pledges in all" in page.text
    assert "field-error" not in page.text
    assert "field-error" not in admin_client.get("/admin/donations").text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=maria", ["Maria Rossi"]),
        ("q=NOVÁK", ["Jan Novák"]),  # any script's capitals, on SQLite as on PostgreSQL
        ("q=nová", ["Jan Novák"]),
        ("q=JAN%40example", ["Jan Novák"]),
        ("q=%25", []),  # a wildcard typed in is a literal character
        ("since=2026-02-02", ["Anonymous Friend", "Olena Kovalenko"]),
        ("until=2026-02-01", ["Jan Novák", "Maria Rossi"]),
        ("since=2026-02-01&until=2026-02-01", ["Jan Novák"]),
        ("country=UA", ["Olena Kovalenko"]),
        ("country=none", ["Anonymous Friend"]),
        ("rhythm=weekly", ["Jan Novák"]),
        ("public=yes", ["Olena Kovalenko", "Maria Rossi"]),
        ("public=no", ["Anonymous Friend", "Jan Novák"]),
        ("rhythm=daily&public=yes", ["Maria Rossi"]),
    ],
)
def test_pledge_filters(
    admin_client: FlaskClient, some_pledges, query: str, expected: list[str]
) -> None:
    page = admin_client.get(f"/admin/pledges?{query}")
    assert page.status_code == 200
    assert names(page.text) == expected


# Names as people write them, oldest first; the lists show them newest first.
ACCENTED = [
    "Jan Novák",
    "Zoë Brontë",
    "Zoe Ball",
    "Łukasz Żółć",
    "Jürgen Müller",
    "São João da Silva",
    "Þóra Ørsted",
    "Lena Groß",
    "Anne O\N{RIGHT SINGLE QUOTATION MARK}Neill",
    "Jose\u0301 Marti\u0301",  # sent decomposed, as some Mac and iPhone browsers do
    "Jean-Pierre Dubois",
    "Anna Maria Kowalska",
]

# What staff type, and the names it finds, newest first: capitals and accents are set
# aside on both sides, so "zoe" and "Zoë" each find both Zoës.
ACCENT_BLIND_SEARCHES = [
    ("novak", ["Jan Novák"]),
    ("zoe", ["Zoe Ball", "Zoë Brontë"]),
    ("Zoë", ["Zoe Ball", "Zoë Brontë"]),
    ("ZOË BRONTE", ["Zoë Brontë"]),
    ("lukasz", ["Łukasz Żółć"]),
    ("zolc", ["Łukasz Żółć"]),
    ("muller", ["Jürgen Müller"]),
    ("MÜLLER", ["Jürgen Müller"]),
    ("sao joao", ["São João da Silva"]),
    ("thora orsted", ["Þóra Ørsted"]),
    ("gross", ["Lena Groß"]),
    ("o'neill", ["Anne O\N{RIGHT SINGLE QUOTATION MARK}Neill"]),
    ("José", ["Jose\u0301 Marti\u0301"]),
    ("marti", ["Jose\u0301 Marti\u0301"]),
    ("jean pierre", ["Jean-Pierre Dubois"]),
    ("Anna-Maria", ["Anna Maria Kowalska"]),
    ("\u0301", []),  # a mark on its own finds no name, rather than every name
]


@pytest.mark.parametrize(("typed", "expected"), ACCENT_BLIND_SEARCHES)
def test_a_pledge_is_found_by_its_name_whatever_its_accents(
    admin_client: FlaskClient, add_pledge: Callable[..., None], typed: str, expected: list[str]
) -> None:
    for n, name in enumerate(ACCENTED):
        add_pledge(name, f"p{n}@example.org", created=f"2026-01-01T00:00:{n:02d}")
    page = admin_client.get("/admin/pledges", query_string={"q": typed})
    assert page.status_code == 200
    assert names(page.text) == [html_lib.escape(name, quote=False) for name in expected]


def test_a_bad_filter_is_explained_and_ignored(admin_client: FlaskClient, some_pledges) -> None:
    page = admin_client.get("/admin/pledges?since=yesterday&country=IT")
    assert page.status_code == 200
    # The date box cannot show "yesterday", so the message says what was given.
    assert "“yesterday” is not a date: enter one as YYYY-MM-DD, like 2026-03-01." in page.text
    assert names(page.text) == ["Maria Rossi"]
    impossible = admin_client.get("/admin/pledges?since=2026-02-30")
    assert "“2026-02-30” is not a date" in impossible.text
    twice = admin_client.get("/admin/pledges?since=2026-01-01&since=2026-02-01")
    assert "Give one date here, not several." in twice.text
    reversed_dates = admin_client.get("/admin/pledges?since=2026-03-01&until=2026-01-01")
    assert "The end date is before the start date." in reversed_dates.text


def test_a_left_out_filter_is_announced_first_and_leads_to_its_box(
    admin_client: FlaskClient, some_pledges
) -> None:
    html = admin_client.get("/admin/pledges?since=2026-03-01&until=2026-01-01").text
    summary = html.split('id="filter-errors"')[1].split("</div>")[0]
    assert "This filter was left out, so the list may hold more than you asked for" in summary
    assert '<a href="#until">To: The end date is before the start date.</a>' in summary
    assert re.search(r'class="error-summary" role="alert" tabindex="-1" autofocus', html)
    # Without a mistake there is nothing to announce.
    assert 'id="filter-errors"' not in admin_client.get("/admin/pledges?country=IT").text


@pytest.mark.parametrize("listing", ["pledges", "donations"])
def test_filtering_lands_on_the_results(admin_client: FlaskClient, listing: str) -> None:
    html = admin_client.get(f"/admin/{listing}").text
    assert f'method="get" action="/admin/{listing}#results"' in html
    assert '<div id="results">' in html


def test_export_link_carries_the_filters(admin_client: FlaskClient, some_pledges) -> None:
    page = admin_client.get("/admin/pledges?country=UA&q=olena&page=1")
    assert 'href="/admin/pledges.csv?q=olena&amp;country=UA"' in page.text


def test_pagination_keeps_the_filters(admin_client: FlaskClient, add_pledge) -> None:
    for n in range(55):
        add_pledge(f"Person {n:02d}", f"p{n}@example.org", created=f"2026-01-01T00:{n:02d}:00",
                   country="IT")  # fmt: skip
    first = admin_client.get("/admin/pledges?country=IT")
    assert len(names(first.text)) == 50
    assert names(first.text)[0] == "Person 54"
    assert 'href="/admin/pledges?page=2&amp;country=IT"' in first.text
    second = admin_client.get("/admin/pledges?page=2&country=IT")
    assert names(second.text) == [f"Person {n:02d}" for n in range(4, -1, -1)]
    assert admin_client.get("/admin/pledges?page=99").status_code == 200


def test_markup_in_a_pledge_shows_as_text(admin_client: FlaskClient, add_pledge) -> None:
    add_pledge("<script>alert(1)</script>", "x@example.org", intention="<b>bold</b>")
    pages = {url: admin_client.get(url).text for url in ("/admin/pledges", "/admin/")}
    pages["people"] = lookup(admin_client, "x@example.org").text
    for url, html in pages.items():
        assert "<script>alert(1)</script>" not in html, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url
    assert "<b>bold</b>" not in admin_client.get("/admin/pledges").text


@pytest.fixture
def some_donations(add_donation) -> dict[str, str]:
    return {
        "live_eur": add_donation(created="2026-01-05T10:00:00", livemode=True,
                                 donor_name="Live Donor", donor_email="live@example.org"),
        "test_gbp": add_donation(created="2026-01-06T10:00:00", currency="GBP", amount=1000,
                                 amount_received=1000, donor_name="Test Donor",
                                 donor_email="test@example.org"),
        "monthly": add_donation(created="2026-02-01T10:00:00", livemode=True,
                                frequency="monthly", amount=500, amount_received=1500,
                                donor_name="Monthly Giver", donor_email="monthly@example.org"),
        "refunded": add_donation(created="2026-02-10T10:00:00", livemode=True, status="refunded",
                                 amount=5000, amount_received=5000, amount_refunded=5000,
                                 donor_name="Refunded Person", donor_email="r@example.org"),
        "open": add_donation(created="2026-02-11T10:00:00", status="open", amount_received=0,
                             donor_name="Still Paying", donor_email="open@example.org"),
    }  # fmt: skip


def donors(html: str) -> list[str]:
    return [cell.split("<br>")[0].strip() for cell in html.split('<td data-label="Donor">')[1:]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["Still Paying", "Refunded Person", "Monthly Giver", "Test Donor", "Live Donor"]),
        ("mode=live", ["Refunded Person", "Monthly Giver", "Live Donor"]),
        ("mode=test", ["Still Paying", "Test Donor"]),
        ("status=paid", ["Monthly Giver", "Test Donor", "Live Donor"]),
        ("frequency=monthly", ["Monthly Giver"]),
        ("currency=GBP", ["Test Donor"]),
        ("q=monthly%40", ["Monthly Giver"]),
        ("since=2026-02-01&until=2026-02-10", ["Refunded Person", "Monthly Giver"]),
    ],
)
def test_donation_filters(
    admin_client: FlaskClient, some_donations, query: str, expected: list[str]
) -> None:
    page = admin_client.get(f"/admin/donations?{query}")
    assert page.status_code == 200
    assert donors(page.text) == expected


@pytest.mark.parametrize(("typed", "expected"), ACCENT_BLIND_SEARCHES)
def test_a_donation_is_found_by_its_donor_s_name_whatever_its_accents(
    admin_client: FlaskClient, add_donation: Callable[..., str], typed: str, expected: list[str]
) -> None:
    for n, name in enumerate(ACCENTED):
        add_donation(donor_name=name, donor_email=f"d{n}@example.org",
                     created=f"2026-01-01T00:00:{n:02d}")  # fmt: skip
    add_donation(donor_name=None, donor_email=None, created="2026-01-02T00:00:00")
    page = admin_client.get("/admin/donations", query_string={"q": typed})
    assert page.status_code == 200
    assert donors(page.text) == [html_lib.escape(name, quote=False) for name in expected]


def test_an_email_is_searched_as_it_is_stored(
    admin_client: FlaskClient, add_donation: Callable[..., str]
) -> None:
    # Only names have their accents set aside: an address is a mailbox's exact name.
    add_donation(donor_name="Jürgen", donor_email="jürgen@example.de")
    add_donation(donor_name="Juergen", donor_email="juergen@example.de")
    found = admin_client.get("/admin/donations", query_string={"q": "JÜRGEN@"}).text
    assert donors(found) == ["Jürgen"]
    assert donors(admin_client.get("/admin/donations?q=jurgen%40").text) == []


def test_a_donation_is_found_by_the_short_reference_its_donor_was_shown(
    admin_client: FlaskClient, some_donations: dict[str, str]
) -> None:
    shown = some_donations["monthly"][:8]  # as on the thank-you page
    page = admin_client.get(f"/admin/donations?q={shown.upper()}").text
    assert donors(page) == ["Monthly Giver"]
    assert f"<code>{shown}</code>" in page
    assert donors(admin_client.get(f"/admin/donations?q={shown[:5]}").text) == []


def test_the_list_s_gift_is_the_export_s_gift_with_the_fee_beside_it(
    admin_client: FlaskClient, add_donation
) -> None:
    # One heading, one meaning: an admin checking the list against the CSV sees the same
    # gift in both, and the fee the donor added apart from it.
    add_donation(amount=2500, fee_covered=63, amount_received=2563)
    page = admin_client.get("/admin/donations").text
    cell = page.split('data-label="Gift"')[1].split("</td>")[0]
    assert "\u20ac25.00" in cell
    assert "+ \u20ac0.63 fee covered" in cell
    [row] = list(
        csv.DictReader(io.StringIO(admin_client.get("/admin/donations.csv").text.lstrip("\ufeff")))
    )
    assert (row["Gift"], row["Fee covered"], row["Charged each time"]) == ("25.00", "0.63", "25.63")


def test_a_list_mixing_test_and_live_gifts_says_so_before_an_export(
    admin_client: FlaskClient, some_donations
) -> None:
    mixed = admin_client.get("/admin/donations?frequency=one_time").text
    assert 'id="test-included"' in mixed
    note = mixed.split('id="test-included"')[1].split("</p>")[0]
    assert "2 of these are test donations" in note
    assert "/admin/donations?mode=live&amp;frequency=one_time" in note
    for query in ("mode=live", "mode=test"):
        assert 'id="test-included"' not in admin_client.get(f"/admin/donations?{query}").text


def overview_of(app: Flask) -> str:
    """The admin overview of an app made with its own settings, as a signed-in admin sees it."""
    with app.app_context():
        if auth.find_admin(ADMIN_EMAIL) is None:
            auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    overview = client.get("/admin/")
    assert overview.status_code == 200
    return overview.text


def test_the_overview_asks_for_a_contact_address_until_one_is_set(make_app) -> None:
    for contact, asked in (("", True), ("privacy@renate.example", False)):
        overview = overview_of(make_app(CONTACT_EMAIL=contact))
        assert ('id="no-contact"' in overview) is asked


def test_without_a_contact_address_the_overview_says_monthly_donors_cannot_stop_their_gift(
    make_app, stripe_config: dict[str, Any]
) -> None:
    for portal, warned in (("", True), ("https://billing.stripe.com/p/login/test_renate", False)):
        overview = overview_of(make_app(**stripe_config, CONTACT_EMAIL="", DONOR_PORTAL_URL=portal))
        notice = overview.split('id="no-contact"')[1].split("</p>")[0]
        assert ("Monthly donors are told they can stop their gift" in notice) is warned


def plain(html: str) -> str:
    """The text a reader sees, without the tags."""
    return re.sub(r"<[^>]+>", "", html)


def money_tables(section: str) -> dict[str, list[tuple[str, str]]]:
    """Each currency's table in a dashboard card: its rows' labels and amounts, in order."""
    row = re.compile(r'<th scope="row">([^<]+)</th><td class="num">(?:<strong>)?([^<]+)<')
    return {
        currency: row.findall(body)
        for currency, body in re.findall(
            r"<caption>([A-Z]{3})</caption>(.*?)</table>", section, re.S
        )
    }


def test_dashboard_keeps_test_and_live_apart(
    admin_client: FlaskClient, some_pledges, some_donations
) -> None:
    html = admin_client.get("/admin/").text
    live = html.split('id="live-donations"')[1].split("</section>")[0]
    test = html.split('id="test-donations"')[1].split("</section>")[0]
    # Live: 25.00 one-time + 15.00 monthly received + the refunded 50.00; 40.00 kept.
    assert money_tables(live) == {
        "EUR": [
            ("One-time gifts", "€75.00"),
            ("Monthly gifts", "€15.00"),
            ("Received", "€90.00"),
            ("Refunded", "€50.00"),
            ("Kept, after refunds", "€40.00"),
        ]
    }
    assert "1 gift, €5.00 a month" in plain(live)
    assert "€50.00 on 1 gift" in plain(live)
    assert money_tables(test) == {
        "GBP": [
            ("One-time gifts", "£10.00"),
            ("Monthly gifts", "£0.00"),
            ("Received", "£10.00"),
            ("Refunded", "£0.00"),
            ("Kept, after refunds", "£10.00"),
        ]
    }
    assert "€" not in test
    assert '<span class="stat-number">4</span> <span class="stat-label">in all</span>' in html
    assert "Ukraine" in html
    assert "Olena Kovalenko" in html  # recent activity


def test_active_monthly_gifts_read_as_a_sentence(admin_client: FlaskClient, add_donation) -> None:
    for amount in (10000, 2500):
        add_donation(livemode=True, frequency="monthly", amount=amount, amount_received=amount)
    add_donation(livemode=True, frequency="monthly", currency="GBP", amount=2500,
                 amount_received=2500)  # fmt: skip
    live = admin_client.get("/admin/").text.split('id="live-donations"')[1].split("</section>")[0]
    monthly = live.split("<dt>Active monthly gifts</dt>")[1].split("</dd>")[0]
    items = [plain(li) for li in re.findall(r"<li>(.*?)</li>", monthly)]
    assert items == ["2 gifts, €125.00 a month", "1 gift, £25.00 a month"]


def test_amounts_are_written_as_on_the_public_pages(
    admin_client: FlaskClient, add_donation
) -> None:
    add_donation(livemode=True, currency="USD", amount=123456, amount_received=123456,
                 donor_name="Big Giver")  # fmt: skip
    add_donation(livemode=True, currency="CHF", amount=5000, amount_received=5000,
                 amount_refunded=2000, status="refunded", donor_name="Swiss Giver")  # fmt: skip
    for url in ("/admin/", "/admin/donations"):
        html = admin_client.get(url).text
        assert "$1,234.56" in html, url
        assert "CHF\u00a050.00" in html, url
        assert "1234.56" not in html, url
    donations = admin_client.get("/admin/donations").text
    assert "refunded CHF\u00a020.00" in donations
    # The export stays plain numbers, for spreadsheets.
    export = admin_client.get("/admin/donations.csv").get_data().decode("utf-8-sig")
    assert "1234.56" in export
    assert "$" not in export


def test_dashboard_counts_the_last_7_and_30_days(admin_client: FlaskClient, add_pledge) -> None:
    now = datetime.now(UTC)
    for days in (1, 10, 40):
        add_pledge(f"Pledged {days} days ago", f"p{days}@example.org",
                   created=now - timedelta(days=days))  # fmt: skip
    html = admin_client.get("/admin/").text
    for number, label in (("3", "in all"), ("1", "last 7 days"), ("2", "last 30 days")):
        stat = f'<span class="stat-number">{number}</span> <span class="stat-label">{label}</span>'
        assert stat in html


@pytest.mark.parametrize("page", ["-1", "0", "abc", "1.5", "99999999999999999999", str(2**62)])
@pytest.mark.parametrize("url", ["/admin/pledges", "/admin/donations", "/admin/audit"])
def test_any_page_number_answers_without_an_error(
    admin_client: FlaskClient, some_pledges, url: str, page: str
) -> None:
    response = admin_client.get(f"{url}?page={page}")
    assert response.status_code == 200, (url, page)


def test_a_page_past_the_end_leads_back_to_the_list(admin_client: FlaskClient, add_pledge) -> None:
    for n in range(51):
        add_pledge(f"Pledger {n}", f"p{n}@example.org", country="IT")
    html = admin_client.get("/admin/pledges?page=7&country=IT").text
    assert "There is no page 7: the list has 2 pages." in html
    assert 'href="/admin/pledges?page=2&amp;country=IT">Go to the last page</a>' in html
    one_page = admin_client.get("/admin/pledges?page=3&country=FR").text
    assert "No pledges match these filters." in one_page
    assert "There is no page" not in one_page  # nothing to go back to


def test_search_text_is_not_kept_in_the_audit_log(admin_client: FlaskClient, some_pledges) -> None:
    export = admin_client.get("/admin/pledges.csv?q=maria&country=IT")
    assert "Maria Rossi" in export.get_data().decode("utf-8-sig")
    audit = admin_client.get("/admin/audit").text
    assert '<span class="filter-used">Country: Italy</span>' in audit
    assert '<span class="filter-used">Name or email: (search text)</span>' in audit
    assert "maria" not in audit.lower()


def test_search_text_is_not_written_to_the_site_log(
    admin_client: FlaskClient, some_pledges, some_donations, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for url in (
        "/admin/pledges?q=maria",
        "/admin/donations?q=monthly%40example.org",
        "/admin/pledges.csv?q=maria",
        "/admin/donations.csv?q=monthly%40example.org",
    ):
        assert admin_client.get(url).status_code == 200, url
    assert any("export of pledges" in record.getMessage() for record in caplog.records)
    logged = "\n".join(record.getMessage() for record in caplog.records).lower()
    assert "maria" not in logged
    assert "monthly@" not in logged


def test_an_audit_log_page_past_the_end_does_not_call_the_log_empty(
    admin_client: FlaskClient,
) -> None:
    html = admin_client.get("/admin/audit?page=5").text  # the sign-in is logged
    assert "There is no page 5: the list has 1 page." in html
    assert "Nothing logged yet." not in html


def test_the_audit_log_gives_an_export_s_filters_in_the_list_s_own_words(
    admin_client: FlaskClient, some_pledges, some_donations
) -> None:
    admin_client.get("/admin/pledges.csv?rhythm=feb8&public=yes&country=none").get_data()
    admin_client.get("/admin/donations.csv?status=not_started&mode=test&currency=GBP").get_data()
    audit = admin_client.get("/admin/audit").text
    used = re.findall(r'<span class="filter-used">(.*?)</span>', audit)
    assert used == [
        "Currency: GBP", "Live or test: Test only", "Status: Not started",
        "Country: Not given", "Shown publicly: Yes, opted in", "How they pray: On 8 February",
    ]  # fmt: skip
    assert "feb8" not in audit
