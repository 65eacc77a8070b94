"""Security headers, cookie flags and proxy handling, in one place."""

from __future__ import annotations

import io
import ipaddress
from urllib.parse import unquote_to_bytes

from flask import Flask, Response, abort, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

STRIPE_CHECKOUT_ORIGIN = "https://checkout.stripe.com"

# No inline script or style anywhere: everything comes from site/static.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self'",
        "script-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
        # Chrome applies form-action to the redirect after a POST: without Stripe's
        # origin here, the donate button would silently do nothing.
        f"form-action 'self' {STRIPE_CHECKOUT_ORIGIN}",
    ]
)


def client_network(address: str | None) -> str:
    """Who a client is, for the limits: an IPv4 address, or an IPv6 address's /64 network.

    One IPv6 connection is usually given a whole /64 and can pick any address in it, so
    counting by address would give a guesser billions of fresh counters.
    """
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # a dual-stack socket's IPv4 client
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip), 64), strict=False))
    return str(ip)


def rate_limit_key() -> str:
    """The key every rate limit counts by: the client's address, or its IPv6 /64."""
    return client_network(request.remote_addr)


def init_app(app: Flask) -> None:
    if app.config["TRUSTED_PROXIES"]:
        hops = int(app.config["TRUSTED_PROXIES"])
        # Client address and scheme only. Not X-Forwarded-Host: most proxies pass a client's
        # own through untouched, and it would name the host in every absolute URL.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops
        )

    app.before_request(check_host)
    app.before_request(check_request_body)
    app.before_request(check_form_encoding)

    @app.after_request
    def set_security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.method in BODY_METHODS or request.endpoint in PERSONAL_PAGES:
            # A form sent back with what was typed, or a gift's own page: kept by no cache,
            # so the next person at a shared computer cannot bring it back from history.
            headers.setdefault("Cache-Control", "no-store")
        return response


WEBHOOK_ENDPOINT = "webhooks.stripe_event"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Pages that show one donor's details, from the session that started the gift.
PERSONAL_PAGES = frozenset({"donate.cancelled", "donate.thanks"})


def check_host() -> None:
    """Answer 400 to a Host header Werkzeug cannot decode ("xn--zz", a broken punycode
    name): every link and redirect this site builds from the request starts with its host,
    and would otherwise fail there, deep inside a page, as a 500.

    Nothing stricter: a proxy's upstream name ("app_server"), which Werkzeug reads as no
    host at all, and a request with no Host header are served, with links on the page
    relative (and absolute ones from SITE_URL).
    """
    try:
        request.host_url  # noqa: B018 - decodes the name, as building any link will
    except UnicodeError:
        abort(400)


FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def check_request_body() -> None:
    """Refuse bodies this site never takes, before any form or token is read.

    - JSON, or any body but a form's, anywhere but Stripe's webhook: every form here is a
      plain HTML form, and Flask-WTF would otherwise accept the same fields as JSON.
    - A body sent in chunks, with no length up front, larger than the limit. Werkzeug
      would quietly cut it at the limit and the form would see only a part; here it is
      read up to the limit and answered 413 like any other oversized body.
    """
    not_a_form = request.is_json or (request.mimetype and request.mimetype not in FORM_TYPES)
    if request.method in BODY_METHODS and request.endpoint != WEBHOOK_ENDPOINT and not_a_form:
        abort(415)
    environ = request.environ
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not chunked or request.content_length is not None:
        return
    if "wsgi.input_terminated" not in environ:
        return  # the server cannot end the stream; Werkzeug reads nothing from it
    webhook = request.endpoint == WEBHOOK_ENDPOINT
    limit = current_app.config["WEBHOOK_MAX_CONTENT_LENGTH" if webhook else "MAX_CONTENT_LENGTH"]
    body = bytearray()
    stream = environ["wsgi.input"]
    while len(body) <= limit:
        chunk = stream.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        abort(413)
    # From here on the body is an ordinary one of known length.
    environ["wsgi.input"] = io.BytesIO(bytes(body))
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def check_form_encoding() -> None:
    """Answer 400 to a form whose fields are not UTF-8, or a multipart body with no
    boundary, rather than let it through as an empty form.

    Werkzeug quietly reads such a body as no fields at all (the visitor would be told
    their cookie was missing) or keeps undecodable bytes as "%FF" text, which would then
    be stored as if typed. Every page here is UTF-8, so a browser never sends either.
    """
    if request.method not in BODY_METHODS or request.endpoint == WEBHOOK_ENDPOINT:
        return
    if request.mimetype == "multipart/form-data" and not request.mimetype_params.get("boundary"):
        abort(400)
    if request.mimetype != "application/x-www-form-urlencoded":
        return
    body = request.get_data(cache=True)  # read once; the form is then parsed from it
    try:
        unquote_to_bytes(body.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        abort(400)
