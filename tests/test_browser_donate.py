"""A donor picks an amount and reaches (a stand-in for) Stripe Checkout, with and without script."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import expect

from microsite.models import Donation, DonationStatus, db
from microsite.money import donation_settings, format_money, parse_amount, to_major, to_minor
from tests.browser import assert_fits_viewport
from tests.stripe_fake import CHECKOUT_URL, FakeStripe, make_event, post_event

pytestmark = pytest.mark.browser

FAKE_CHECKOUT_PAGE = "<!doctype html><title>Checkout</title><h1>Fake Stripe Checkout</h1>"


@pytest.fixture
def app(request: pytest.FixtureRequest, make_app, stripe_config: dict[str, Any]) -> Flask:
    """The site in Stripe test mode; its API calls reach the fake, never the network.

    A test may add settings of its own through indirect parametrization.
    """
    return make_app(**stripe_config, **getattr(request, "param", {}))


def _stand_in_for_checkout(page: Any) -> list[str]:
    """Answer Checkout's URL from here: the browser never leaves the machine."""
    visited: list[str] = []

    def fulfil(route: Any) -> None:
        visited.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body=FAKE_CHECKOUT_PAGE)

    page.route(re.compile(r"^https://checkout\.stripe\.com/.*"), fulfil)
    return visited


def test_pick_an_amount_and_arrive_at_checkout(
    page: Any, live_server: Any, fake_stripe: FakeStripe, app: Flask
) -> None:
    visited = _stand_in_for_checkout(page)
    page.goto(live_server.url + "/")
    assert "Test mode" in page.inner_text(".test-banner")

    page.click("label[for=amount-2]")  # 50
    assert page.is_checked("#amount-2")
    page.click("label[for=frequency-1]")  # monthly
    page.check("#cover_fee")
    # (5000 + 25) / 0.985 = 5101.52..., so 102 cents on top.
    assert page.inner_text(".fee-example") == "On €50.00 that adds €1.02 a month."

    page.select_option("#currency", "GBP")
    assert page.text_content(".amount-choice label[for=amount-2]") == "£50"
    page.fill("#other_amount", "30")
    assert page.is_checked("#amount-4")
    assert page.inner_text(".fee-example") == "On £30.00 that adds £0.72 a month."

    page.click(".donate-form button[type=submit]")
    page.wait_for_url(re.compile(r"^https://checkout\.stripe\.com/c/pay/cs_test_"))
    assert page.inner_text("h1") == "Fake Stripe Checkout"
    assert visited == [page.url]

    [wire] = fake_stripe.sessions_created
    params = wire.params
    assert params["mode"] == "subscription"
    assert params["line_items[0][price_data][currency]"] == "gbp"
    assert params["line_items[0][price_data][unit_amount]"] == str(3000 + 72)
    assert params["line_items[0][price_data][recurring][interval]"] == "month"
    assert page.url == CHECKOUT_URL + wire_session(app)


def wire_session(app: Flask) -> str:
    with app.app_context():
        return db.session.scalars(db.select(Donation.stripe_session_id)).one()


def test_without_javascript_the_gift_still_reaches_checkout_and_comes_back(
    no_script_page: Any, live_server: Any, fake_stripe: FakeStripe, app: Flask
) -> None:
    page = no_script_page
    _stand_in_for_checkout(page)
    page.goto(live_server.url + "/donate")
    # The fee rule is in the page itself, as the server applies it in any currency.
    assert page.inner_text("#fee-estimate") == (
        "Card fees are about 1.5% + 0.25 in the currency you choose. "
        "Ticking the box adds enough to cover them."
    )
    page.click("label[for=amount-3]")  # 100
    page.click(".donate-form button[type=submit]")
    page.wait_for_url(re.compile(r"^https://checkout\.stripe\.com/"))
    [wire] = fake_stripe.sessions_created
    assert wire.params["line_items[0][price_data][unit_amount]"] == "10000"
    assert wire.params["mode"] == "payment"

    # Stripe sends the donor back; the page shows what the webhook has (not yet) said.
    session_id = wire_session(app)
    thanks = f"{live_server.url}/donate/thanks?session_id={session_id}"
    page.goto(thanks)
    assert "being processed" in page.inner_text("h1")

    with app.app_context():
        reference = db.session.scalars(db.select(Donation.reference)).one()
    _paid(app, thanks, reference)
    page.goto(thanks)
    assert page.inner_text("h1") == "Thank you for your gift"
    with app.app_context():
        assert db.session.scalars(db.select(Donation.status)).one() == DonationStatus.PAID


