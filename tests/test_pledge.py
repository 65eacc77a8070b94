"""Prayer pledges: from the form to the database, and back out as a thank-you."""

from __future__ import annotations

import hashlib
import html as html_lib
import http.client
import io
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from microsite.forms import CONSENT_TEXT, CONSENT_VERSION
from microsite.models import Pledge, db
from tests.helpers import at_once, csrf_token, note_text, post_form, told_wait

VALID = {
    "name": "Maria Rossi",
    "email": "maria@example.org",
    "country": "IT",
    "rhythm": "daily",
    "intention": "For the children of Albania",
    "consent": "y",
}


def pledges(app: Flask) -> list[Pledge]:
    with app.app_context():
        return list(db.session.scalars(select(Pledge).order_by(Pledge.id)))


def count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Pledge.id)))


def test_form_shows_every_field_with_consent_unticked(client: FlaskClient) -> None:
    page = client.get("/pledge")
    assert page.status_code == 200
    html = page.text
    for field in ("name", "email", "country", "rhythm", "intention", "show_publicly", "consent"):
        assert f'name="{field}"' in html
    consent = re.search(r'<input[^>]*id="consent"[^>]*>', html).group(0)
    public = re.search(r'<input[^>]*id="show_publicly"[^>]*>', html).group(0)
    assert "checked" not in consent
    assert "checked" not in public
    assert "International Day of Prayer and Awareness against Human Trafficking" in html
    assert "I agree that RENATE may keep my name" in html
    assert ">Italy</option>" in html


def test_valid_pledge_is_stored_then_thanked(app: Flask, client: FlaskClient) -> None:
    before = datetime.now(UTC)
    response = post_form(client, "/pledge", VALID)
    assert response.status_code == 303
    assert response.headers["Location"] == "/pledge/thanks"

    [pledge] = pledges(app)
    assert pledge.name == "Maria Rossi"
    assert pledge.name_key == "maria rossi"  # what the admin search looks in
    assert pledge.email == "maria@example.org"
    assert pledge.country == "IT"
    assert pledge.rhythm == "daily"
    assert pledge.intention == "For the children of Albania"
    assert pledge.show_publicly is False
    assert pledge.consent_version == "2026-11-pledge-v1"
    assert before - timedelta(seconds=1) <= pledge.consented_at <= datetime.now(UTC)

    thanks = client.get("/pledge/thanks")
    assert "Thank you for pledging to pray" in thanks.text
    assert '<span class="counter-number">1</span>' in thanks.text


def test_pledge_from_the_home_page_form(app: Flask, client: FlaskClient) -> None:
    response = post_form(client, "/pledge", VALID, form_page="/")
    assert response.status_code == 303
    assert count(app) == 1


def test_stores_nothing_more_than_the_form_asks(app: Flask) -> None:
    columns = set(Pledge.__table__.columns.keys())
    # The keys are the name and the address again, folded to be searched: nothing new.
    assert columns == {
        "id", "name", "name_key", "email", "email_key", "country", "rhythm", "intention",
        "show_publicly", "consent_version", "consented_at", "created_at",
    }  # fmt: skip


def test_public_opt_in_is_kept(app: Flask, client: FlaskClient) -> None:
    post_form(client, "/pledge", {**VALID, "show_publicly": "y"})
    assert pledges(app)[0].show_publicly is True


