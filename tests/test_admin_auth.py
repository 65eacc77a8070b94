"""Signing in and out of /admin: the guard, sessions, timeouts and throttling."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import func, select

from microsite import auth, wait_in_words
from microsite.models import AdminUser, AuditLog, Pledge, db
from microsite.security import client_network
from tests.admin_fixtures import ADMIN_EMAIL, ADMIN_PASSWORD, page_token, sign_in
from tests.helpers import at_once, csrf_token

ANY_ARG = {"int": 1, "integer": 1, "default": "x", "string": "x", "path": "x/y", "uuid": "0" * 32}


def audit_actions(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.scalars(select(AuditLog).order_by(AuditLog.id))
        return [(row.actor, row.action) for row in rows]


def admin_urls(app: Flask) -> list[tuple[str, str]]:
    """Every admin route with every method it answers, its arguments filled in."""
    found = []
    for rule in app.url_map.iter_rules():
        # By path as well as by blueprint: a route under /admin added anywhere is walked.
        under_admin = rule.rule == "/admin" or rule.rule.startswith("/admin/")
        if rule.endpoint == "admin.login":
            continue
        if not (under_admin or rule.endpoint.startswith("admin.")):
            continue
        args = {
            name: ANY_ARG.get(type(conv).__name__.removesuffix("Converter").lower(), "x")
            for name, conv in rule._converters.items()
        }
        url = rule.build(args)[1] if args else rule.rule
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, url))
    return found


def test_the_walk_finds_the_admin_routes(app: Flask) -> None:
    urls = admin_urls(app)
    assert ("GET", "/admin/") in urls
    assert ("POST", "/admin/logout") in urls
    assert ("GET", "/admin/pledges.csv") in urls
    assert ("POST", "/admin/people/erase") in urls
    assert len(urls) >= 10


def test_the_walk_includes_admin_paths_from_outside_the_blueprint(make_app) -> None:
    app = make_app()
    app.add_url_rule("/admin/elsewhere", "elsewhere", lambda: "x", methods=["GET", "PUT"])
    assert {("GET", "/admin/elsewhere"), ("PUT", "/admin/elsewhere")} <= set(admin_urls(app))


def test_every_admin_route_sends_an_anonymous_visitor_to_sign_in(
    app: Flask, client: FlaskClient, admin_account
) -> None:
    # A valid CSRF token, so it is the guard that answers, not the CSRF check.
    token = csrf_token(client.get("/admin/login").text)
    for method, url in admin_urls(app):
        data = {"csrf_token": token, "email": ADMIN_EMAIL, "confirm": ADMIN_EMAIL}
        response = client.open(url, method=method, data=data if method != "GET" else None)
        assert response.status_code in (302, 303), (method, url, response.status_code)
        assert response.headers["Location"].startswith("/admin/login"), (method, url)
        assert response.headers["Cache-Control"] == "no-store", (method, url)
    # Nothing was done on the visitor's behalf.
    assert audit_actions(app) == []


def test_anonymous_get_remembers_where_it_was_going(client: FlaskClient) -> None:
    response = client.get("/admin/pledges?country=IT")
    assert response.headers["Location"] == "/admin/login?next=/admin/pledges?country%3DIT"


def test_search_text_is_left_out_of_the_sign_in_address(client: FlaskClient, admin_account) -> None:
    # A name or email searched for would otherwise sit in the URL, the history and the logs.
    response = client.get("/admin/donations?q=maria.rossi%40example.org&status=paid&mode=live")
    location = response.headers["Location"]
    assert "maria" not in location.lower()
    [target] = parse_qs(urlsplit(location).query)["next"]
    assert target == "/admin/donations?status=paid&mode=live"
    assert "maria" not in client.get(location).text.lower()
    # After signing in, the other filters are still there.
    assert sign_in(client, next=target).headers["Location"] == target


def test_every_admin_page_is_not_cached(admin_client: FlaskClient) -> None:
    for url in ("/admin/login", "/admin/", "/admin/pledges", "/admin/donations", "/admin/audit",
                "/admin/people", "/admin/pledges.csv", "/admin/nowhere"):  # fmt: skip
        assert admin_client.get(url).headers["Cache-Control"] == "no-store", url
    assert "no-store" not in admin_client.get("/").headers.get("Cache-Control", "")


def test_sign_in_lands_on_the_dashboard(app: Flask, client: FlaskClient, admin_account) -> None:
    response = sign_in(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/"
    page = client.get("/admin/")
    assert page.status_code == 200
    assert "Overview" in page.text
    assert ADMIN_EMAIL in page.text
    assert audit_actions(app) == [(ADMIN_EMAIL, "sign_in")]
    with app.app_context():
        assert db.session.scalar(select(AdminUser.last_login_at)) is not None


def test_email_is_matched_whatever_its_case(client: FlaskClient, admin_account) -> None:
    assert sign_in(client, email="  Staff@RENATE-Europe.net ").status_code == 303


@pytest.mark.parametrize(
    ("email", "password"),
    [(ADMIN_EMAIL, "wrong password here"), ("nobody@example.org", ADMIN_PASSWORD)],
    ids=["wrong-password", "unknown-email"],
)
def test_a_wrong_email_or_password_gets_one_generic_message(
    app: Flask, client: FlaskClient, admin_account, email: str, password: str
) -> None:
    response = sign_in(client, email=email, password=password)
    assert response.status_code == 401
    assert "That email address and password do not match an admin account." in response.text
    # The page opens on the message, not at the top with the logo and links to tab past.
    assert re.search(r'<div[^>]*tabindex="-1" autofocus id="login-error"', response.text)
    assert response.text.count("autofocus") == 1
    assert password not in response.text
    assert client.get("/admin/").status_code == 302
    [(actor, action)] = audit_actions(app)
    assert action == "sign_in_failed"
    assert actor == (ADMIN_EMAIL if email == ADMIN_EMAIL else "unknown account")


def test_failure_log_never_holds_a_password(app: Flask, client: FlaskClient, admin_account, caplog):
    # Someone types their password into the email box.
    sign_in(client, email=ADMIN_PASSWORD, password=ADMIN_PASSWORD)
    sign_in(client, email=ADMIN_EMAIL, password="not the password!")
    with app.app_context():
        stored = " ".join(f"{r.actor} {r.details}" for r in db.session.scalars(select(AuditLog)))
    assert ADMIN_PASSWORD not in stored
    assert "not the password!" not in stored
    assert ADMIN_PASSWORD not in caplog.text
    assert "not the password!" not in caplog.text


def test_a_disabled_admin_cannot_sign_in(app: Flask, client: FlaskClient, admin_account) -> None:
    with app.app_context():
        auth.set_active(ADMIN_EMAIL, False)
    assert sign_in(client).status_code == 401


def test_empty_fields_are_explained(client: FlaskClient) -> None:
    response = sign_in(client, email="", password="")
    assert response.status_code == 422
    assert "Enter your email address." in response.text
    assert "Enter your password." in response.text


def test_password_is_never_sent_back(client: FlaskClient, admin_account) -> None:
    response = sign_in(client, password="a guess that is wrong")
    assert "a guess that is wrong" not in response.text


@pytest.mark.parametrize(
    ("target", "lands"),
    [
        ("/admin/donations?status=paid", "/admin/donations?status=paid"),
        ("https://evil.example/admin/", "/admin/"),
        ("//evil.example/admin/", "/admin/"),
        ("/\\evil.example", "/admin/"),
        ("javascript:alert(1)", "/admin/"),
        ("/admin/no-such-page", "/admin/"),
        ("/admin", "/admin/"),
        ("/admin/%2F%2Fevil.example", "/admin/"),
    ],
)
def test_next_only_leads_to_our_own_paths(
    client: FlaskClient, admin_account, target: str, lands: str
) -> None:
    response = sign_in(client, next=target)
    assert response.status_code == 303
    assert response.headers["Location"] == lands


def test_sign_in_starts_a_fresh_session(app: Flask, client: FlaskClient, admin_account) -> None:
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    sign_in(client)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["admin_id"]


def test_logout_needs_a_post_with_csrf(admin_client: FlaskClient) -> None:
    assert admin_client.get("/admin/logout").status_code == 405
    assert admin_client.post("/admin/logout").status_code == 400
    assert admin_client.get("/admin/").status_code == 200


def test_logout_ends_the_session_and_a_replayed_cookie_is_refused(
    app: Flask, admin_client: FlaskClient
) -> None:
    cookie = admin_client.get_cookie("session")
    assert cookie is not None
    old_value = cookie.value
    response = admin_client.post("/admin/logout", data={"csrf_token": page_token(admin_client)})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login"
    assert "You are signed out." in admin_client.get("/admin/login").text
    assert admin_client.get("/admin/").status_code == 302

    # Someone who copied the cookie before the sign-out tries it now.
    thief = app.test_client()
    thief.set_cookie("session", old_value, domain="localhost")
    replay = thief.get("/admin/pledges")
    assert replay.status_code == 302
    assert replay.headers["Location"].startswith("/admin/login")
    assert [a for _, a in audit_actions(app)] == ["sign_in", "sign_out"]


def test_a_new_password_ends_open_sessions(app: Flask, admin_client: FlaskClient) -> None:
    with app.app_context():
        auth.set_password(ADMIN_EMAIL, "a brand new long password")
    assert admin_client.get("/admin/").status_code == 302


def _at(minutes: float) -> datetime:
    return datetime(2026, 3, 2, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)


def _signed_in_at_nine(make_app, time_machine, **config: Any) -> FlaskClient:
    """An admin signed in at the start of the frozen clock (_at(0)), on an app so set up."""
    app = make_app(**config)
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    client = app.test_client()
    time_machine.move_to(_at(0), tick=False)
    assert sign_in(client).status_code == 303
    return client


def test_idle_timeout(make_app, time_machine) -> None:
    client = _signed_in_at_nine(make_app, time_machine, ADMIN_IDLE_MINUTES=30)
    time_machine.move_to(_at(29), tick=False)
    assert client.get("/admin/").status_code == 200  # activity keeps it alive
    time_machine.move_to(_at(58), tick=False)
    assert client.get("/admin/").status_code == 200
    time_machine.move_to(_at(58 + 31), tick=False)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")
    page = client.get(response.headers["Location"]).text
    assert "You were signed out after 30 minutes without activity. Sign in again" in page


def test_a_form_sent_after_the_idle_timeout_did_nothing_and_says_so(make_app, time_machine) -> None:
    client = _signed_in_at_nine(make_app, time_machine, ADMIN_IDLE_MINUTES=30)
    token = page_token(client, "/admin/people")
    time_machine.move_to(_at(31), tick=False)
    response = client.post(
        "/admin/people/erase",
        data={"csrf_token": token, "email": "maria@example.org", "confirm": "maria@example.org"},
        headers={"Referer": "http://localhost/admin/people"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login?next=/admin/people"
    page = client.get(response.headers["Location"]).text
    assert "You were signed out after 30 minutes without activity. Nothing was changed" in page
    assert [a for _, a in audit_actions(client.application)] == ["sign_in"]  # no erasure


def test_absolute_timeout_even_when_active(make_app, time_machine) -> None:
    client = _signed_in_at_nine(
        make_app, time_machine, ADMIN_ABSOLUTE_HOURS=12, ADMIN_IDLE_MINUTES=30
    )
    minute = 0
    while minute < 12 * 60 - 20:
        minute += 20
        time_machine.move_to(_at(minute), tick=False)
        assert client.get("/admin/").status_code == 200, minute
    time_machine.move_to(_at(12 * 60 + 1), tick=False)
    response = client.get("/admin/")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).text
    assert "You were signed out: a session lasts at most 12 hours." in page


def test_sign_out_from_a_tab_opened_hours_ago_still_signs_out(make_app, time_machine) -> None:
    client = _signed_in_at_nine(
        make_app, time_machine, ADMIN_ABSOLUTE_HOURS=12, ADMIN_IDLE_MINUTES=30
    )
    old_tab = page_token(client)  # the Sign out button of a tab opened now
    for minute in range(20, 6 * 60, 20):  # busy in other tabs all afternoon
        time_machine.move_to(_at(minute), tick=False)
        assert client.get("/admin/").status_code == 200
    response = client.post("/admin/logout", data={"csrf_token": old_tab})
    assert response.status_code == 303
    assert client.get("/admin/").status_code == 302


def test_signing_out_from_an_idle_tab_ends_a_copy_kept_busy_elsewhere(
    make_app, time_machine
) -> None:
    client = _signed_in_at_nine(make_app, time_machine, ADMIN_IDLE_MINUTES=30)
    app = client.application
    sign_out_button = page_token(client)
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value, domain="localhost")
    for minute in (20, 40):  # someone else keeps the copied cookie active
        time_machine.move_to(_at(minute), tick=False)
        assert thief.get("/admin/pledges").status_code == 200
    time_machine.move_to(_at(45), tick=False)  # the admin's own tab has been idle 45 minutes
    response = client.post("/admin/logout", data={"csrf_token": sign_out_button})
    assert response.status_code == 303
    assert "You are signed out." in client.get("/admin/login").text
    time_machine.move_to(_at(50), tick=False)
    assert thief.get("/admin/pledges").status_code == 302
    assert [a for _, a in audit_actions(app)] == ["sign_in", "sign_out"]


def test_a_refused_sign_out_offers_a_page_that_exists(admin_client: FlaskClient) -> None:
    referrer = "http://localhost/admin/pledges?rhythm=daily&q=maria"
    response = admin_client.post("/admin/logout", headers={"Referer": referrer})
    assert response.status_code == 400
    assert "Nothing was changed" in response.text
    # Back to the page the form was on, its filters kept and its search text left out.
    assert 'href="/admin/pledges?rhythm=daily">Open the page again' in response.text
    # Without a referrer the POST-only address itself is never offered.
    response = admin_client.post("/admin/logout")
    assert 'href="/admin/logout"' not in response.text
    assert 'href="/admin/">Open the page again' in response.text
    assert admin_client.get("/admin/").status_code == 200  # still signed in


def test_signing_out_in_one_tab_then_another_says_signed_out(
    app: Flask, admin_client: FlaskClient
) -> None:
    second_tab = page_token(admin_client)
    first_tab = page_token(admin_client)
    admin_client.post("/admin/logout", data={"csrf_token": first_tab})
    response = admin_client.post("/admin/logout", data={"csrf_token": second_tab})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login"
    assert "You are signed out." in admin_client.get("/admin/login").text
    assert [a for _, a in audit_actions(app)] == ["sign_in", "sign_out"]


def test_a_form_sent_from_a_tab_signed_out_elsewhere_is_explained(
    app: Flask, admin_client: FlaskClient, add_pledge
) -> None:
    add_pledge("Maria Rossi", "maria@example.org")
    people_tab = page_token(admin_client, "/admin/people")
    admin_client.post("/admin/logout", data={"csrf_token": page_token(admin_client)})
    response = admin_client.post(
        "/admin/people/erase",
        data={"csrf_token": people_tab, "email": "maria@example.org",
              "confirm": "maria@example.org"},
        headers={"Referer": "http://localhost/admin/people"},
    )  # fmt: skip
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login?next=/admin/people"
    page = admin_client.get(response.headers["Location"]).text
    assert "You were signed out, in another tab or window" in page
    assert "Nothing was changed: sign in again, then send the form once more." in page
    with app.app_context():
        assert db.session.scalar(select(func.count(Pledge.id))) == 1


def _retry_seconds(text: str) -> int:
    """The wait the page asks for, in seconds, at most: "6 minutes" may mean 301 to 360."""
    match = re.search(r"try again in (\d+) (second|minute|hour)s?\.", text)
    assert match, text
    return int(match.group(1)) * {"second": 1, "minute": 60, "hour": 3600}[match.group(2)]


def test_repeated_failures_from_one_client_get_429_saying_when(make_app) -> None:
    app = make_app(LOGIN_RATE_LIMIT="3 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="100 per minute")
    client = app.test_client()
    for n in range(3):
        assert sign_in(client, email=f"guess{n}@example.org", password="x" * 12).status_code == 401
    limited = sign_in(client, email="guess9@example.org", password="x" * 12)
    assert limited.status_code == 429
    assert "too many attempts from here in a short while" in limited.text
    wait = int(limited.headers["Retry-After"])
    assert 60 < wait <= 15 * 60
    # Said in minutes, never less than the wait. The header is written a moment after the
    # page, from its own clock reading: the two may straddle a second's boundary.
    assert 0 <= _retry_seconds(limited.text) - wait < 61
    assert limited.headers["Cache-Control"] == "no-store"


def test_when_both_limits_are_spent_the_wait_given_is_the_longer(make_app, time_machine) -> None:
    app = make_app(LOGIN_RATE_LIMIT="3 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="2 per minute")
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    time_machine.move_to(_at(0), tick=False)
    client = app.test_client()
    for email in (ADMIN_EMAIL, ADMIN_EMAIL, "other@example.org"):
        assert sign_in(client, email=email, password="guessing a password").status_code == 401
    limited = sign_in(client, password="guessing a password")
    assert limited.status_code == 429
    wait = _retry_seconds(limited.text)
    assert 60 < wait <= 15 * 60 + 60
    assert wait - 60 < int(limited.headers["Retry-After"]) <= wait
    # The longer wait is this browser's own: the account's ends within the minute.
    assert "too many attempts from here in a short while" in limited.text
    # Told to wait that long, the admin who does gets in.
    time_machine.move_to(_at(0) + timedelta(seconds=wait), tick=False)
    assert sign_in(client).status_code == 303


def test_repeated_failures_for_one_account_are_throttled_but_not_for_long(
    make_app, time_machine
) -> None:
    app = make_app(LOGIN_RATE_LIMIT="100 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="3 per minute")
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    time_machine.move_to(_at(0), tick=False)
    stranger = app.test_client()
    for _ in range(3):
        assert sign_in(stranger, password="guessing a password").status_code == 401
    # The account is held, even for the right password from another client...
    admin = app.test_client()
    limited = sign_in(admin)
    assert limited.status_code == 429
    assert _retry_seconds(limited.text) <= 61
    # Not blamed on this browser: others' attempts filled the account's limit.
    assert "too many attempts to sign in to this account in a short while" in limited.text
    # ...but only for the short window: a minute later the real admin gets in.
    time_machine.move_to(_at(1.1), tick=False)
    assert sign_in(admin).status_code == 303


def _stranger(app: Flask, n: int) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"203.0.113.{n}"
    return client


def _known_browser(app: Flask, minutes: float, time_machine) -> FlaskClient:
    """A browser the admin signed in from (and then signed out of) at that minute."""
    time_machine.move_to(_at(minutes), tick=False)
    browser = app.test_client()
    assert sign_in(browser).status_code == 303
    browser.post("/admin/logout", data={"csrf_token": page_token(browser)})
    return browser


def test_a_fresh_browser_is_held_while_someone_keeps_guessing_but_a_known_one_is_not(
    make_app, time_machine
) -> None:
    app = make_app(LOGIN_RATE_LIMIT="100 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="3 per minute")
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    admin = _known_browser(app, 0, time_machine)
    # Strangers keep the account's count full, minute after minute, from many addresses.
    for minute in range(2, 6):
        time_machine.move_to(_at(minute), tick=False)
        for n in range(3):
            assert sign_in(_stranger(app, n), password="guessing a password").status_code == 401
        # A browser the admin never signed in from is held for as long as they keep at it...
        assert sign_in(app.test_client()).status_code == 429, minute
        # ...the admin's own browser, known from an earlier sign-in, is not.
        assert sign_in(admin).status_code == 303, minute
        admin.post("/admin/logout", data={"csrf_token": page_token(admin)})
    # A known browser still counts against its own client limit, and only for its own account.
    other = app.test_client()
    known = admin.get_cookie("admin_device", path="/admin/login")
    other.set_cookie("admin_device", known.value, domain="localhost", path="/admin/login")
    assert sign_in(other, email="someone@example.org", password="x" * 12).status_code == 401


def test_the_known_browser_cookie_is_signed_and_bound_to_the_account(
    make_app, time_machine
) -> None:
    app = make_app(LOGIN_RATE_LIMIT="100 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="1 per minute")
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
        auth.create_admin("other@renate-europe.net", ADMIN_PASSWORD)
    time_machine.move_to(_at(0), tick=False)
    other = app.test_client()
    assert sign_in(other, email="other@renate-europe.net").status_code == 303
    cookie = other.get_cookie("admin_device", path="/admin/login")
    assert cookie is not None and cookie.http_only
    assert ADMIN_EMAIL not in cookie.value
    other.post("/admin/logout", data={"csrf_token": page_token(other)})
    assert sign_in(app.test_client(), password="guessing a password").status_code == 401
    # Another admin's known-browser cookie, or a forged one, does not lift this account's hold.
    assert sign_in(other).status_code == 429
    forged = app.test_client()
    forged.set_cookie("admin_device", ADMIN_EMAIL, domain="localhost", path="/admin/login")
    assert sign_in(forged).status_code == 429


def test_a_new_password_makes_known_browsers_unknown(make_app, time_machine) -> None:
    app = make_app(LOGIN_RATE_LIMIT="100 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="3 per minute")
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    browser = _known_browser(app, 0, time_machine)
    new = "a brand new long password"
    result = app.test_cli_runner().invoke(
        args=["admin", "set-password", ADMIN_EMAIL], input=f"{new}\n{new}\n"
    )
    assert result.exit_code == 0, result.output
    time_machine.move_to(_at(2), tick=False)
    for n in range(3):
        assert sign_in(_stranger(app, n), password="guessing a password").status_code == 401
    # Whoever had that browser (the old password may be why it was changed) is held now.
    assert sign_in(browser, password=new).status_code == 429
    # Signing in afresh with the new password makes the browser known again.
    time_machine.move_to(_at(4), tick=False)
    assert sign_in(browser, password=new).status_code == 303
    browser.post("/admin/logout", data={"csrf_token": page_token(browser)})
    time_machine.move_to(_at(6), tick=False)
    for n in range(3):
        assert sign_in(_stranger(app, n), password="guessing a password").status_code == 401
    assert sign_in(browser, password=new).status_code == 303


def test_disabling_an_account_makes_its_known_browsers_unknown(make_app, time_machine) -> None:
    app = make_app(LOGIN_RATE_LIMIT="100 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="3 per minute")
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    browser = _known_browser(app, 0, time_machine)
    result = app.test_cli_runner().invoke(args=["admin", "disable", ADMIN_EMAIL])
    assert result.exit_code == 0, result.output
    time_machine.move_to(_at(2), tick=False)
    for n in range(3):
        assert sign_in(_stranger(app, n), password="guessing a password").status_code == 401
    # The browser is counted and held like any other: it can no longer try past the limit.
    assert sign_in(browser).status_code == 429


def test_every_attempt_counts_towards_the_client_limit_even_a_success(make_app) -> None:
    app = make_app(LOGIN_RATE_LIMIT="2 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="100 per minute")
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert sign_in(app.test_client()).status_code == 303
    assert sign_in(app.test_client()).status_code == 303
    assert sign_in(app.test_client()).status_code == 429


def test_a_known_browser_is_not_counted_against_its_account(make_app) -> None:
    app = make_app(LOGIN_RATE_LIMIT="100 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="2 per minute")
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    browser = app.test_client()
    for _ in range(4):
        assert sign_in(browser).status_code == 303
        browser.post("/admin/logout", data={"csrf_token": page_token(browser)})
    # Fresh browsers count: the first is already spent by the known browser's first sign-in.
    assert sign_in(app.test_client()).status_code == 303
    assert sign_in(app.test_client()).status_code == 429


@pytest.mark.parametrize("limit", ["client", "account"])
def test_guesses_sent_all_at_once_cannot_overrun_the_limit(make_app, limit: str) -> None:
    """Each attempt is counted before its password is checked, not after."""
    if limit == "client":
        app = make_app(
            LOGIN_RATE_LIMIT="3 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="100 per minute"
        )
    else:
        app = make_app(
            LOGIN_RATE_LIMIT="100 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="3 per minute"
        )
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    attempts = 12

    def guess(n: int) -> Callable[[], int]:
        client = app.test_client()
        if limit == "account":
            client.environ_base["REMOTE_ADDR"] = f"198.51.100.{n}"
        token = csrf_token(client.get("/admin/login").text)
        data = {"csrf_token": token, "email": ADMIN_EMAIL, "password": f"guess number {n}"}
        return lambda: client.post("/admin/login", data=data).status_code

    statuses = at_once([guess(n) for n in range(attempts)])
    assert sorted(statuses) == [401] * 3 + [429] * (attempts - 3)
    # Only three passwords were ever checked.
    assert [a for _, a in audit_actions(app)] == ["sign_in_failed"] * 3


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),  # an IPv4 client on a dual-stack socket
        ("not an address", "not an address"),
        (None, "unknown"),
    ],
)
def test_client_network(address: str | None, key: str) -> None:
    assert client_network(address) == key


def test_ipv6_clients_are_limited_by_their_64_network(make_app) -> None:
    app = make_app(LOGIN_RATE_LIMIT="2 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="100 per minute")

    def attempt(address: str) -> int:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        return sign_in(client, email="guess@example.org", password="x" * 12).status_code

    assert attempt("2001:db8:1:2::1") == 401
    assert attempt("2001:db8:1:2::abcd:5") == 401
    # A new address in the same /64 is the same client: no fresh count for each address.
    assert attempt("2001:db8:1:2:ffff:ffff:ffff:ffff") == 429
    # The next /64 over, and IPv4 addresses one apart, are other clients.
    assert attempt("2001:db8:1:3::1") == 401
    assert attempt("203.0.113.4") == 401
    assert attempt("203.0.113.4") == 401
    assert attempt("203.0.113.5") == 401


def test_signed_in_visit_to_login_goes_to_the_dashboard(admin_client: FlaskClient) -> None:
    response = admin_client.get("/admin/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


def test_invisible_characters_do_not_make_a_new_name_for_one_account(make_app) -> None:
    # The form drops zero-width and control characters before signing in, so the limit
    # must count such spellings as the same account, or each would get its own allowance.
    app = make_app(LOGIN_RATE_LIMIT="100 per 15 minutes", LOGIN_ACCOUNT_RATE_LIMIT="3 per minute")
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    local, domain = ADMIN_EMAIL.split("@")
    spellings = [
        ADMIN_EMAIL,
        f"{local}\u200b@{domain}",
        f"\x01{ADMIN_EMAIL}",
        f"{local}\u2060@{domain}",
    ]
    statuses = [
        sign_in(app.test_client(), email, "wrong password!!").status_code for email in spellings
    ]
    assert statuses == [401, 401, 401, 429]
    # Even with the right password, a new spelling is still the same, held account.
    right = sign_in(app.test_client(), f"{local}\u2060\u200b@{domain}", ADMIN_PASSWORD)
    assert right.status_code == 429


def test_an_oversized_body_to_an_admin_page_gets_the_413_page(client: FlaskClient) -> None:
    # The admin pages' shared sign-out form must not read the body the 413 refused.
    token = csrf_token(client.get("/admin/login").text)
    for url in ("/admin/login", "/admin/logout", "/admin/people/erase"):
        response = client.post(url, data={"csrf_token": token, "password": "x" * 200_000})
        assert response.status_code == 413, url
        assert "too much to send" in response.text, url
        assert response.headers["Cache-Control"] == "no-store", url


def test_an_export_asked_for_while_signed_out_comes_back_to_its_list(client: FlaskClient) -> None:
    for export, listing in (("pledges.csv", "pledges"), ("donations.csv", "donations")):
        response = client.get(f"/admin/{export}?since=2026-01-01&q=maria")
        assert response.headers["Location"] == (
            f"/admin/login?next=/admin/{listing}?since%3D2026-01-01"
        )


@pytest.mark.parametrize(
    ("target", "lands"),
    [
        ("/admin/pledges.csv", "/admin/pledges"),
        ("/admin/donations.csv?status=paid&mode=live", "/admin/donations?status=paid&mode=live"),
        # Other spellings of the same address, which a browser loads as the export.
        ("/admin/pledges%2Ecsv", "/admin/pledges"),
        ("/admin/%70ledges.csv?country=FR", "/admin/pledges?country=FR"),
        ("/admin//pledges.csv", "/admin/pledges"),
        ("/admin/./pledges.csv", "/admin/pledges"),
        ("/admin/x/../donations.csv", "/admin/donations"),
    ],
)
def test_a_sign_in_link_naming_an_export_lands_on_its_list_not_a_download(
    client: FlaskClient, admin_account, add_pledge, target: str, lands: str
) -> None:
    # A link sent in an email or put on another site: after signing in, the admin sees
    # the list, and nothing is downloaded until they press Export CSV there.
    add_pledge("Maria Rossi", "maria@example.org")
    page = client.get("/admin/login", query_string={"next": target})
    assert f'value="{escape(lands)}"' in page.text
    response = sign_in(client, next=target)
    assert response.headers["Location"] == lands
    assert response.headers["Content-Type"].startswith("text/html")
    # Signed in already, the same link does the same.
    again = client.get("/admin/login", query_string={"next": target})
    assert again.headers["Location"] == lands


def test_a_page_not_found_inside_the_admin_area_keeps_the_admin_s_menu(
    admin_client: FlaskClient,
) -> None:
    # A link cut short, or one to a page since renamed: no admin route matches it.
    page = admin_client.get("/admin/pledgs")
    assert page.status_code == 404
    assert page.headers["Cache-Control"] == "no-store"
    assert "We could not find that admin page" in page.text
    assert "The article and the forms are on the home page" not in page.text
    assert '<nav aria-label="Admin">' in page.text
    assert f'<span class="who">{ADMIN_EMAIL}</span>' in page.text
    assert '<a class="button secondary" href="/admin/">Go to the admin overview</a>' in page.text


def test_a_page_not_found_inside_the_admin_area_shows_no_menu_to_a_stranger(
    client: FlaskClient,
) -> None:
    page = client.get("/admin/pledgs")
    assert page.status_code == 404
    assert "We could not find that admin page" in page.text
    assert '<nav aria-label="Admin">' not in page.text
    assert '<a class="button secondary" href="/admin/login">Sign in</a>' in page.text


def test_an_admin_refusal_is_shown_in_the_admin_s_layout(
    admin_client: FlaskClient,
) -> None:
    refused = admin_client.get("/admin/pledges.csv", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    assert '<nav aria-label="Admin">' in refused.text
    assert "Go to the home page" not in refused.text


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(1, "1 second"), (45, "45 seconds"), (90, "90 seconds"), (91, "2 minutes"),
     (320, "6 minutes"), (900, "15 minutes"), (5400, "90 minutes"), (5401, "2 hours"),
     (3 * 3600, "3 hours")],
)  # fmt: skip
def test_a_wait_is_said_in_words_never_shorter_than_it_is(seconds: int, said: str) -> None:
    assert wait_in_words(seconds) == said