def _a_pending_gift(page: Any, live_server: Any, app: Flask) -> tuple[str, str]:
    """Give €100 through the stand-in for Checkout; the thank-you page's address, and the
    webhook that says the gift is paid."""
    _stand_in_for_checkout(page)
    page.goto(live_server.url + "/donate")
    page.click("label[for=amount-3]")  # 100
    page.click(".donate-form button[type=submit]")
    page.wait_for_url(re.compile(r"^https://checkout\.stripe\.com/"))
    with app.app_context():
        donation = db.session.scalars(db.select(Donation)).one()
        session_id, reference = donation.stripe_session_id, donation.reference
    return f"{live_server.url}/donate/thanks?session_id={session_id}", reference


def _paid(app: Flask, thanks: str, reference: str) -> None:
    completed = {
        "id": thanks.rpartition("=")[2],
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": 10000,
        "currency": "eur",
        "payment_intent": "pi_test_browser",
        "metadata": {"donation_reference": reference},
    }
    event = make_event("checkout.session.completed", completed)
    assert post_event(app.test_client(), event).status_code == 200


def test_the_thank_you_page_shows_the_confirmation_when_it_arrives(
    page: Any, live_server: Any, fake_stripe: FakeStripe, app: Flask
) -> None:
    thanks, reference = _a_pending_gift(page, live_server, app)
    page.goto(thanks)
    assert page.inner_text("h1") == "Thank you: your gift is being processed"
    page.get_by_role("link", name="Check again").focus()
    page.evaluate("window.notReloaded = true")

    _paid(app, thanks, reference)
    heading = page.locator("h1")
    expect(heading).to_have_text("Thank you for your gift", timeout=10_000)
    expect(page.get_by_role("status")).to_have_text(
        "Thank you for your gift. We have received your gift of €100.00."
    )
    assert page.evaluate("window.notReloaded") is True
    assert page.url == thanks
    assert page.get_by_role("link", name="Check again").count() == 0
    # The keyboard's place was on a link now gone: it is on the news instead.
    assert page.evaluate("document.activeElement.textContent") == "Thank you for your gift"
    with app.app_context():
        assert db.session.scalars(db.select(Donation.status)).one() == DonationStatus.PAID


def test_the_window_s_title_follows_the_news_on_the_thank_you_page(
    page: Any, live_server: Any, fake_stripe: FakeStripe, app: Flask
) -> None:
    thanks, reference = _a_pending_gift(page, live_server, app)
    page.goto(thanks)
    assert page.title() == "Thank you: your gift is being processed · RENATE"

    expired = {
        "id": thanks.rpartition("=")[2],
        "object": "checkout.session",
        "status": "expired",
        "payment_status": "unpaid",
        "metadata": {"donation_reference": reference},
    }
    event = make_event("checkout.session.expired", expired)
    assert post_event(app.test_client(), event).status_code == 200
    expect(page.locator("h1")).to_have_text("Your payment did not go through", timeout=10_000)
    # The tab, and what a screen reader calls the window, no longer thank the donor.
    expect(page).to_have_title("Your payment did not go through · RENATE")


def test_the_thank_you_page_asks_a_few_times_only(
    page: Any, live_server: Any, fake_stripe: FakeStripe, app: Flask
) -> None:
    thanks, _ = _a_pending_gift(page, live_server, app)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.resource_type == "fetch" else None)
    page.clock.install()
    page.goto(thanks)
    for _ in range(15):  # 45 seconds on the page's clock
        page.clock.run_for(3000)
        page.wait_for_timeout(150)
    assert asked == [thanks] * 10
    # Still waiting: the page says so, and the donor can look again by hand.
    assert page.inner_text("h1") == "Thank you: your gift is being processed"
    expect(page.get_by_role("link", name="Check again")).to_be_visible()


