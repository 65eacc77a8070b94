"""An admin signs in, filters the pledges and downloads them, in a real chromium."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.admin_fixtures import ADMIN_EMAIL, ADMIN_PASSWORD

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

    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0

    page.click(".signout button")
    page.wait_for_url(re.compile(r"/admin/login$"))
    page.goto(live_server.url + "/admin/")
    page.wait_for_url(re.compile(r"/admin/login"))
