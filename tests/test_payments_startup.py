"""Start-up: test mode is the mode; a live key needs the operator's explicit word."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import stripe
from flask import Flask
from sqlalchemy import select

import microsite
from microsite import config, create_app
from microsite.config import DEFAULTS, SettingsError
from microsite.models import Donation, DonationStatus, db
from microsite.payments import LiveKeyRefused, StripeSettingsError
from tests.helpers import post_form
from tests.stripe_fake import FAKE_API_BASE, WEBHOOK_SECRET, FakeStripe, make_event, post_event

BANNER = "No real money is taken."


def test_without_a_key_the_site_runs_with_no_banner(app: Flask) -> None:
    assert "stripe" not in app.extensions
    client = app.test_client()
    for path in ("/", "/donate", "/pledge"):
        page = client.get(path)
        assert page.status_code == 200
        assert BANNER not in page.text


@pytest.mark.parametrize("key", ["sk_test_abc123", "rk_test_abc123"])
def test_a_test_key_shows_the_test_mode_banner_on_every_page(make_app, key: str) -> None:
    app = make_app(STRIPE_SECRET_KEY=key)
    assert app.extensions["stripe_mode"] == "test"
    client = app.test_client()
    for path in ("/", "/donate", "/pledge", "/pledge/thanks", "/no-such-page"):
        assert BANNER in client.get(path).text


def test_the_test_mode_banner_is_inside_the_page_header(make_app) -> None:
    """A screen reader moving by landmarks meets it in the header, not in no landmark at all."""
    client = make_app(STRIPE_SECRET_KEY="sk_test_abc123").test_client()
    for path in ("/", "/donate", "/admin/login", "/no-such-page"):
        page = client.get(path).text
        header = re.search(r'<header class="site-header">(.*?)</header>', page, re.S)
        assert header is not None and BANNER in header.group(1), path


@pytest.mark.parametrize("key", ["sk_live_abc123", "rk_live_abc123"])
def test_a_live_key_stops_the_app_with_a_clear_message(make_app, key: str) -> None:
    with pytest.raises(LiveKeyRefused) as refused:
        make_app(STRIPE_SECRET_KEY=key)
    assert isinstance(refused.value, RuntimeError)
    message = str(refused.value)
    assert "live key" in message
    assert "STRIPE_ALLOW_LIVE=1" in message
    assert key not in message  # never echo a secret


def test_a_live_key_with_the_allow_flag_starts_without_the_banner(make_app) -> None:
    app = make_app(STRIPE_SECRET_KEY="sk_live_abc123", STRIPE_ALLOW_LIVE=True)
    assert app.extensions["stripe_mode"] == "live"
    assert BANNER not in app.test_client().get("/").text


@pytest.fixture
def from_the_environment(monkeypatch, tmp_path: Path) -> Iterator[Callable[[], Flask]]:
    """create_app as a server starts it: no test settings, everything from the environment.

    The environment is emptied of the site's settings first, and a developer's own .env
    is not read, so only what a test sets decides.
    """
    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(microsite, "load_dotenv", lambda *args, **kwargs: False)
    monkeypatch.setattr(config, "INSTANCE", tmp_path / "instance")
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-not-for-production")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_live_abc123")
    made: list[Flask] = []

    def start() -> Flask:
        made.append(create_app())
        return made[-1]

    yield start
    for app in made:
        with app.app_context():
            db.engine.dispose()


@pytest.mark.parametrize("allow", ["1", "true", "yes"])
def test_stripe_allow_live_in_the_environment_lets_a_live_key_start(
    from_the_environment: Callable[[], Flask], monkeypatch, allow: str
) -> None:
    monkeypatch.setenv("STRIPE_ALLOW_LIVE", allow)
    monkeypatch.setenv("SITE_URL", "https://donate.example.org")
    app = from_the_environment()
    assert app.extensions["stripe_mode"] == "live"
    assert BANNER not in app.test_client().get("/pledge").text


def test_a_live_key_needs_the_site_s_own_address(
    from_the_environment: Callable[[], Flask], monkeypatch
) -> None:
    # Otherwise a request naming another host would make Stripe send donors there.
    monkeypatch.setenv("STRIPE_ALLOW_LIVE", "1")
    with pytest.raises(StripeSettingsError, match="SITE_URL"):
        from_the_environment()


@pytest.mark.parametrize("allow", [None, "0", "", "false"])
def test_without_stripe_allow_live_in_the_environment_a_live_key_stops_the_start(
    from_the_environment: Callable[[], Flask], monkeypatch, allow: str | None
) -> None:
    if allow is not None:
        monkeypatch.setenv("STRIPE_ALLOW_LIVE", allow)
    with pytest.raises(LiveKeyRefused, match="STRIPE_ALLOW_LIVE=1"):
        from_the_environment()


@pytest.mark.parametrize("allow", ['"0"', '"false"', '""', "False"])
def test_a_quoted_no_in_the_instance_settings_file_still_stops_a_live_key(
    from_the_environment: Callable[[], Flask], monkeypatch, tmp_path: Path, allow: str
) -> None:
    # "0" in quotes is a non-empty string: taken as it was written, it let real money in.
    monkeypatch.setenv("SITE_URL", "https://donate.example.org")
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "settings.py").write_text(f"STRIPE_ALLOW_LIVE = {allow}\n")
    with pytest.raises(LiveKeyRefused, match="STRIPE_ALLOW_LIVE=1"):
        from_the_environment()


def test_a_quoted_yes_in_the_instance_settings_file_lets_a_live_key_start(
    from_the_environment: Callable[[], Flask], monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SITE_URL", "https://donate.example.org")
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "settings.py").write_text('STRIPE_ALLOW_LIVE = "1"\n')
    assert from_the_environment().extensions["stripe_mode"] == "live"


@pytest.mark.parametrize("key", ["pk_test_abc123", "whsec_abc", "not-a-key"])
def test_something_that_is_not_a_secret_key_is_refused(make_app, key: str) -> None:
    with pytest.raises(StripeSettingsError, match="should start with sk_test_"):
        make_app(STRIPE_SECRET_KEY=key)


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("sk_test_51HabcDEF…", "'…' (U+2026) at character 18"),
        ("sk_test_51Habc DEF", "a space at character 15"),
        ("sk_test_51Habc\u200bDEF", "U+200B at character 15"),
        ("rk_live_51Habc-DEF", "'-' at character 15"),
        ("sk_test_", "nothing after sk_test_"),
    ],
)
def test_a_secret_key_with_a_character_no_stripe_key_has_stops_the_start(
    make_app, key: str, said: str
) -> None:
    # Copied cut short or with a space, it was taken, and every donation then failed as if
    # Stripe could not be reached.
    with pytest.raises(StripeSettingsError) as refused:
        make_app(STRIPE_SECRET_KEY=key, STRIPE_ALLOW_LIVE=True, SITE_URL="https://d.example.org")
    message = str(refused.value)
    assert message.startswith("STRIPE_SECRET_KEY has ")
    assert said in message
    assert "Copy it again" in message
    assert "51Habc" not in message  # never echo a secret


@pytest.mark.parametrize(
    ("secret", "said"),
    [
        (WEBHOOK_SECRET[:12] + "…", "'…' (U+2026) at character 13"),
        (WEBHOOK_SECRET[:12] + " " + WEBHOOK_SECRET[12:], "a space at character 13"),
        (WEBHOOK_SECRET[:12] + "\t" + WEBHOOK_SECRET[12:], "a tab at character 13"),
    ],
)
def test_a_webhook_secret_with_a_character_no_secret_has_stops_the_start(
    make_app, secret: str, said: str
) -> None:
    # Every event would be refused as badly signed, and no gift ever confirmed as paid.
    for key in ("sk_test_abc123", ""):
        with pytest.raises(StripeSettingsError) as refused:
            make_app(STRIPE_SECRET_KEY=key, STRIPE_WEBHOOK_SECRET=secret)
        message = str(refused.value)
        assert message.startswith("STRIPE_WEBHOOK_SECRET has ")
        assert said in message
        assert WEBHOOK_SECRET[6:12] not in message


def test_a_webhook_secret_of_stripe_s_own_characters_starts(make_app) -> None:
    app = make_app(STRIPE_SECRET_KEY="sk_test_abc123", STRIPE_WEBHOOK_SECRET="whsec_aB3+/=_-x")
    assert app.extensions["stripe_mode"] == "test"


def test_live_donations_record_livemode(make_app, fake_stripe: FakeStripe) -> None:
    app = make_app(
        STRIPE_SECRET_KEY="sk_live_abc123",
        STRIPE_ALLOW_LIVE=True,
        STRIPE_HTTP_CLIENT=fake_stripe,
        STRIPE_MAX_NETWORK_RETRIES=0,
    )
    client = app.test_client()
    response = post_form(
        client, "/donate", {"frequency": "one_time", "currency": "EUR", "amount": "10"}
    )
    assert response.status_code == 303
    with app.app_context():
        gift = db.session.scalars(select(Donation)).one()
        assert gift.livemode is True
        gift.status = DonationStatus.PAID
        session_id = gift.stripe_session_id
        db.session.commit()
    # Stripe emails a receipt for a live payment, and the thank-you page says so.
    page = client.get(f"/donate/thanks?session_id={session_id}")
    assert "Stripe sends your receipt by email." in page.text
    assert "test payment" not in page.text


def test_api_base_lets_a_fake_or_local_server_stand_in(
    stripe_app: Flask, fake_stripe: FakeStripe
) -> None:
    client = stripe_app.test_client()
    post_form(client, "/donate", {"frequency": "one_time", "currency": "EUR", "amount": "10"})
    assert [r.url for r in fake_stripe.requests] == [f"{FAKE_API_BASE}/v1/checkout/sessions"]


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("DONATION_MIN", "one euro", "DONATION_MIN must be a number"),
        ("DONATION_MIN", "NaN", "DONATION_MIN must be a number"),
        ("DONATION_MAX", "Infinity", "DONATION_MAX must be a number"),
        ("DONATION_FEE_PERCENT", "-inf", "DONATION_FEE_PERCENT must be a number"),
        ("DONATION_PRESETS", "10,sNaN", "DONATION_PRESETS must be a number"),
        ("DONATION_FEE_PERCENT", "100", "DONATION_FEE_PERCENT must be at least 0 and below 100"),
        ("DONATION_FEE_PERCENT", "-1", "DONATION_FEE_PERCENT must be at least 0 and below 100"),
        ("DONATION_FEE_FIXED", "-0.25", "DONATION_FEE_FIXED must be 0 or more"),
        ("DONATION_MIN", "0", "DONATION_MIN must be more than 0"),
        ("DONATION_MIN", "-5", "DONATION_MIN must be more than 0"),
        ("DONATION_MAX", "0.5", "DONATION_MAX (0.5) must be at least DONATION_MIN (1)"),
        ("DONATION_PRESETS", "10,25,50,20000", "DONATION_PRESETS: 20000 is outside"),
        ("DONATION_PRESETS", "0.50,10", "DONATION_PRESETS: 0.50 is outside"),
        (
            "DONATION_PRESETS",
            "10,12.345",
            "DONATION_PRESETS: 12.345 has more decimal places than EUR has (2)",
        ),
        ("DONATION_MIN", "1.005", "DONATION_MIN: 1.005 has more decimal places than EUR has (2)"),
        ("DONATION_MAX", "9999.999", "DONATION_MAX: 9999.999 has more decimal places"),
        # Stripe takes at most eight digits of cents: a larger gift could never be paid.
        ("DONATION_MAX", "999999.99", "DONATION_MAX (999999.99) with the card fee is more"),
    ],
)
def test_a_mistyped_or_out_of_range_donation_setting_stops_the_start_with_its_name(
    make_app, setting: str, value: str, message: str
) -> None:
    # Each would otherwise reach donors: a fee of 100% divides by zero, a negative one
    # charges less than the gift, a preset outside the limits is one nobody can choose.
    with pytest.raises(StripeSettingsError, match=re.escape(message)):
        make_app(**{setting: value})


@pytest.mark.parametrize(
    ("setting", "value"), [("DONATION_PRESETS", "7.50,25"), ("DONATION_MIN", "1.5")]
)
def test_an_amount_with_cents_stops_the_start_when_a_whole_unit_currency_is_offered(
    make_app, setting: str, value: str
) -> None:
    # ¥7.50 does not exist: Stripe would be asked for ¥8 while the button said 7.50.
    with pytest.raises(StripeSettingsError) as refused:
        make_app(DONATION_CURRENCIES="EUR,JPY", DONATION_MAX="100000", **{setting: value})
    number = value.split(",")[0]
    assert str(refused.value).startswith(
        f"{setting}: {number} has more decimal places than JPY has (0)"
    )


def test_trailing_zeros_are_not_decimal_places(make_app) -> None:
    app = make_app(
        DONATION_CURRENCIES="EUR,JPY", DONATION_PRESETS="100.00,250", DONATION_MAX="100000"
    )
    assert app.extensions["donation_settings"].presets == (Decimal(100), Decimal(250))


def test_settings_at_their_edges_are_accepted(make_app) -> None:
    # The largest gift Stripe takes, €999,999.99, with no fee to add to it.
    assert make_app(DONATION_FEE_PERCENT="0", DONATION_FEE_FIXED="0", DONATION_MAX="999999.99")
    app = make_app(
        DONATION_FEE_PERCENT="0",
        DONATION_FEE_FIXED="0",
        DONATION_MIN="5",
        DONATION_MAX="5",
        DONATION_PRESETS="5",
    )
    assert app.extensions["donation_settings"].presets == (Decimal(5),)


@pytest.mark.parametrize("code", ["BHD", "JOD", "KWD", "OMR", "TND"])
def test_a_three_decimal_currency_stops_the_start(make_app, code: str) -> None:
    # 25.000 BHD is 25000 in Stripe's units; this site would send 2500 and take a tenth.
    with pytest.raises(StripeSettingsError, match=f"DONATION_CURRENCIES: {code} has three"):
        make_app(DONATION_CURRENCIES=f"EUR,{code}")
    with pytest.raises(StripeSettingsError, match="ten times too little"):
        make_app(DONATION_DEFAULT_CURRENCY=code)


@pytest.mark.parametrize("code", ["ISK", "HUF", "TWD", "UGX"])
def test_a_currency_with_special_rules_at_stripe_stops_the_start(make_app, code: str) -> None:
    with pytest.raises(StripeSettingsError, match=f"cannot take gifts in {code}"):
        make_app(DONATION_CURRENCIES=f"EUR,{code}")


@pytest.mark.parametrize("code", ["EURO", "€", "E1R"])
def test_a_currency_that_is_not_a_code_stops_the_start(make_app, code: str) -> None:
    with pytest.raises(StripeSettingsError, match="not a three-letter currency code"):
        make_app(DONATION_CURRENCIES=f"EUR,{code}")


@pytest.mark.parametrize("code", ["GPB", "EUO", "USS"])
def test_a_mistyped_currency_stops_the_start(make_app, code: str) -> None:
    # Offered on the form, it would have every gift in it refused by Stripe.
    with pytest.raises(StripeSettingsError, match=f"{code} is not a currency code"):
        make_app(DONATION_CURRENCIES=f"EUR,{code}")


@pytest.mark.parametrize(
    ("code", "real"),
    [("CHE", "CHF"), ("CHW", "CHF"), ("USN", "USD"), ("CLF", "CLP"), ("COU", "COP"),
     ("MXV", "MXN"), ("UYI", "UYU"), ("UYW", "UYU"), ("BOV", "BOB")],
)  # fmt: skip
def test_a_fund_code_stops_the_start_and_names_the_money_it_goes_with(
    make_app, code: str, real: str
) -> None:
    # ISO 4217 lists them, yet no donor pays in them: Stripe would refuse every such gift.
    with pytest.raises(StripeSettingsError) as refused:
        make_app(DONATION_CURRENCIES=f"EUR,{code}")
    message = str(refused.value)
    assert message.startswith(f"DONATION_CURRENCIES: {code} (")
    assert "is a fund code" in message and message.endswith(f"use {real}.")


@pytest.mark.parametrize("code", ["XXX", "XTS", "XAU", "XAG", "XPT", "XDR", "XBA", "XSU", "XUA"])
def test_gold_testing_and_no_currency_codes_stop_the_start(make_app, code: str) -> None:
    with pytest.raises(StripeSettingsError, match=f"{code} .* is not money donors pay with"):
        make_app(DONATION_CURRENCIES=f"EUR,{code}")
    with pytest.raises(StripeSettingsError, match=f"DONATION_DEFAULT_CURRENCY: {code} "):
        make_app(DONATION_DEFAULT_CURRENCY=code)


@pytest.mark.parametrize("code", ["XOF", "XAF", "XPF", "XCD"])
def test_the_countries_money_among_the_x_codes_is_offered(make_app, code: str) -> None:
    app = make_app(DONATION_CURRENCIES=f"EUR,{code}")
    assert f'<option value="{code}">{code}</option>' in app.test_client().get("/donate").text


@pytest.mark.parametrize(
    "url",
    [
        "billing.stripe.com/p/login/test_renate",
        "http://billing.stripe.com/p/login/test_renate",
        "https://",
        "javascript:alert(1)",
    ],
)
def test_a_donor_portal_link_that_is_not_https_stops_the_start(make_app, url: str) -> None:
    # Donors follow it to manage a gift that takes their money every month.
    with pytest.raises(StripeSettingsError, match="DONOR_PORTAL_URL must be an https:// address"):
        make_app(STRIPE_SECRET_KEY="sk_test_abc123", DONOR_PORTAL_URL=url)
    portal = "https://billing.stripe.com/p/login/test_renate"
    app = make_app(STRIPE_SECRET_KEY="sk_test_abc123", DONOR_PORTAL_URL=f"  {portal} ")
    assert f'href="{portal}"' in app.test_client().get("/").text


def test_the_stripe_client_gives_up_on_an_attempt_well_before_a_worker_is_killed(
    make_app,
) -> None:
    app = make_app(STRIPE_SECRET_KEY="sk_test_abc123")
    http_client = app.extensions["stripe_http_client"]
    assert isinstance(http_client, stripe.RequestsClient)
    connect, read = http_client._timeout
    assert (connect, read) == (2.0, 5.0)
    attempts = app.config["STRIPE_MAX_NETWORK_RETRIES"] + 1
    assert attempts == 3


def test_a_timeout_the_workers_could_not_wait_for_stops_the_start(make_app) -> None:
    with pytest.raises(StripeSettingsError, match="STRIPE_TIMEOUT=20 with STRIPE_MAX_NETWORK"):
        make_app(STRIPE_SECRET_KEY="sk_test_abc123", STRIPE_TIMEOUT=20)
    with pytest.raises(StripeSettingsError, match="could keep a donor waiting 42 seconds"):
        make_app(STRIPE_SECRET_KEY="sk_test_abc123", STRIPE_MAX_NETWORK_RETRIES=4)
    app = make_app(
        STRIPE_SECRET_KEY="sk_test_abc123", STRIPE_TIMEOUT="10", STRIPE_MAX_NETWORK_RETRIES=0
    )
    assert app.extensions["stripe_http_client"]._timeout == (2.0, 10.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"STRIPE_TIMEOUT": "5s"}, "STRIPE_TIMEOUT must be a number"),
        ({"STRIPE_TIMEOUT": "0"}, "STRIPE_TIMEOUT must be more than 0"),
        ({"STRIPE_MAX_NETWORK_RETRIES": -1}, "STRIPE_MAX_NETWORK_RETRIES must be 0 or more"),
        ({"STRIPE_TIMEOUT": "30"}, "STRIPE_TIMEOUT=30 with STRIPE_MAX_NETWORK_RETRIES=2"),
    ],
)
def test_stripe_s_timing_settings_are_checked_before_a_key_is_given(
    make_app, overrides: dict[str, object], message: str
) -> None:
    # Settings made ready before the key: the mistake shows then, not the day the key goes in.
    with pytest.raises(StripeSettingsError, match=re.escape(message)):
        make_app(**overrides)


@pytest.mark.parametrize("retries", [1025, 99_999_999_999])
def test_a_huge_number_of_retries_stops_the_start_with_the_same_plain_message(
    make_app, retries: int
) -> None:
    with pytest.raises(StripeSettingsError) as refused:
        make_app(STRIPE_SECRET_KEY="sk_test_abc123", STRIPE_MAX_NETWORK_RETRIES=retries)
    assert str(refused.value).startswith(
        f"STRIPE_TIMEOUT=5 with STRIPE_MAX_NETWORK_RETRIES={retries} could keep a donor waiting "
    )
    assert "Lower one of them." in str(refused.value)


def test_settings_from_a_mounted_secret_file_lose_their_newline(
    from_the_environment: Callable[[], Flask], monkeypatch, database_uri: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_uri)  # with its tables
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_abc123\n")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET + "\n")
    monkeypatch.setenv("SITE_URL", "https://donate.example.org\n")
    app = from_the_environment()
    assert app.config["SITE_URL"] == "https://donate.example.org"
    client = app.test_client()
    # Signed with the secret itself: before, every real event was refused as invalid.
    assert post_event(client, make_event("customer.created", {"id": "cus_1"})).status_code == 200
    assert '<link rel="canonical" href="https://donate.example.org/">' in client.get("/").text


def test_return_addresses_given_to_stripe_never_carry_a_stray_newline(
    make_app, stripe_config: dict, fake_stripe: FakeStripe
) -> None:
    app = make_app(**stripe_config, SITE_URL=" https://donate.example.org/\n")
    post_form(app.test_client(), "/donate", {"frequency": "one_time", "currency": "EUR",
                                             "amount": "25"})  # fmt: skip
    [created] = fake_stripe.sessions_created
    assert created.params["success_url"] == (
        "https://donate.example.org/donate/thanks?session_id={CHECKOUT_SESSION_ID}"
    )


@pytest.mark.parametrize("url", ["donate.example.org", "ftp://donate.example.org", "https://"])
def test_a_site_url_without_its_scheme_and_host_stops_the_start(make_app, url: str) -> None:
    with pytest.raises(SettingsError, match="SITE_URL must be the site's public address"):
        make_app(SITE_URL=url)


def test_a_webhook_secret_that_is_not_one_is_pointed_out(make_app, caplog) -> None:
    make_app(STRIPE_SECRET_KEY="sk_test_abc123", STRIPE_WEBHOOK_SECRET="sk_test_abc123")
    assert "STRIPE_WEBHOOK_SECRET does not start with whsec_" in caplog.text
