"""A visitor pledges with the keyboard alone, in a real chromium, on desktop and phone."""

from __future__ import annotations

import re

import pytest

from microsite.forms import CONSENT_VERSION
from microsite.models import Pledge, db, utcnow
from tests.browser import assert_fits_viewport

pytestmark = pytest.mark.browser


def _focused(page) -> str:
    return page.evaluate(
        "(() => { const e = document.activeElement;"
        " return e.id || (e.type === 'submit' ? 'submit' : e.className || e.tagName); })()"
    )


def test_pledge_with_the_keyboard(page, live_server) -> None:
    page.goto(live_server.url + "/")
    expect_count = page.locator(".counter-number").first
    assert expect_count.inner_text() == "0"

    # The skip link is the first thing the keyboard reaches.
    page.keyboard.press("Tab")
    assert _focused(page) == "skip-link"

    # Only Tab, Space and Enter from here: the tab order itself is under test.
    for _ in range(15):
        page.keyboard.press("Tab")
        if _focused(page) == "name":
            break
    assert _focused(page) == "name", "the pledge form is reached by tabbing through the page"
    page.keyboard.type("Zoë Łukasz")
    page.keyboard.press("Tab")
    assert _focused(page) == "email"
    page.keyboard.type("zoe@example.org")
    page.keyboard.press("Tab")
    assert _focused(page) == "country"  # left as "Prefer not to say"
    page.keyboard.press("Tab")
    assert _focused(page) == "rhythm-0"
    page.keyboard.press("Space")
    assert page.is_checked("#rhythm-0")
    visited = []
    for _ in range(4):
        page.keyboard.press("Tab")
        visited.append(_focused(page))
    # The hidden honeypot is never a stop.
    assert visited == ["intention", "show_publicly", "consent", "submit"]
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Space")
    assert page.is_checked("#consent")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")

    page.wait_for_url(re.compile(r"/pledge/thanks$"))
    assert "Thank you for pledging to pray" in page.inner_text("h1")
    assert page.locator(".counter-number").inner_text() == "1"


def test_missing_consent_is_explained_beside_the_field(page, live_server) -> None:
    page.goto(live_server.url + "/")
    page.fill("#name", "Олена")
    page.fill("#email", "olena@example.org")
    page.check("#rhythm-1")
    page.click(".pledge-form button[type=submit]")
    page.wait_for_url(re.compile(r"/pledge$"))
    assert "We can only keep your pledge with your agreement." in page.inner_text("#consent-error")
    assert page.input_value("#name") == "Олена"
    assert page.is_checked("#rhythm-1")


def test_without_javascript_a_refused_pledge_lands_on_what_to_fix(
    no_script_page, live_server
) -> None:
    page = no_script_page
    page.goto(live_server.url + "/pledge")
    page.fill("#name", "Олена")
    page.click(".pledge-form button[type=submit]")
    page.wait_for_url(re.compile(r"/pledge$"))
    page.wait_for_function("document.activeElement.id === 'error-summary'")
    assert "Choose how you will pray." in page.inner_text("#error-summary")
    # The first link in the list is the next stop for the keyboard.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#email"


def test_focus_is_visible(page, live_server) -> None:
    page.goto(live_server.url + "/")
    page.focus("#email")
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


@pytest.mark.parametrize("path", ["/", "/pledge", "/pledge/thanks", "/donate", "/nowhere"])
def test_page_fits_the_viewport(page, live_server, path: str) -> None:
    page.goto(live_server.url + path)
    assert_fits_viewport(page)


def test_a_long_public_name_wraps_instead_of_widening_the_page(page, live_server, app) -> None:
    # One word as long as the name box takes, shown to every visitor once its owner agrees.
    with app.app_context():
        db.session.add(
            Pledge(name="Marie" + "x" * 95, email="m@example.org", email_key="m@example.org",
                   rhythm="daily", show_publicly=True, consent_version=CONSENT_VERSION,
                   consented_at=utcnow())
        )  # fmt: skip
        db.session.commit()
    for path in ("/", "/pledge", "/pledge/thanks"):
        page.goto(live_server.url + path)
        assert "Mariexxx" in page.inner_text(".recent")
        assert_fits_viewport(page)


def test_every_request_stays_on_the_site(page, live_server) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(live_server.url + "/")
    page.wait_for_load_state("networkidle")
    assert any(url.endswith("/static/site.css") for url in requested)
    assert [url for url in requested if not url.startswith(live_server.url)] == []


def test_printing_shows_the_article_without_the_forms(page, live_server) -> None:
    page.goto(live_server.url + "/")
    page.emulate_media(media="print")
    assert page.is_visible("#article-title")
    assert page.is_hidden(".pledge-form")
    assert page.is_hidden("#donate")
    assert page.is_hidden(".site-header nav")
    # A link's address follows its text on paper, but not a second time after an address.
    page.evaluate(
        "document.querySelector('.prose p').insertAdjacentHTML('beforeend',"
        " ' <a href=\"https://renate-europe.net/\">RENATE</a>')"
    )
    after = dict(
        page.evaluate(
            "[...document.querySelectorAll('.prose a')]"
            ".map(a => [a.textContent, getComputedStyle(a, '::after').content])"
        )
    )
    assert after["RENATE"] == '" (https://renate-europe.net/)"'
    assert [content for text, content in after.items() if "popes_message" in text] == ["none"]


def _luminance(rgb: str) -> float:
    channels = [int(c) / 255 for c in re.findall(r"\d+", rgb)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_focus_rings_stand_out_on_the_dark_header(page, live_server) -> None:
    page.goto(live_server.url + "/")
    header = page.evaluate(
        "getComputedStyle(document.querySelector('.site-header')).backgroundColor"
    )
    for selector in (".site-header .brand", ".nav a.nav-donate", ".nav li:last-child a"):
        page.focus(selector)
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # focus by keyboard, so :focus-visible applies
        ring = page.evaluate("getComputedStyle(document.activeElement).outlineColor")
        light, dark = sorted((_luminance(ring), _luminance(header)), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 3, (selector, ring)
