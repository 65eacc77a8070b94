"""Fixtures for Stripe: a fake HTTP client behind the real stripe library, signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

TEST_KEY = "sk_test_fake_key_for_tests_only"
WEBHOOK_SECRET = "whsec_fake_secret_for_tests_only"
FAKE_API_BASE = "https://stripe.fake.invalid"
CHECKOUT_URL = "https://checkout.stripe.com/c/pay/"


@dataclass
class WireRequest:
    """One HTTP request as the stripe library sent it."""

    method: str
    url: str
    headers: dict[str, str]
    body: str

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def params(self) -> dict[str, str]:
        """The form-encoded body, flattened the way Stripe reads it: line_items[0][quantity]."""
        return dict(parse_qsl(self.body, keep_blank_values=True))


@dataclass
class FakeStripe(stripe.HTTPClient):
    """Answers the stripe library like Stripe's API would, without a network.

    Each request is recorded. Checkout sessions and customers are created from the posted
    parameters; a repeated idempotency key gets the first answer again, as Stripe's API
    does, and a key used again with different parameters gets Stripe's 400
    idempotency_error.
    """

    requests: list[WireRequest] = field(default_factory=list)
    # Failures to answer with, each for the next request to its path (None: to any path).
    failures: list[tuple[str | None, tuple[int, dict[str, Any]] | Exception]] = field(
        default_factory=list
    )
    checkout_url: str = CHECKOUT_URL
    # What happens elsewhere while Stripe is slow: called once with the answer to the next
    # request to this path, before that answer reaches the site.
    meanwhile: tuple[str, Callable[[dict[str, Any]], None]] | None = None
    name = "fake"

    def __post_init__(self) -> None:
        super().__init__()
        self._answers: dict[str, tuple[str, int, dict[str, str]]] = {}
        self._bodies: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def fail_next(
        self, status: int = 500, error: dict[str, Any] | None = None, *, path: str | None = None
    ) -> None:
        """Make the next request (to path, if given) answer with a Stripe error of this status."""
        failure = (status, error or {"type": "api_error", "message": "Boom"})
        self.failures.append((path, failure))

    def forget_keys(self) -> None:
        """A day has passed: Stripe no longer remembers earlier idempotency keys."""
        self._answers.clear()
        self._bodies.clear()

    def drop_next(self, *, path: str | None = None) -> None:
        """Make the next request (to path, if given) fail as if the network were down."""
        self.failures.append((path, stripe.APIConnectionError("Network is unreachable")))

    def _failure_for(self, path: str) -> tuple[int, dict[str, Any]] | Exception | None:
        """The first failure waiting for a request to this path, taken off the list."""
        for n, (where, failure) in enumerate(self.failures):
            if where in (None, path):
                del self.failures[n]
                return failure
        return None

    def request(
        self,
        method: str,
        url: str,
        headers: Any,
        post_data: Any = None,
        *,
        _usage: Any = None,
    ) -> tuple[str, int, dict[str, str]]:
        answer = self._request(method, url, headers, post_data)
        if self.meanwhile and urlsplit(url).path == self.meanwhile[0]:
            (_, happen), self.meanwhile = self.meanwhile, None
            happen(json.loads(answer[0]))
        return answer

    def _request(
        self, method: str, url: str, headers: Any, post_data: Any
    ) -> tuple[str, int, dict[str, str]]:
        body = post_data.decode() if isinstance(post_data, bytes) else (post_data or "")
        wire = WireRequest(method.upper(), url, dict(headers or {}), body)
        with self._lock:
            self.requests.append(wire)
            request_id = f"req_fake_{next(self._ids)}"
            key = wire.headers.get("Idempotency-Key")
            if key and key in self._answers:
                if self._bodies[key] != body:
                    return self._idempotency_error(key, request_id)
                return self._answers[key]
            failure = self._failure_for(wire.path)
            if failure is not None:
                if isinstance(failure, Exception):
                    raise failure
                status, error = failure
                answer = json.dumps({"error": error})
                headers = {"request-id": request_id, "stripe-should-retry": "false"}
                failed = (answer, status, headers)
                if status >= 500 and key:
                    # Stripe keeps a 500 under its idempotency key and replays it for 24 hours.
                    self._answers[key], self._bodies[key] = failed, body
                return failed
            answer = (json.dumps(self._answer(wire)), 200, {"request-id": request_id})
            if key:
                self._answers[key], self._bodies[key] = answer, body
            return answer

    @staticmethod
    def _idempotency_error(key: str, request_id: str) -> tuple[str, int, dict[str, str]]:
        error = {
            "type": "idempotency_error",
            "message": (
                f"Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                f"execute a different request."
            ),
        }
        headers = {"request-id": request_id, "stripe-should-retry": "false"}
        return json.dumps({"error": error}), 400, headers

    def request_stream(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _answer(self, wire: WireRequest) -> dict[str, Any]:
        if wire.method == "POST" and wire.path == "/v1/customers":
            params = wire.params
            return {
                "id": f"cus_fake{next(self._ids):06d}",
                "object": "customer",
                "livemode": False,
                "created": int(time.time()),
                "name": params.get("name"),
                "email": params.get("email"),
                "metadata": _metadata(params),
                "balance": 0,
                "delinquent": False,
                "default_source": None,
            }
        if wire.method == "POST" and wire.path == "/v1/checkout/sessions":
            params = wire.params
            session_id = f"cs_test_fake{next(self._ids):06d}"
            return {
                "id": session_id,
                "object": "checkout.session",
                "livemode": False,
                "mode": params.get("mode"),
                "status": "open",
                "payment_status": "unpaid",
                "client_reference_id": params.get("client_reference_id"),
                "currency": params.get("line_items[0][price_data][currency]"),
                "amount_total": int(params.get("line_items[0][price_data][unit_amount]", "0")),
                "customer": params.get("customer"),
                "customer_email": params.get("customer_email"),
                "metadata": _metadata(params),
                "success_url": params.get("success_url"),
                "cancel_url": params.get("cancel_url"),
                "url": self.checkout_url + session_id,
            }
        return {"error": {"type": "invalid_request_error", "message": "Unknown path"}}

    @property
    def sessions_created(self) -> list[WireRequest]:
        return [r for r in self.requests if r.path == "/v1/checkout/sessions"]

    @property
    def customers_created(self) -> list[WireRequest]:
        return [r for r in self.requests if r.path == "/v1/customers"]


def _metadata(params: dict[str, str]) -> dict[str, str]:
    """The metadata[...] parameters as the object Stripe answers with."""
    return {k[len("metadata[") : -1]: v for k, v in params.items() if k.startswith("metadata[")}


@pytest.fixture
def fake_stripe() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
def stripe_config(fake_stripe: FakeStripe) -> dict[str, Any]:
    """Settings for an app in Stripe test mode whose every API call reaches the fake."""
    return {
        "STRIPE_SECRET_KEY": TEST_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": FAKE_API_BASE,
        "STRIPE_HTTP_CLIENT": fake_stripe,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
    }


@pytest.fixture
def stripe_app(make_app: Callable[..., Flask], stripe_config: dict[str, Any]) -> Flask:
    return make_app(**stripe_config)


@pytest.fixture
def stripe_client(stripe_app: Flask) -> FlaskClient:
    return stripe_app.test_client()


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header: HMAC-SHA256 of "timestamp.body" with the endpoint's secret."""
    stamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{stamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


_event_ids = itertools.count(1)


def make_event(
    kind: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    livemode: bool = False,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Stripe event as the API version this site pins would send it."""
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": event_id or f"evt_test_{next(_event_ids):08d}",
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()),
        "type": kind,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": data,
    }


def post_event(
    client: FlaskClient,
    event: dict[str, Any] | bytes,
    *,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
) -> TestResponse:
    """POST an event to the webhook endpoint, signed like Stripe signs it unless told otherwise."""
    payload = event if isinstance(event, bytes) else json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    sig = signature if signature is not None else sign(payload, secret, timestamp)
    if sig:
        headers["Stripe-Signature"] = sig
    return client.post("/webhooks/stripe", data=payload, headers=headers)


@pytest.fixture
def send_event(stripe_client: FlaskClient) -> Iterator[Callable[..., TestResponse]]:
    """Send a signed event to the test-mode app."""

    def send(event: dict[str, Any] | bytes, **kwargs: Any) -> TestResponse:
        return post_event(stripe_client, event, **kwargs)

    yield send