@pytest.mark.parametrize("value", ["0", "off", "no", "n", "False"])
def test_a_script_s_no_to_being_shown_is_read_as_no(
    app: Flask, client: FlaskClient, value: str
) -> None:
    post_form(client, "/pledge", {**VALID, "show_publicly": value})
    assert pledges(app)[0].show_publicly is False
    counter = client.get("/").text.split('class="counter-box"')[1].split("</div>")[0]
    assert "Maria" not in counter


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"name": ""}, "name", "Tell us your name"),
        ({"name": "   "}, "name", "Tell us your name"),
        ({"name": "\u200b\u200b"}, "name", "Tell us your name"),
        ({"name": "-- ..."}, "name", "Tell us your name in letters"),
        ({"name": "\u3164"}, "name", "Tell us your name in letters"),  # a blank Hangul letter
        ({"name": "\u115f\uffa0"}, "name", "Tell us your name in letters"),
        ({"name": "x" * 101}, "name", "at most 100 characters"),
        ({"email": ""}, "email", "Enter your email address"),
        ({"email": "maria"}, "email", "Enter an email address like"),
        ({"email": "maria@@example.org"}, "email", "Enter an email address like"),
        ({"email": "maria@example"}, "email", "Enter an email address like"),
        ({"email": "m" * 65 + "@example.org"}, "email", "too long to be an email address"),
        ({"email": "m" * 250 + "@example.org"}, "email", "That email address is too long."),
        ({"country": "XX"}, "country", "Choose a country from the list"),
        ({"rhythm": ""}, "rhythm", "Choose how you will pray"),
        ({"rhythm": "hourly"}, "rhythm", "Choose how you will pray"),
        ({"intention": "y" * 501}, "intention", "at most 500 characters"),
        ({"consent": ""}, "consent", "only keep your pledge with your agreement"),
        ({"consent": "0"}, "consent", "only keep your pledge with your agreement"),
    ],
)
def test_bad_input_comes_back_with_values_and_a_message(
    app: Flask, client: FlaskClient, change: dict[str, str], field: str, message: str
) -> None:
    data = {k: v for k, v in {**VALID, **change}.items() if v != ""}
    response = post_form(client, "/pledge", data)
    assert response.status_code == 422
    html = response.text
    assert f'id="{field}-error"' in html
    note = html.split(f'id="{field}-error"')[1].split("</p>")[0]
    assert message in note
    if "too long" in message:  # one message at a time: not also "like name@example.org"
        assert "Enter an email address like" not in note
    assert 'aria-invalid="true"' in html
    # What they typed is still there.
    if field != "name":
        assert 'value="Maria Rossi"' in html
    if field not in ("intention",):
        assert "For the children of Albania</textarea>" in html
    # What they typed, and their intention, for no cache to keep (a shared computer).
    assert response.headers["Cache-Control"] == "no-store"
    assert count(app) == 0


def test_same_email_in_other_case_adds_nothing_and_changes_nothing(
    app: Flask, client: FlaskClient
) -> None:
    first = post_form(client, "/pledge", VALID)
    second = post_form(
        client,
        "/pledge",
        {**VALID, "name": "Someone Else", "email": "MARIA@Example.ORG", "rhythm": "weekly"},
    )
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    [pledge] = pledges(app)
    assert pledge.name == "Maria Rossi"
    assert pledge.rhythm == "daily"


def test_the_consent_text_and_its_version_change_together() -> None:
    # The version stored with each pledge is the record of what was agreed to. Changing the
    # words means a new CONSENT_VERSION, and then this digest with it.
    digest = hashlib.sha256(CONSENT_TEXT.encode()).hexdigest()
    assert (CONSENT_VERSION, digest[:16]) == ("2026-11-pledge-v1", "47326efeca72f0fb")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("Maria\x00 Rossi", "Maria Rossi"),
        ("Maria\tRossi\r\n", "Maria Rossi"),
        ("Maria\u200b Rossi\u202e", "Maria Rossi"),
        (
            "\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627",
            "\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627",
        ),
    ],
    ids=["nul", "line-breaks", "invisible-marks", "persian-joiner-kept"],
)
def test_control_characters_never_reach_the_database(
    app: Flask, client: FlaskClient, sent: str, stored: str
) -> None:
    # PostgreSQL refuses NUL outright; no one types one, or a zero-width space, on purpose.
    response = post_form(client, "/pledge", {**VALID, "name": sent, "intention": "For\x00 all"})
    assert response.status_code == 303
    [pledge] = pledges(app)
    assert (pledge.name, pledge.intention) == (stored, "For all")


def test_an_intention_that_fits_the_box_is_never_too_long(app: Flask, client: FlaskClient) -> None:
    # Five lines filling the 500-character box: browsers count each line break as one
    # character, then send it as two.
    intention = "\r\n".join(["x" * 99] * 5) + "x"
    response = post_form(client, "/pledge", {**VALID, "intention": intention})
    assert response.status_code == 303
    assert pledges(app)[0].intention == intention.replace("\r\n", "\n")