def _background(page: Any, selector: str) -> str:
    return page.eval_on_selector(selector, "e => getComputedStyle(e).backgroundColor")


def test_without_javascript_the_form_never_shows_a_currency_it_cannot_follow(
    no_script_page: Any, live_server: Any, fake_stripe: FakeStripe, app: Flask
) -> None:
    # The page is made for euros; without script nothing on it changes when the donor
    # chooses pounds, so nothing on it may say euros.
    page = no_script_page
    _stand_in_for_checkout(page)
    page.goto(live_server.url + "/donate")
    form = ".donate-form"
    assert page.locator(".amount-choice:visible label").all_inner_texts() == [
        "10", "25", "50", "100",
    ]  # fmt: skip
    assert "€" not in page.inner_text(form)
    assert "On €25.00" not in page.inner_text(form)
    unchosen = _background(page, "label[for=amount-0]")
    assert _background(page, "label[for=amount-1]") != unchosen  # 25 is chosen

    page.select_option("#currency", "GBP")
    page.fill("#other_amount", "40")
    text = page.inner_text(form)
    assert "€" not in text and "£" not in text
    assert "0.25 in the currency you choose" in text
    # The amount typed in replaces the preset, and the preset no longer looks chosen.
    assert _background(page, "label[for=amount-1]") == unchosen
    page.check("#cover_fee")
    page.click(".donate-form button[type=submit]")
    page.wait_for_url(re.compile(r"^https://checkout\.stripe\.com/"))
    [wire] = fake_stripe.sessions_created
    assert wire.params["line_items[0][price_data][currency]"] == "gbp"
    # (4000 + 25) / 0.985 = 4086.29..., so 87 pence on top: 0.25 in pounds, as the page said.
    assert wire.params["line_items[0][price_data][unit_amount]"] == str(4000 + 87)


SUBMIT = "document.querySelector('.donate-form button[type=submit]')"


