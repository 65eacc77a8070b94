"""Small helpers for driving forms the way a browser does, CSRF token included."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

T = TypeVar("T")

_TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = _TOKEN.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def note_text(html: str, note_id: str) -> str:
    """The words of the page's element with that id (a notice, say), as a reader sees them."""
    match = re.search(rf'<(\w+)[^>]*id="{note_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, f"the page has no #{note_id}"
    return " ".join(re.sub(r"<[^>]+>", "", match.group(2)).split())


def told_wait(limited: TestResponse, most: int) -> int:
    """The seconds a 429 form page asks the visitor to wait, checked against its header.

    The header is written a moment after the page, from its own clock reading: the two
    may straddle a second's boundary, never more.
    """
    header = int(limited.headers["Retry-After"])
    assert 0 < header <= most
    match = re.search(r"send them again in (\d+) seconds", limited.text)
    assert match, "the page does not say how long to wait"
    wait = int(match.group(1))
    assert 0 <= wait - header <= 1
    return wait


def post_form(
    client: FlaskClient, url: str, data: dict[str, Any], *, form_page: str | None = None
) -> TestResponse:
    """GET the page that holds the form, take its token, then POST the form."""
    page = client.get(form_page or url)
    assert page.status_code == 200, page.status_code
    return client.post(url, data={"csrf_token": csrf_token(page.text), **data})


def at_once(calls: list[Callable[[], T]], timeout: float = 60) -> list[T]:
    """Run the calls in threads released together, as requests arriving at one moment.

    Their results in the order the calls were given; the first call that raised raises here,
    and a call still running after the timeout fails the test.
    """
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(n: int, call: Callable[[], T]) -> None:
        start.wait()
        try:
            results[n] = call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), f"still running after {timeout} s"
    if errors:
        raise errors[0]
    return results