def test_json_is_not_a_way_round_the_form(app: Flask, client: FlaskClient) -> None:
    token = csrf_token(client.get("/pledge").text)
    response = client.post("/pledge", json=VALID, headers={"X-CSRFToken": token})
    assert response.status_code == 415
    assert "takes only its own form" in response.text
    assert count(app) == 0


@pytest.mark.parametrize(
    "name",
    [b"\xff\xfeMaria", b"%FF%FEMaria", b"Ren%E9e"],
    ids=["raw-bytes", "percent-encoded", "latin-1"],
)
def test_a_form_not_sent_in_utf8_is_refused_not_stored_as_mangled_text(
    app: Flask, client: FlaskClient, name: bytes
) -> None:
    # Every page here is UTF-8, so a browser never sends this; a script might. Its bytes
    # would otherwise be kept as the text "%FF%FEMaria", or the whole form read as empty.
    token = csrf_token(client.get("/pledge").text)
    fields = {k: v for k, v in VALID.items() if k != "name"}
    body = f"csrf_token={token}&" + "&".join(f"{k}={v}" for k, v in fields.items())
    response = client.post(
        "/pledge",
        data=body.replace("@", "%40").encode() + b"&name=" + name,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert "Something in that request was not right" in response.text
    assert count(app) == 0


def test_a_form_in_utf8_sent_by_hand_is_taken(app: Flask, client: FlaskClient) -> None:
    token = csrf_token(client.get("/pledge").text)
    fields = {**VALID, "name": "Zo\u00eb"}
    body = f"csrf_token={token}&" + "&".join(f"{k}={v}" for k, v in fields.items())
    response = client.post(
        "/pledge", data=body.encode(), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 303
    assert pledges(app)[0].name == "Zo\u00eb"


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("text/plain", 415), ("application/xml", 415), ("multipart/form-data", 400)],
    ids=["text", "xml", "multipart-without-boundary"],
)
def test_a_body_that_is_not_a_form_is_refused_plainly(
    app: Flask, client: FlaskClient, content_type: str, status: int
) -> None:
    # Not the "reload the form" page, which would blame the visitor's cookie.
    response = client.post("/pledge", data=b"name=Maria", content_type=content_type)
    assert response.status_code == status
    assert "reload" not in response.text.lower()
    assert count(app) == 0


@pytest.mark.parametrize("field", ["name", "email", "intention", "consent"])
def test_a_field_sent_as_a_file_is_not_taken_for_it(
    app: Flask, client: FlaskClient, field: str
) -> None:
    # No form here takes a file: one sent in a field's place is as if the field were left
    # empty. A required one is asked for again; consent is never given by a file.
    token = csrf_token(client.get("/pledge").text)
    data = {"csrf_token": token, **{k: v for k, v in VALID.items() if k != field}}
    data[field] = (io.BytesIO(b"x"), "a.txt")
    response = client.post("/pledge", data=data, content_type="multipart/form-data")
    if field == "intention":
        assert response.status_code == 303
        assert not pledges(app)[0].intention
    else:
        assert response.status_code == 422
        assert count(app) == 0


@pytest.mark.parametrize(
    "name",
    [
        "maria.rossi@example.org",
        "Maria maria@example.org",
        "maria\uff20example.org",  # a full-width at sign
        "https://casino.example/win",
        "www.casino.example",
    ],
)
def test_an_email_or_web_address_is_not_taken_for_a_name(
    app: Flask, client: FlaskClient, name: str
) -> None:
    response = post_form(client, "/pledge", {**VALID, "name": name, "show_publicly": "y"})
    assert response.status_code == 422
    assert "This looks like an email or web address. Enter your name here" in response.text
    assert html_lib.escape(name) in response.text  # what they typed is kept to correct
    assert count(app) == 0


def test_an_address_stored_as_a_name_is_never_shown_to_visitors(
    app: Flask, client: FlaskClient
) -> None:
    names = ["Anna Nowak", "Bea", "Cleo", "Dora", "Eva", "Fran", "maria@example.org",
             "https://casino.example"]  # fmt: skip
    start = datetime(2026, 3, 1, tzinfo=UTC)
    with app.app_context():
        for n, name in enumerate(names):  # the two addresses are the newest
            db.session.add(
                Pledge(
                    name=name,
                    email=f"p{n}@example.org",
                    email_key=f"p{n}@example.org",
                    rhythm="daily",
                    show_publicly=True,
                    consent_version=CONSENT_VERSION,
                    consented_at=start,
                    created_at=start + timedelta(minutes=n),
                )
            )
        db.session.commit()
    home = client.get("/").text
    assert "maria@example.org" not in home
    assert "casino" not in home
    # The five newest real names fill the list; the addresses take no place in it.
    shown = re.findall(r'<span class="recent-name"><bdi>([^<]*)</bdi>', home)
    assert shown == ["Fran", "Eva", "Dora", "Cleo", "Bea"]