@pytest.fixture
def slow_stripe(fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Stripe answers only once the returned event is set: a donor waiting on a slow Stripe."""
    answer = threading.Event()
    respond = fake_stripe.request

    def request(*args: Any, **kwargs: Any) -> Any:
        answer.wait(timeout=30)
        return respond(*args, **kwargs)

    monkeypatch.setattr(fake_stripe, "request", request)
    return answer


def _posts_to_donate(page: Any) -> list[str]:
    sent: list[str] = []
    page.on(
        "request",
        lambda r: sent.append(r.url) if r.method == "POST" and r.url.endswith("/donate") else None,
    )
    return sent


def _watch_submit_button(page: Any) -> list[tuple[str, bool, str]]:
    """What the submit button and its status line say, each time either changes.

    Told by the page itself as it changes: while the browser waits for an answer,
    Playwright reads nothing from the page until the navigation ends.
    """
    seen: list[tuple[str, bool, str]] = []
    page.expose_function("buttonChanged", lambda *state: seen.append(tuple(state)))
    page.add_init_script(
        """addEventListener("DOMContentLoaded", () => {
            const button = document.querySelector(".donate-form button[type=submit]");
            const status = document.querySelector(".donate-form [role=status]");
            const tell = () => window.buttonChanged(
                button.textContent, button.getAttribute("aria-disabled") === "true",
                status.textContent);
            const what = {attributes: true, childList: true, characterData: true, subtree: true};
            new MutationObserver(tell).observe(button, what);
            new MutationObserver(tell).observe(status, what);
        });"""
    )
    return seen


def test_the_button_says_it_is_connecting_and_sends_the_gift_once(
    page: Any, live_server: Any, slow_stripe: threading.Event, fake_stripe: FakeStripe, app: Flask
) -> None:
    # Checkout's address is one of this site's own here: a page route would not see the
    # redirect after a form sent with Enter.
    fake_stripe.checkout_url = live_server.url + "/checkout-stand-in/"
    sent = _posts_to_donate(page)
    seen = _watch_submit_button(page)
    page.goto(live_server.url + "/donate")
    button = page.locator(".donate-form button[type=submit]")
    box = button.bounding_box()
    page.fill("#other_amount", "30")
    page.keyboard.press("Enter")  # sent from the amount field, as many donors do
    busy = ("Connecting to Stripe…", True, "Connecting to Stripe…")
    for _ in range(200):  # up to 10 s for the page to tell what changed
        if seen and seen[-1] == busy:
            break
        page.wait_for_timeout(50)
    assert seen[-1] == busy

    # Stripe is slow: pressing the button, or Enter again, sends nothing more.
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert sent == [live_server.url + "/donate"]

    slow_stripe.set()
    page.wait_for_url(re.compile(r".*/checkout-stand-in/cs_test_"))
    assert len(fake_stripe.sessions_created) == 1
    with app.app_context():
        assert [d.amount for d in db.session.scalars(db.select(Donation))] == [3000]

    # Back from Checkout the button works again, however the browser brings the page back.
    page.go_back()
    expect(button).to_be_enabled()
    expect(button).to_have_text("Continue to secure payment")
    assert page.text_content(".donate-form [role=status]") == ""


def test_a_page_the_browser_brings_back_as_it_was_left_can_be_sent_again(
    page: Any, live_server: Any
) -> None:
    # A browser's back-forward cache shows the page exactly as it was left: busy. Here
    # the form is kept from leaving, and the browser's event for such a page is fired.
    page.goto(live_server.url + "/donate")
    page.eval_on_selector(
        ".donate-form", "form => form.addEventListener('submit', e => e.preventDefault())"
    )
    button = page.locator(".donate-form button[type=submit]")
    button.click()
    expect(button).to_be_disabled()
    expect(button).to_have_text("Connecting to Stripe…")
    # Busy, it keeps the keyboard's place, and reads at full strength.
    assert page.evaluate("document.activeElement.textContent") == "Connecting to Stripe…"
    assert (
        page.eval_on_selector(
            ".donate-form button[type=submit]", "b => getComputedStyle(b).opacity"
        )
        == "1"
    )
    page.evaluate("dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
    expect(button).to_be_enabled()
    expect(button).to_have_text("Continue to secure payment")
    assert page.text_content(".donate-form [role=status]") == ""
    button.click()
    expect(button).to_have_text("Connecting to Stripe…")


def test_back_from_checkout_the_form_shows_the_gift_as_it_was_left(
    page: Any, live_server: Any, fake_stripe: FakeStripe
) -> None:
    _stand_in_for_checkout(page)
    page.goto(live_server.url + "/donate")
    page.click("label[for=frequency-1]")  # monthly
    page.select_option("#currency", "GBP")
    page.fill("#other_amount", "30")
    page.click(".donate-form button[type=submit]")
    page.wait_for_url(re.compile(r"^https://checkout\.stripe\.com/"))
    page.go_back()
    page.wait_for_url(live_server.url + "/donate")
    expect(page.locator("#other_amount")).to_have_value("30")
    assert page.input_value("#currency") == "GBP"
    assert page.is_checked("#amount-4")
    expect(page.locator(".fee-example")).to_have_text("On £30.00 that adds £0.72 a month.")
    assert set(page.locator(".donate-form .cur-sym").all_text_contents()) == {"£"}


def test_choices_the_browser_puts_back_late_are_followed_by_signs_and_estimate(
    page: Any, live_server: Any
) -> None:
    # A browser may put back the choices of a page left for Stripe only after its script
    # has run, as here: changed without their events, then the page shown.
    page.goto(live_server.url + "/donate")
    page.evaluate(
        """() => {
            document.querySelector("#currency").value = "GBP";
            document.querySelector("#frequency-1").checked = true;
            document.querySelector("#amount-4").checked = true;
            document.querySelector("#other_amount").value = "30";
            dispatchEvent(new PageTransitionEvent("pageshow", {persisted: false}));
        }"""
    )
    assert page.inner_text(".fee-example") == "On £30.00 that adds £0.72 a month."
    assert set(page.locator(".donate-form .cur-sym").all_text_contents()) == {"£"}
    assert "Card fees are about 1.5% + £0.25." in page.inner_text("#fee-estimate")
    assert page.text_content(".amount-choice label[for=amount-1]") == "£25"


def test_try_again_after_stripe_failed_also_says_it_is_connecting(
    page: Any, live_server: Any, fake_stripe: FakeStripe
) -> None:
    fake_stripe.drop_next()
    page.goto(live_server.url + "/donate")
    page.click(".donate-form button[type=submit]")
    assert page.inner_text("h1") == "We could not reach our payment provider"
    page.eval_on_selector(
        "form.actions", "form => form.addEventListener('submit', e => e.preventDefault())"
    )
    button = page.get_by_role("button", name="Try again")
    button.click()
    expect(page.locator("form.actions button")).to_have_text("Connecting to Stripe…")
    expect(page.locator("form.actions button")).to_be_disabled()


@pytest.mark.parametrize(
    ("start", "key", "chosen"),
    [("#currency", "Tab", "amount-1"), ("#currency", "Shift+Tab", "frequency-0")],
    ids=["amount", "frequency"],
)
def test_a_choice_reached_by_keyboard_is_scrolled_wholly_into_view(
    page: Any, live_server: Any, start: str, key: str, chosen: str
) -> None:
    page.emulate_media(reduced_motion="reduce")
    page.goto(live_server.url + "/")
    # The button just below the bottom of the window, as when reading down the page.
    page.evaluate(
        """([start, label]) => {
            const box = document.querySelector(label).getBoundingClientRect();
            window.scrollTo(0, window.scrollY + box.top - window.innerHeight + 8);
            document.querySelector(start).focus({preventScroll: true});
        }""",
        [start, f"label[for={chosen}]"],
    )
    page.keyboard.press(key)
    assert page.evaluate("document.activeElement.id") == chosen
    box = page.evaluate(
        f"""(() => {{
            const r = document.querySelector("label[for={chosen}]").getBoundingClientRect();
            return {{top: r.top, bottom: r.bottom, height: innerHeight}};
        }})()"""
    )
    # The focus ring is drawn around the button, and shows whole with it (to within the
    # fraction of a pixel a scroll position is rounded to).
    style, ring = page.eval_on_selector(
        f"label[for={chosen}]",
        """e => { const s = getComputedStyle(e);
            return [s.outlineStyle, parseFloat(s.outlineWidth) + parseFloat(s.outlineOffset)]; }""",
    )
    assert style == "solid"
    assert box["top"] - ring >= -1, box
    assert box["bottom"] + ring <= box["height"] + 1, box


def test_the_footer_reaches_the_bottom_of_a_short_page(page: Any, live_server: Any) -> None:
    for path in ("/no-such-page", "/donate/thanks?session_id=cs_test_unknown"):
        page.goto(live_server.url + path)
        # The footer's bottom edge, measured from the top of the document, not the window.
        bottom = page.eval_on_selector(
            ".site-footer", "e => e.getBoundingClientRect().bottom + scrollY"
        )
        height = page.evaluate("innerHeight")
        scroll = page.evaluate("document.documentElement.scrollHeight")
        # Nothing below the footer: it ends where the page ends, and the page fills the window.
        assert abs(bottom - max(height, scroll)) <= 1, (path, bottom, height, scroll)


def test_a_cancelled_checkout_brings_back_the_choices(
    page: Any, live_server: Any, fake_stripe: FakeStripe
) -> None:
    _stand_in_for_checkout(page)
    page.goto(live_server.url + "/donate")
    page.fill("#other_amount", "42,50")
    page.click(".donate-form button[type=submit]")
    page.wait_for_url(re.compile(r"^https://checkout\.stripe\.com/"))
    cancel_url = fake_stripe.sessions_created[0].params["cancel_url"]
    page.goto(cancel_url.replace("http://localhost", live_server.url))
    assert "nothing was taken" in page.inner_text(".notice")
    assert page.evaluate("document.activeElement.id") == "donate-cancelled"
    assert page.title() == "Payment not completed · Donate · RENATE"
    assert page.input_value("#other_amount") == "42.50"
    assert page.is_checked("#amount-4")


def _server_estimate(app: Flask, typed: str, currency: str) -> str:
    """The estimate the server would give for a typed amount: "" for one it refuses."""
    with app.app_context():
        settings = donation_settings()
        try:
            minor = to_minor(parse_amount(typed, currency), currency)
        except ValueError:
            return ""
        if not settings.minimum_for(currency) <= to_major(minor, currency) <= settings.maximum:
            return ""
        fee = settings.fee(minor, currency)
        return f"On {format_money(minor, currency)} that adds {format_money(fee, currency)}."


# Accepted and refused alike: signs and codes, separators, places, and digits as a
# Japanese or Arabic keyboard types them (\uff13\uff10 and \u0663\u0660 are 30).
TYPED = [
    "€30", "30 EUR", "eur30", "30€", "€ 1 000", "30,5", "30.50", "\uff13\uff10", "\u0663\u0660",
    "1,000", "1.005", "30.", "$30", "30 USD", "€30$", "0.50", "20000", "3O", "",
    "1,000.50", "0.001", "-5", "99999999999999", "€ 25,-", "25,\u2013", "25.- EUR", "25,-5", "25-",
]  # fmt: skip


def test_the_fee_estimate_reads_a_typed_amount_as_the_server_does(
    page: Any, live_server: Any, app: Flask
) -> None:
    page.goto(live_server.url + "/donate")
    page.fill("#other_amount", "€30")
    # (3000 + 25) / 0.985 = 3071.06..., so 72 cents on top, as the server says.
    assert page.inner_text(".fee-example") == "On €30.00 that adds €0.72."
    assert _server_estimate(app, "€30", "EUR") == "On €30.00 that adds €0.72."
    page.fill("#other_amount", "1,000")  # a thousands separator, which the server refuses
    assert page.inner_text(".fee-example") == ""
    for typed in TYPED:
        page.fill("#other_amount", typed)
        assert page.inner_text(".fee-example") == _server_estimate(app, typed, "EUR"), typed


@pytest.mark.parametrize(
    "app", [{"DONATION_CURRENCIES": "EUR,CHF,JPY", "DONATION_MAX": "100000"}], indirect=True
)
def test_switching_currency_changes_the_fee_rule_and_the_presets_offered(
    page: Any, live_server: Any, app: Flask
) -> None:
    page.goto(live_server.url + "/donate")
    assert "Card fees are about 1.5% + €0.25." in page.inner_text("#fee-estimate")
    page.select_option("#currency", "CHF")
    assert "Card fees are about 1.5% + CHF\u00a00.25." in page.inner_text("#fee-estimate")
    assert page.inner_text(".fee-example") == "On CHF\u00a025.00 that adds CHF\u00a00.64."
    # Typed with a keyboard's space, or with the no-break space the page writes.
    for typed in ("CHF 30", "CHF\u00a030", "30\u00a0chf", "CHF\u202f30"):
        page.fill("#other_amount", typed)
        assert page.inner_text(".fee-example") == _server_estimate(app, typed, "CHF"), typed
        assert page.inner_text(".fee-example") == "On CHF\u00a030.00 that adds CHF\u00a00.72."

    # ¥10 and ¥25 are below the smallest charge Stripe takes in yen: not offered.
    page.click("label[for=amount-1]")  # 25
    page.select_option("#currency", "JPY")
    assert "Card fees are about 1.5% + ¥1." in page.inner_text("#fee-estimate")
    shown = page.locator(".amount-choice:visible label").all_text_contents()
    assert shown == ["¥50", "¥100"]
    assert not page.is_checked("#amount-1")
    assert page.inner_text(".fee-example") == ""
    page.click("label[for=amount-2]")  # 50
    assert page.inner_text(".fee-example") == _server_estimate(app, "50", "JPY")
    for typed in ("¥1000", "1,000", "1000.5", "\uff13\uff10\uff10\uff10"):
        page.fill("#other_amount", typed)
        assert page.inner_text(".fee-example") == _server_estimate(app, typed, "JPY"), typed

    page.select_option("#currency", "EUR")
    shown = page.locator(".amount-choice:visible label").all_text_contents()
    assert shown == ["€10", "€25", "€50", "€100"]


# Where each currency code in an element ends and where the number after it starts: the
# top of the code's last line box and of the number's first.
CODE_AND_NUMBER_TOPS = """
element => {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of node.data.matchAll(/[A-Z]{3}[\\s\\u00a0](?=\\d)/g)) {
      const code = document.createRange(), digit = document.createRange();
      code.setStart(node, match.index);
      code.setEnd(node, match.index + 3);
      digit.setStart(node, match.index + 4);
      digit.setEnd(node, match.index + 5);
      const codeLines = code.getClientRects(), digitLines = digit.getClientRects();
      found.push([node.data.substr(match.index, 9), codeLines[codeLines.length - 1].top,
                  digitLines[0].top]);
    }
  }
  return found;
}
"""


@pytest.mark.parametrize("app", [{"DONATION_CURRENCIES": "EUR,CHF"}], indirect=True)
def test_a_currency_code_and_its_number_share_a_line_on_a_phone(
    browser: Any, live_server: Any, app: Flask
) -> None:
    # 375 px: at this width the rule's "CHF 0.25" falls where a line ends.
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    try:
        page.goto(live_server.url + "/donate")
        page.select_option("#currency", "CHF")
        for typed in ("", "10", "1000", "5000"):
            page.fill("#other_amount", typed)
            amounts = page.locator("#fee-estimate").evaluate(CODE_AND_NUMBER_TOPS)
            assert len(amounts) == 3, typed  # the fixed part, the gift and what it adds
            for shown, code_top, number_top in amounts:
                assert code_top == number_top, (typed, shown)
    finally:
        context.close()


def test_donate_page_fits_the_viewport(page: Any, live_server: Any) -> None:
    for path in ("/", "/donate"):
        page.goto(live_server.url + path)
        assert_fits_viewport(page)


# How far the letters of each button's currency code sit from the button's middle, in px.
CODE_OFF_CENTRE = """
labels => labels.map(label => {
  const code = document.createRange();
  code.setStart(label.querySelector(".cur-sym").firstChild, 0);
  code.setEnd(label.querySelector(".cur-sym").firstChild, 3);
  const letters = code.getBoundingClientRect(), button = label.getBoundingClientRect();
  return letters.left + letters.width / 2 - (button.left + button.width / 2);
})
"""


@pytest.mark.parametrize("app", [{"DONATION_CURRENCIES": "EUR,CHF"}], indirect=True)
def test_amounts_in_a_currency_written_as_its_code_fit_their_buttons(
    browser: Any, live_server: Any, app: Flask
) -> None:
    # 360 px: the narrowest common phone, four buttons to a row.
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    try:
        page.goto(live_server.url + "/donate")
        page.select_option("#currency", "CHF")
        labels = page.locator(".amount-choice:visible label")
        assert [" ".join(t.split()) for t in labels.all_inner_texts()] == [
            "CHF 10", "CHF 25", "CHF 50", "CHF 100",
        ]  # fmt: skip
        overflowing = labels.evaluate_all(
            "labels => labels.filter(l => l.scrollWidth > l.clientWidth).map(l => l.innerText)"
        )
        assert overflowing == []
        # The code stands centred above its number, no space after it pushing it aside.
        off_centre = labels.evaluate_all(CODE_OFF_CENTRE)
        assert all(abs(offset) < 0.5 for offset in off_centre), off_centre
        assert_fits_viewport(page)
    finally:
        context.close()


def _follow_the_amount_s_link(page: Any) -> str:
    """Follow the error summary's one link; the id of the visible control it lands on."""
    page.click(".error-summary a")
    landed = page.evaluate("document.activeElement.id")
    assert landed, "the link landed on nothing that takes the focus"
    assert page.locator(f"#{landed}").evaluate("e => e.checkVisibility()"), landed
    return landed


