"""An admin signs in, filters the pledges and downloads them, in a real chromium."""

from __future__ import annotations

import csv
import io
import re

import pytest

from microsite import auth, records
from tests.admin_fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.browser import assert_fits_viewport

pytestmark = pytest.mark.browser


@pytest.fixture
def pledges(add_pledge) -> None:
    add_pledge("Maria Rossi", "maria@example.org", country="IT", created="2026-01-10T08:00:00")
    add_pledge("Łukasz Żółć", "lukasz@example.org", country="PL", created="2026-01-11T08:00:00")
    add_pledge("Zoë Brontë", "zoe@example.org", country="IT", created="2026-01-12T08:00:00",
               rhythm="weekly")  # fmt: skip


def test_sign_in_filter_and_download(page, live_server, admin_account, pledges) -> None:
    page.goto(live_server.url + "/admin/pledges")
    page.wait_for_url(re.compile(r"/admin/login\?next="))
    page.fill("#email", ADMIN_EMAIL)
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/pledges$"))
    assert "3 pledges in all." in page.inner_text(".result-count")

    page.select_option("#country", "IT")
    page.click(".filters button[type=submit]")
    page.wait_for_url(re.compile(r"country=IT"))
    assert "2 pledges match these filters." in page.inner_text(".result-count")

    with page.expect_download() as info:
        page.click("#export")
    download = info.value
    assert re.fullmatch(r"renate-pledges-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    with open(download.path(), "rb") as fh:
        body = fh.read()
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert [row[1] for row in rows[1:]] == ["Zoë Brontë", "Maria Rossi"]

    assert_fits_viewport(page)

    page.click(".signout button")
    page.wait_for_url(re.compile(r"/admin/login$"))
    page.goto(live_server.url + "/admin/")
    page.wait_for_url(re.compile(r"/admin/login"))


def sign_in_through_the_form(page, live_server, password: str = ADMIN_PASSWORD) -> None:
    page.goto(live_server.url + "/admin/login")
    page.fill("#email", ADMIN_EMAIL)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form button[type=submit]")


def focused_id(page) -> str:
    return page.evaluate("document.activeElement.id")


def failed_sign_in_starts_at_the_message(page, live_server) -> None:
    sign_in_through_the_form(page, live_server, password="not the password")
    page.wait_for_function("() => document.activeElement.id === 'login-error'")
    assert "do not match an admin account" in page.inner_text("#login-error")
    page.keyboard.press("Tab")
    assert focused_id(page) == "email"  # straight back to the form, nothing to tab past


def test_a_failed_sign_in_starts_the_keyboard_at_the_message(
    page, live_server, admin_account
) -> None:
    failed_sign_in_starts_at_the_message(page, live_server)


def test_a_failed_sign_in_starts_at_the_message_without_script(
    no_script_page, live_server, admin_account
) -> None:
    failed_sign_in_starts_at_the_message(no_script_page, live_server)


@pytest.fixture
def many_currencies(add_donation) -> None:
    for currency, amount in (("EUR", 10000), ("GBP", 2500), ("USD", 123456), ("CHF", 5000)):
        add_donation(livemode=True, currency=currency, amount=amount, amount_received=amount,
                     frequency="monthly")  # fmt: skip
        add_donation(currency=currency, amount=1000, amount_received=1000)


def test_the_overview_shows_every_currency_whole(
    page, live_server, admin_account, many_currencies
) -> None:
    sign_in_through_the_form(page, live_server)
    page.wait_for_url(re.compile(r"/admin/$"))
    for card in ("live-donations", "test-donations"):
        section = page.locator(f"section[aria-labelledby={card}]")
        box = section.bounding_box()
        assert section.locator("caption").all_inner_texts() == ["CHF", "EUR", "GBP", "USD"]
        for cell in section.locator(".money-table th, .money-table td").all():
            cell_box = cell.bounding_box()
            assert cell_box["x"] >= box["x"], (card, cell.inner_text())
            assert cell_box["x"] + cell_box["width"] <= box["x"] + box["width"], (
                card,
                cell.inner_text(),
            )
        cut = section.evaluate(
            "s => [...s.querySelectorAll('.money-tables, table, .card')]"
            ".filter(e => e.scrollWidth > e.clientWidth).length"
        )
        assert cut == 0, card
    live = page.locator("section[aria-labelledby=live-donations]")
    assert "$1,234.56" in live.inner_text()
    monthly = live.locator("dt:has-text('Active monthly gifts') + dd li").all_inner_texts()
    assert monthly[:2] == ["1 gift, CHF\u00a050.00 a month", "1 gift, €100.00 a month"]
    assert_fits_viewport(page)


def test_a_donor_s_details_stay_together_in_the_list(
    page, live_server, admin_account, add_donation
) -> None:
    add_donation(donor_name="Ana Pereira", anonymous=True,
                 donor_email="ana.pereira.with.a.long.address@example-university.org")  # fmt: skip
    sign_in_through_the_form(page, live_server)
    page.wait_for_url(re.compile(r"/admin/$"))
    page.goto(live_server.url + "/admin/donations")
    donor = page.locator('td[data-label="Donor"]').first
    cell = donor.bounding_box()
    email = donor.locator(".email").bounding_box()
    tag = donor.locator(".tag").bounding_box()
    # Email and tag sit in the value column, under the name, and the tag stays a small label.
    name_x = donor.evaluate(
        "td => { const r = document.createRange(); r.selectNodeContents(td.firstChild);"
        " return Math.min(...[...r.getClientRects()].map(b => b.x)); }"
    )
    assert abs(email["x"] - name_x) < 2
    assert abs(tag["x"] - name_x) < 2
    assert tag["width"] < 120
    assert email["x"] + email["width"] <= cell["x"] + cell["width"] + 1
    mode = page.locator('td[data-label="Mode"] .tag').first.bounding_box()
    assert mode["width"] < 80
    assert_fits_viewport(page)


def test_a_long_unbroken_name_or_message_never_widens_an_admin_page(
    page, live_server, admin_account, add_pledge, add_donation
) -> None:
    # A name typed without spaces, or a pasted web address as a message: the form allows
    # both, and every page that shows them must still fit the screen.
    long = "Maximiliana" + "x" * 80
    add_pledge(long, "max@example.org")
    add_donation(
        donor_name=long,
        donor_email="max@example.org",
        dedication_kind="memory",
        dedication_name=long,
        message="https://example.org/" + "a" * 400,
    )
    sign_in_through_the_form(page, live_server)
    page.wait_for_url(re.compile(r"/admin/$"))
    assert_fits_viewport(page, "/admin/")
    for path in ("/admin/pledges", "/admin/donations"):
        page.goto(live_server.url + path)
        assert_fits_viewport(page, path)
    page.goto(live_server.url + "/admin/people")
    page.fill("#email", "max@example.org")
    with page.expect_navigation():
        page.click(".person-search button")
    assert page.locator("text=In memory of").count() == 1
    assert_fits_viewport(page, "/admin/people")


def test_a_mistyped_erasure_confirmation_is_brought_into_view(
    page, live_server, admin_account, add_pledge
) -> None:
    add_pledge("Maria Rossi", "maria@example.org", intention="For my sister")
    sign_in_through_the_form(page, live_server)
    page.wait_for_url(re.compile(r"/admin/$"))
    page.goto(live_server.url + "/admin/people")
    page.fill("#email", "maria@example.org")
    page.click(".person-search button")
    page.fill("#erase-confirm", "maria@exmaple.org")
    with page.expect_navigation():
        page.click(".erase-form button[type=submit]")
    page.wait_for_function("() => document.activeElement.id === 'erase-error'")
    assert page.locator("#erase-error").is_visible()
    # Scrolled to (smoothly, where motion is allowed), not left far down the page.
    page.wait_for_function(
        "() => { const r = document.getElementById('erase-error').getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= innerHeight; }"
    )
    assert page.inner_text("[aria-current=page]") == "Find a person"
    page.click("#erase-error a")
    assert focused_id(page) == "erase-confirm"
    # Opening the address again (from the history) leads back to the search.
    page.goto(live_server.url + "/admin/people/erase")
    assert page.url == live_server.url + "/admin/people"
    assert page.locator("h1").inner_text() == "Find a person"


def test_an_erasure_s_references_fit_the_audit_log(
    page, live_server, app, admin_account, add_donation
) -> None:
    for _ in range(2):
        add_donation(donor_email="maria@example.org")
    with app.app_context():
        records.erase_person("maria@example.org", actor=ADMIN_EMAIL)
    sign_in_through_the_form(page, live_server)
    page.wait_for_url(re.compile(r"/admin/$"))
    page.goto(live_server.url + "/admin/audit")
    details = page.locator("tr:has-text('Erased a person') td[data-label=Details]")
    assert "donations blanked" in details.inner_text()
    assert_fits_viewport(page)


def test_an_export_after_the_session_ended_leads_to_sign_in(
    page, live_server, app, admin_account, pledges
) -> None:
    sign_in_through_the_form(page, live_server)
    page.wait_for_url(re.compile(r"/admin/$"))
    page.goto(live_server.url + "/admin/pledges?country=IT")
    with app.app_context():
        auth.set_password(ADMIN_EMAIL, "a brand new long password")  # ends every session
    # Not a download of the sign-in page: the sign-in page itself, saying why.
    page.click("#export")
    page.wait_for_url(re.compile(r"/admin/login\?next="))
    assert "You were signed out" in page.inner_text(".flash")
    sign_in_through_the_form_here(page, "a brand new long password")
    # Back at the list and its filters, to export from.
    page.wait_for_url(re.compile(r"/admin/pledges\?country=IT$"))
    assert "2 pledges match these filters." in page.inner_text(".result-count")


def sign_in_through_the_form_here(page, password: str) -> None:
    page.fill("#email", ADMIN_EMAIL)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form button[type=submit]")