def test_a_chunked_oversized_body_gets_413_over_real_http(app: Flask, live_server) -> None:
    # With no Content-Length the size is known only while reading; the site still refuses
    # it whole rather than reading a truncated form.
    host = live_server.url.removeprefix("http://")

    def send(body: bytes) -> int:
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.putrequest("POST", "/pledge")
        connection.putheader("Content-Type", "application/x-www-form-urlencoded")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for start in range(0, len(body), 8192):
            piece = body[start : start + 8192]
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        connection.send(b"0\r\n\r\n")
        status = connection.getresponse().status
        connection.close()
        return status

    assert send(b"intention=" + b"x" * 200_000) == 413
    # A small chunked body is read as usual: here refused for its missing CSRF token.
    assert send(b"name=Maria") == 400
    assert count(app) == 0


def test_honeypot_with_other_mistakes_is_still_thanked(app: Flask, client: FlaskClient) -> None:
    response = post_form(client, "/pledge", {"website": "http://spam.example", "email": "bad"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/pledge/thanks"
    assert count(app) == 0


def test_thank_you_does_not_reveal_an_earlier_pledge(client: FlaskClient) -> None:
    post_form(client, "/pledge", VALID)
    first = client.get("/pledge/thanks").text
    post_form(client, "/pledge", VALID)
    second = client.get("/pledge/thanks").text
    assert first == second


def test_honeypot_is_thanked_and_stored_nowhere(app: Flask, client: FlaskClient) -> None:
    response = post_form(client, "/pledge", {**VALID, "website": "http://spam.example"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/pledge/thanks"
    assert count(app) == 0


@pytest.mark.parametrize("name", ["Zoë Brontë", "Łukasz Żółć", "Олена Коваленко", "محمد"])
def test_names_in_any_script_are_stored_exactly(app: Flask, client: FlaskClient, name: str) -> None:
    response = post_form(client, "/pledge", {**VALID, "name": name})
    assert response.status_code == 303
    assert pledges(app)[0].name == name


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("\u182a\u1820\u1832\u1820\u180e\u1820", "\u182a\u1820\u1832\u1820\u180e\u1820"),
        ("\u0646\u0648\u0631\u061c\u0627", "\u0646\u0648\u0631\u061c\u0627"),
        ("\U00013000\U00013430\U00013001", "\U00013000\U00013430\U00013001"),
        ("Maria\u202eissoR", "MariaissoR"),
        ("\u2067Ana\u2069\ufeff", "Ana"),
    ],
    ids=[
        "mongolian-vowel-separator",
        "arabic-letter-mark",
        "hieroglyph-joiner",
        "direction-override-removed",
        "isolate-and-bom-removed",
    ],
)
def test_a_name_is_kept_and_shown_as_typed_but_for_reordering_marks(
    app: Flask, client: FlaskClient, sent: str, kept: str
) -> None:
    data = {**VALID, "name": sent, "show_publicly": "y"}
    assert post_form(client, "/pledge", data).status_code == 303
    assert pledges(app)[0].name == kept
    assert f'<span class="recent-name"><bdi>{kept}</bdi> (Italy)</span>' in client.get("/").text


def test_markup_in_a_name_is_shown_as_text(client: FlaskClient) -> None:
    response = post_form(client, "/pledge", {**VALID, "name": "<script>alert(1)</script>"[:100]})
    assert response.status_code == 303
    bad = post_form(client, "/pledge", {**VALID, "name": "<b>x</b>", "email": "bad"})
    assert "<b>x</b>" not in bad.text
    assert "&lt;b&gt;x&lt;/b&gt;" in bad.text


REFUSED_NOTE = (
    "For your security we could not accept this form as sent: it came without this site's "
    "cookie or from before it was renewed. Your answers are below: check them and send again."
)


def _kept_answers(html: str) -> None:
    """The pledge form again, as the visitor filled it in."""
    assert 'value="Maria Rossi"' in html
    assert 'value="maria@example.org"' in html
    assert '<option selected value="IT">' in html
    assert re.search(r'<input checked id="rhythm-0"[^>]*value="daily"', html)
    assert "For the children of Albania</textarea>" in html
    assert "checked" in re.search(r'<input[^>]*id="consent"[^>]*>', html).group(0)


def test_a_pledge_sent_without_the_site_s_cookie_comes_back_filled_in(
    app: Flask, client: FlaskClient
) -> None:
    # The form was filled in on the home page, then the browser lost its cookie for the site.
    other = app.test_client()
    stale = csrf_token(other.get("/").text)
    response = client.post(
        "/pledge", data={**VALID, "csrf_token": stale, "website": "http://spam.example"}
    )
    assert response.status_code == 400
    html = html_lib.unescape(response.text)
    assert REFUSED_NOTE in html
    _kept_answers(response.text)
    assert stale not in response.text
    assert "http://spam.example" not in response.text
    assert count(app) == 0

    # Sent again as it came back, the pledge is kept.
    again = client.post("/pledge", data={**VALID, "csrf_token": csrf_token(response.text)})
    assert again.status_code == 303
    assert [p.email for p in pledges(app)] == ["maria@example.org"]


def test_a_pledge_without_a_token_comes_back_filled_in_too(app: Flask, client: FlaskClient) -> None:
    response = client.post("/pledge", data=VALID)
    assert response.status_code == 400
    assert REFUSED_NOTE in html_lib.unescape(response.text)
    _kept_answers(response.text)
    assert count(app) == 0


COOKIES_BLOCKED = (
    "If this note comes back when you send again, your browser may be blocking cookies: "
    "allow them for this site, then send once more."
)


def test_a_browser_that_refuses_cookies_is_told_so_rather_than_sent_round_again(
    app: Flask,
) -> None:
    # Without the cookie no token can ever match: sending again as asked comes back the
    # same way for good, unless the visitor learns what stands in the way.
    client = app.test_client(use_cookies=False)
    html = client.get("/pledge").text
    for _ in range(2):
        response = client.post("/pledge", data={**VALID, "csrf_token": csrf_token(html)})
        assert response.status_code == 400
        html = response.text
        assert COOKIES_BLOCKED in html_lib.unescape(html)
    assert count(app) == 0


def test_a_pledge_with_an_expired_token_comes_back_filled_in(make_app, time_machine) -> None:
    app = make_app(WTF_CSRF_TIME_LIMIT=60)
    client = app.test_client()
    time_machine.move_to(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), tick=False)
    token = csrf_token(client.get("/pledge").text)
    time_machine.move_to(datetime(2026, 3, 1, 12, 5, tzinfo=UTC), tick=False)
    response = client.post("/pledge", data={**VALID, "csrf_token": token})
    assert response.status_code == 400
    assert REFUSED_NOTE in html_lib.unescape(response.text)
    # The cookie came with it: cookies are not what stands in the way.
    assert COOKIES_BLOCKED not in html_lib.unescape(response.text)
    _kept_answers(response.text)
    assert token not in response.text
    assert count(app) == 0
    again = client.post("/pledge", data={**VALID, "csrf_token": csrf_token(response.text)})
    assert again.status_code == 303
    assert count(app) == 1


def test_oversized_body_gets_413(app: Flask, client: FlaskClient) -> None:
    token = csrf_token(client.get("/pledge").text)
    response = client.post(
        "/pledge", data={**VALID, "csrf_token": token, "intention": "x" * 200_000}
    )
    assert response.status_code == 413
    assert "too much to send" in response.text
    assert count(app) == 0


def test_counter_on_home_page_counts_pledges(client: FlaskClient) -> None:
    assert '<span class="counter-number">0</span>' in client.get("/").text
    post_form(client, "/pledge", VALID)
    post_form(client, "/pledge", {**VALID, "email": "jan@example.org"})
    home = client.get("/").text
    assert '<span class="counter-number">2</span>' in home
    assert "people have pledged to pray" in home


def test_pledge_posts_are_rate_limited(make_app) -> None:
    app = make_app(PLEDGE_RATE_LIMIT="2 per minute")
    client = app.test_client()
    for n in range(2):
        assert (
            post_form(client, "/pledge", {**VALID, "email": f"p{n}@example.org"}).status_code == 303
        )
    sent = {**VALID, "name": "Олена Коваль", "email": "p3@example.org", "intention": "For Kyiv"}
    limited = post_form(client, "/pledge", sent)
    assert limited.status_code == 429
    wait = told_wait(limited, most=60)
    # Nothing was kept, and the form comes back as typed, saying when to send it again.
    assert count(app) == 2
    assert note_text(limited.text, "too-many-note") == (
        "There have been too many attempts from here in a short while, so this pledge was "
        f"not recorded. Your answers are below: please send them again in {wait} seconds."
    )
    assert 'value="Олена Коваль"' in limited.text
    assert 'value="p3@example.org"' in limited.text
    assert "For Kyiv</textarea>" in limited.text


def test_pledges_are_taken_and_still_limited_while_the_rate_limit_store_is_down(
    make_app, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # RATELIMIT_STORAGE_URI=redis://... with Redis stopped or restarting: every form must
    # not fail; each worker counts in its own memory meanwhile, and the log says so.
    from microsite.extensions import limiter

    app = make_app(PLEDGE_RATE_LIMIT="2 per minute")
    monkeypatch.setattr(limiter, "_storage_dead", False)

    def unreachable(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")

    for method in ("incr", "get", "get_expiry", "clear"):
        monkeypatch.setattr(limiter.storage, method, unreachable)
    monkeypatch.setattr(limiter.storage, "check", lambda: False)
    client = app.test_client()
    for n in range(2):
        sent = post_form(client, "/pledge", {**VALID, "email": f"p{n}@example.org"})
        assert sent.status_code == 303
    assert post_form(client, "/pledge", {**VALID, "email": "p3@example.org"}).status_code == 429
    assert count(app) == 2
    assert "Rate limit storage unreachable" in caplog.text


def test_the_form_says_what_showing_a_pledge_shows(client: FlaskClient) -> None:
    html = client.get("/pledge").text
    box = re.search(r'<input[^>]*id="show_publicly"[^>]*>', html).group(0)
    assert 'aria-describedby="show_publicly-hint"' in box
    hint = re.search(r'<p class="hint" id="show_publicly-hint">([^<]*)</p>', html).group(1)
    assert hint == (
        "Visitors will see the first word of your name as you typed it "
        "(with a title such as Sr. or Fr. before it), and your country if you chose one."
    )


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Kovács Anna", "Kovács"),
        ("王小明", "王小明"),
        ("Anna Kovács", "Anna"),
        ("Sr. Mary Kelly", "Sr. Mary"),
        ("Fr Michael Czerny", "Fr Michael"),
        ("Rev. Dr. John Smith", "Rev. Dr. John"),
        ("s. Maria Nowak", "s. Maria"),
        ("O Neill Mary", "O"),
        ("Sr.", "Sr."),
        # First names that are titles elsewhere never bring a surname with them.
        ("Don Smith", "Don"),
        ("Don Smith Jr.", "Don"),
        ("Don Kelly (Dublin)", "Don"),
        ("Don Luigi Ciotti", "Don"),
        ("Don. Luigi Ciotti", "Don. Luigi"),
        ("Dom Pereira", "Dom"),
        ("Dom. Columba Marmion", "Dom. Columba"),
        ("Pere Puig", "Pere"),
        ("Père Jean Dupont", "Père Jean"),
    ],
)
def test_the_first_word_of_the_name_is_what_is_shown(
    client: FlaskClient, name: str, shown: str
) -> None:
    post_form(client, "/pledge", {**VALID, "name": name, "country": "HU", "show_publicly": "y"})
    assert f"<bdi>{shown}</bdi> (Hungary)" in client.get("/").text


def test_only_those_who_opted_in_are_named_by_first_name(client: FlaskClient) -> None:
    post_form(
        client, "/pledge", {**VALID, "name": "Łukasz Nowak", "country": "PL", "show_publicly": "y"}
    )
    post_form(client, "/pledge", {**VALID, "name": "Hidden Person", "email": "h@example.org"})
    home = client.get("/").text
    assert '<span class="recent-name"><bdi>Łukasz</bdi> (Poland)</span>' in home
    assert "Nowak" not in home
    assert "Hidden" not in home
    assert "maria@example.org" not in home


def test_right_to_left_names_are_isolated_from_the_text_around_them(client: FlaskClient) -> None:
    post_form(
        client, "/pledge", {**VALID, "name": "محمد علي", "country": "EG", "show_publicly": "y"}
    )
    home = client.get("/").text
    # Without isolation, an Arabic name would pull " (Egypt)" and the comma into its
    # right-to-left run and show them in the wrong order.
    assert "<bdi>محمد</bdi> (Egypt)" in home


def test_the_honeypot_is_hidden_and_left_alone_by_password_managers(client: FlaskClient) -> None:
    html = client.get("/pledge").text
    trap = re.search(r'<div class="hp" aria-hidden="true">(.*?)</div>', html, re.S)
    assert trap, "the honeypot is not hidden from screen readers"
    field = re.search(r"<input[^>]*>", trap.group(1)).group(0)
    assert 'tabindex="-1"' in field
    assert 'autocomplete="off"' in field
    ignored_by = [
        "data-1p-ignore",
        'data-lpignore="true"',
        "data-bwignore",
        'data-form-type="other"',
    ]
    for marker in ignored_by:
        assert marker in field


def test_error_summary_keeps_heading_order_and_links_land_on_fields(client: FlaskClient) -> None:
    html = post_form(client, "/pledge", {"name": "", "email": "bad"}).text
    levels = [int(n) for n in re.findall(r"<h([1-6])\b", html)]
    assert levels[0] == 1
    assert all(b <= a + 1 for a, b in pairwise(levels)), levels
    targets = re.findall(r'class="error-summary".*?</div>', html, re.S)[0]
    for target in re.findall(r'href="#([^"]+)"', targets):
        # Each link lands on a control that can take focus, not on a box around it.
        assert re.search(rf'<(input|select|textarea)\b[^>]*\bid="{target}"', html), target


def test_a_fields_error_is_linked_to_it_and_marks_it_invalid(client: FlaskClient) -> None:
    html = post_form(client, "/pledge", {**VALID, "email": "bad", "consent": ""}).text
    email = re.search(r'<input[^>]*id="email"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in email
    assert 'aria-describedby="email-hint email-error"' in email
    assert 'id="email-error"' in html
    consent = re.search(r'<input[^>]*id="consent"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in consent
    assert 'aria-describedby="consent-hint consent-error"' in consent


def test_the_same_address_pledging_twice_at_once_is_stored_once(app: Flask) -> None:
    def pledge(n: int) -> Callable[[], int]:
        client = app.test_client()
        email = "Same@Example.org" if n % 2 else "same@example.ORG"
        data = {**VALID, "email": email, "csrf_token": csrf_token(client.get("/pledge").text)}
        return lambda: client.post("/pledge", data=data).status_code

    statuses = at_once([pledge(n) for n in range(4)])
    assert statuses == [303] * 4
    assert count(app) == 1


def test_a_page_sent_back_with_mistakes_says_so_in_its_title(client: FlaskClient) -> None:
    assert "<title>Pledge to pray" in client.get("/pledge").text
    sent_back = post_form(client, "/pledge", {**VALID, "email": "maria"}).text
    assert "<title>Error: Pledge to pray" in sent_back


def test_addresses_differing_by_more_than_capitals_are_two_people(
    app: Flask, client: FlaskClient
) -> None:
    post_form(client, "/pledge", {**VALID, "email": "straße@example.de"})
    post_form(client, "/pledge", {**VALID, "name": "Jan", "email": "STRASSE@example.de"})
    post_form(client, "/pledge", {**VALID, "name": "Eve", "email": "Straße@Example.de"})
    assert [p.name for p in pledges(app)] == ["Maria Rossi", "Jan"]


def test_the_consent_says_where_to_withdraw_it(make_app) -> None:
    client = make_app(CONTACT_EMAIL="privacy@renate.example").test_client()
    for path in ("/", "/pledge"):
        html = client.get(path).text
        hint = re.search(r'<p class="hint" id="consent-hint">([^<]*)</p>', html).group(1)
        assert hint == "To see, change or withdraw your pledge, write to privacy@renate.example."
        consent = re.search(r'<input[^>]*id="consent"[^>]*>', html).group(0)
        assert 'aria-describedby="consent-hint"' in consent
    post_form(client, "/pledge", VALID)
    assert 'href="mailto:privacy@renate.example"' in client.get("/pledge/thanks").text


def test_record_pledge_says_whether_a_row_was_added(app: Flask) -> None:
    # On both databases: psycopg reports no row count for this insert, so it is not used.
    from microsite.pledges import PledgeInput, record_pledge

    data = PledgeInput(name="Ana", email="ana@example.org", rhythm="daily", consent_version="v")
    with app.app_context():
        assert record_pledge(data) is True
        assert record_pledge(data) is False
    assert count(app) == 1


def test_flags_and_scripts_survive_and_direction_overrides_do_not(
    app: Flask, client: FlaskClient
) -> None:
    scotland = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    data = {**VALID, "name": f"Morag {scotland}", "intention": "For \u202eall\u202c of them"}
    assert post_form(client, "/pledge", data).status_code == 303
    [pledge] = pledges(app)
    assert (pledge.name, pledge.intention) == (f"Morag {scotland}", "For all of them")


def test_every_required_pledge_field_is_marked_and_required(client: FlaskClient) -> None:
    html = client.get("/pledge").text
    form = html.split('<form class="pledge-form"')[1].split("</form>")[0]
    assert form.count('<span class="req" aria-hidden="true">(required)</span>') == 4
    legend = re.search(r"<legend[^>]*>(.*?)</legend>", form, re.S).group(1)
    assert legend.startswith("How will you pray?") and "(required)" in legend
    consent = re.search(r'<label for="consent">(.*?)</label>', form, re.S).group(1)
    assert consent.endswith("(required)</span>")
    for control in ("name", "email", "rhythm-0", "rhythm-1", "consent"):
        assert " required" in re.search(rf'<input[^>]*id="{control}"[^>]*>', form).group(0)
    for optional in ("intention", "show_publicly"):
        assert " required" not in re.search(rf'<[a-z]+[^>]*id="{optional}"[^>]*>', form).group(0)


def test_the_error_summary_takes_focus_when_the_page_loads(client: FlaskClient) -> None:
    assert "error-summary" not in client.get("/pledge").text
    html = post_form(client, "/pledge", {**VALID, "consent": ""}).text
    summary = re.search(r'<div class="error-summary"[^>]*>', html).group(0)
    assert "autofocus" in summary and 'tabindex="-1"' in summary
    assert html.count("autofocus") == 1


def _country_options(html: str) -> list[tuple[str, str]]:
    select = re.search(r'<select[^>]*id="country"[^>]*>(.*?)</select>', html, re.S).group(1)
    options = re.findall(r'<option[^>]*value="([^"]*)"[^>]*>([^<]*)</option>', select)
    return [(code, html_lib.unescape(label)) for code, label in options]


def _without_accents(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def test_countries_are_listed_as_people_look_them_up(client: FlaskClient) -> None:
    options = _country_options(client.get("/pledge").text)
    assert options[0] == ("", "Prefer not to say")
    labels = [label for _, label in options[1:]]
    assert labels == sorted(labels, key=_without_accents)
    assert labels[:3] == ["Afghanistan", "Åland Islands", "Albania"]
    assert labels[labels.index("Costa Rica") + 1] == "Côte d'Ivoire"
    assert labels[-1] == "Zimbabwe"
    # ISO's back-to-front names read as people say them.
    inverted = re.compile(r", (the|The)\b|,[^,]* of( the)?$|, (British|U\.S\.)$")
    assert [label for label in labels if inverted.search(label)] == []
    named = dict(options)
    assert named["CD"] == "Democratic Republic of the Congo"
    assert named["KR"] == "South Korea"
    assert named["VG"] == "British Virgin Islands"
    assert named["VA"] == "Holy See (Vatican City)"


def test_a_pledgers_country_is_shown_by_its_readable_name(client: FlaskClient) -> None:
    post_form(client, "/pledge", {**VALID, "country": "CD", "show_publicly": "y"})
    assert "<bdi>Maria</bdi> (Democratic Republic of the Congo)" in client.get("/").text