@pytest.mark.parametrize(
    "app", [{"DONATION_CURRENCIES": "EUR,JPY", "DONATION_MAX": "100000"}], indirect=True
)
def test_without_javascript_the_amount_s_error_links_to_a_choice_on_show(
    no_script_page: Any, live_server: Any, app: Flask
) -> None:
    # Made for euros, the page offers €10 still when yen are chosen; the form comes back in
    # yen, whose presets start at ¥50.
    page = no_script_page
    page.goto(live_server.url + "/donate")
    page.select_option("#currency", "JPY")
    page.click("label[for=amount-0]")  # 10
    page.click(".donate-form button[type=submit]")
    expect(page.locator(".error-summary")).to_contain_text("in JPY is ¥50")
    assert _follow_the_amount_s_link(page) == "amount-2"  # 50
    # The amount is what is wrong: its box is marked, the currency beside it is not.
    border = "e => getComputedStyle(e).borderTopColor"
    assert page.locator("#other_amount").evaluate(border) == "rgb(164, 22, 26)"
    assert page.locator("#currency").evaluate(border) == "rgb(118, 118, 118)"


@pytest.mark.parametrize(
    "app", [{"DONATION_CURRENCIES": "EUR,JPY", "DONATION_MAX": "100000"}], indirect=True
)
def test_the_amount_s_error_links_to_a_choice_on_show_in_the_currency_chosen(
    page: Any, live_server: Any, app: Flask
) -> None:
    page.goto(live_server.url + "/donate")
    page.select_option("#currency", "JPY")  # ¥25, chosen in euros, is not offered: none is
    page.click(".donate-form button[type=submit]")
    expect(page.locator(".error-summary")).to_contain_text("Choose an amount")
    assert _follow_the_amount_s_link(page) == "amount-2"  # 50
    # Sent again in euros, with still no amount chosen: the first preset is shown again.
    page.select_option("#currency", "EUR")
    assert _follow_the_amount_s_link(page) == "amount-0"  # 10
    page.click(".donate-form button[type=submit]")
    expect(page.locator(".error-summary")).to_contain_text("Choose an amount")
    assert page.locator("#currency").input_value() == "EUR"
    assert _follow_the_amount_s_link(page) == "amount-0"
    # Yen chosen on that page hide €10; the link follows to what is shown.
    page.select_option("#currency", "JPY")
    assert _follow_the_amount_s_link(page) == "amount-2"


