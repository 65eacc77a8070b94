"""Fixtures for the admin area: accounts and signed-in clients."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from microsite import auth
from microsite.models import Donation, Pledge, db
from microsite.pledges import email_key
from tests.helpers import csrf_token

ADMIN_EMAIL = "staff@renate-europe.net"
ADMIN_PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Account:
    email: str
    password: str


def sign_in(
    client: FlaskClient, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD, **extra: Any
) -> TestResponse:
    """Sign in through the form, CSRF token included, as a browser would."""
    page = client.get("/admin/login")
    token = csrf_token(page.text)
    return client.post(
        "/admin/login", data={"csrf_token": token, "email": email, "password": password, **extra}
    )


def page_token(client: FlaskClient, url: str = "/admin/") -> str:
    """A CSRF token from an admin page, for the admin's POST forms."""
    return csrf_token(client.get(url).text)


def lookup(client: FlaskClient, email: str) -> TestResponse:
    """Search for a person as the form does: a POST, so the address is never in a URL."""
    return client.post(
        "/admin/people", data={"csrf_token": page_token(client, "/admin/people"), "email": email}
    )


@pytest.fixture
def admin_account(app: Flask) -> Account:
    """An active admin made through the same service the shell command uses."""
    with app.app_context():
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    return Account(ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture
def admin_client(app: Flask, admin_account: Account) -> FlaskClient:
    """A test client signed in as the admin."""
    client = app.test_client()
    response = sign_in(client, admin_account.email, admin_account.password)
    assert response.status_code == 303, response.text
    return client


def _when(value: datetime | str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


@pytest.fixture
def add_pledge(app: Flask) -> Callable[..., None]:
    """Insert a pledge directly, as if made through the form at a given time."""

    def add(name: str, email: str, *, created: datetime | str | None = None, **fields: Any) -> None:
        at = _when(created)
        values: dict[str, Any] = {
            "country": None,
            "rhythm": "daily",
            "intention": None,
            "show_publicly": False,
            "consent_version": "2026-11-pledge-v1",
            **fields,
        }
        with app.app_context():
            db.session.add(
                Pledge(
                    name=name,
                    email=email,
                    email_key=email_key(email),
                    consented_at=at,
                    created_at=at,
                    **values,
                )
            )
            db.session.commit()

    return add


@pytest.fixture
def add_donation(app: Flask) -> Callable[..., str]:
    """Insert a donation directly; returns its reference."""

    def add(*, created: datetime | str | None = None, **fields: Any) -> str:
        at = _when(created)
        values: dict[str, Any] = {
            "amount": 2500,
            "fee_covered": 0,
            "currency": "EUR",
            "frequency": "one_time",
            "status": "paid",
            "livemode": False,
            "donor_name": "Ana Pereira",
            "donor_email": "ana@example.org",
            "amount_received": 2500,
            "created_at": at,
            "updated_at": at,
            **fields,
        }
        if values["status"] == "paid" and "paid_at" not in fields:
            values["paid_at"] = at
        with app.app_context():
            donation = Donation(**values)
            db.session.add(donation)
            db.session.commit()
            return donation.reference

    return add