def test_a_long_address_in_an_error_wraps_on_the_narrowest_phone(
    browser: Any, live_server: Any
) -> None:
    context = browser.new_context(viewport={"width": 320, "height": 740})
    page = context.new_page()
    try:
        page.goto(live_server.url + "/donate")
        page.fill("#other_amount", "20000")
        page.click(".donate-form button[type=submit]")
        summary = page.locator(".error-summary")
        expect(summary).to_contain_text("please write to RENATE at privacy@renate.example.")
        error = page.locator("#other_amount-error")
        expect(error.get_by_role("link", name="privacy@renate.example")).to_have_attribute(
            "href", "mailto:privacy@renate.example"
        )
        clipped = page.locator(".error-summary li, .field-error").evaluate_all(
            "els => els.filter(e => e.scrollWidth > e.clientWidth).map(e => e.innerText)"
        )
        assert clipped == []
        assert_fits_viewport(page)
    finally:
        context.close()


def test_the_chosen_amount_and_frequency_show_in_high_contrast_mode(
    browser: Any, live_server: Any
) -> None:
    # Windows' high-contrast themes repaint every button alike unless the page says otherwise.
    context = browser.new_context(forced_colors="active")
    page = context.new_page()
    try:
        page.goto(live_server.url + "/donate")
        page.click("label[for=amount-1]")
        look = "l => getComputedStyle(l).backgroundColor"
        chosen = page.eval_on_selector("label[for=amount-1]", look)
        others = {page.eval_on_selector(f"label[for=amount-{n}]", look) for n in (0, 2, 3)}
        assert len(others) == 1 and chosen not in others
        once = page.eval_on_selector("label[for=frequency-0]", look)
        assert once != page.eval_on_selector("label[for=frequency-1]", look)
    finally:
        context.close()


def test_other_amount_takes_the_focus_when_clicked_but_not_when_arrowed_onto(
    page: Any, live_server: Any
) -> None:
    page.goto(live_server.url + "/")
    # By keyboard the arrows go on round the amounts: the box is a Tab away.
    page.focus("#amount-3")  # 100
    page.keyboard.press("ArrowRight")
    assert page.is_checked("#amount-4")
    assert page.evaluate("document.activeElement.id") == "amount-4"
    page.keyboard.press("ArrowLeft")
    assert page.is_checked("#amount-3")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "other_amount"
    # A click on "Other amount" means typing one next: the box takes the focus.
    page.click("label[for=amount-1]")
    page.click("label[for=amount-4]")
    assert page.evaluate("document.activeElement.id") == "other_amount"
