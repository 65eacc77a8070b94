"""Admin accounts and their sign-in sessions.

Flask's session is a signed cookie, which a server cannot revoke. Each admin therefore
carries a session version: the cookie names the version it was issued under, and signing
out (or a new password, or disabling the account) bumps it, so every older cookie,
even one copied before the sign-out, stops working.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from functools import cache
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from flask import current_app, g, session
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from .models import AdminUser, db, utcnow
from .text import one_line, stored_email

MIN_PASSWORD_LENGTH = 12
# What the accounts table holds of an address, as normalise_email writes it.
ADDRESS_LENGTH = AdminUser.__table__.c.email.type.length
# The sign-in form takes no more than this, so a longer password could never be used.
MAX_PASSWORD_LENGTH = 1024

# A browser an admin has signed in from carries a signed cookie naming (by a hash) the
# account and its current password. Sign-in attempts by strangers can hold an account;
# they do not hold it in a browser its admin has used before, so nobody can keep a real
# admin out. A new password or disabling the account makes every such cookie worthless.
KNOWN_BROWSER_COOKIE = "admin_device"
KNOWN_BROWSER_DAYS = 90

# argon2id with the library's defaults (RFC 9106's second recommended option).
hasher = PasswordHasher()


# Verified against when the email is unknown, so a wrong email costs as long as a
# wrong password and the timing does not reveal which addresses are admins.
@cache
def _dummy_hash() -> str:
    return hasher.hash("no account has this password")


class AccountError(ValueError):
    """A request about an admin account that cannot be done; the message says why."""


def normalise_email(email: str) -> str:
    """An admin's address as accounts, limits and cookies compare it: cleaned as the sign-in
    form cleans it, so an invisible character cannot make a new name for one account, and
    written as the account was made (see stored_email), however a mail program showed it."""
    return stored_email(one_line(email) or "").casefold()


def check_password(password: str) -> None:
    """Refuse a password too short to resist guessing, or too long to sign in with."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"The password must be at most {MAX_PASSWORD_LENGTH} characters long.")


def find_admin(email: str) -> AdminUser | None:
    return db.session.scalar(select(AdminUser).where(AdminUser.email == normalise_email(email)))


def existing_admin(email: str) -> AdminUser:
    """The admin with this address; AccountError when there is none."""
    admin = find_admin(email)
    if admin is None:
        raise AccountError(f"There is no admin account for {one_line(email) or email}.")
    return admin


def new_admin_address(email: str) -> str:
    """The address a new admin account would have, cleaned as the sign-in form cleans what
    is typed; AccountError when it is not an address or already has an account."""
    try:
        typed = (one_line(email) or "").strip()
        address = validate_email(typed, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise AccountError("Enter an email address like name@example.org.") from exc
    # Folding capitals can lengthen an address (one Greek letter becomes three), past what
    # the accounts table holds; refuse it here rather than as the database's error.
    if len(normalise_email(address)) > ADDRESS_LENGTH:
        raise AccountError(
            f"That address is too long for an account: at most {ADDRESS_LENGTH} characters."
        )
    if find_admin(address) is not None:
        raise AccountError(f"An admin account for {address} already exists.")
    return address


def create_admin(email: str, password: str) -> AdminUser:
    """Add an admin who can sign in with this email and password."""
    address = new_admin_address(email)
    check_password(password)
    admin = AdminUser(email=normalise_email(address), password_hash=hasher.hash(password))
    db.session.add(admin)
    db.session.commit()
    return admin


def set_password(email: str, password: str) -> AdminUser:
    """Give an admin a new password and end every session they had."""
    check_password(password)
    admin = existing_admin(email)
    admin.password_hash = hasher.hash(password)
    admin.session_version += 1
    db.session.commit()
    return admin


def set_active(email: str, active: bool) -> AdminUser:
    """Allow or stop an admin's sign-in; stopping also ends their sessions at once."""
    admin = existing_admin(email)
    admin.active = active
    admin.session_version += 1
    db.session.commit()
    return admin


def list_admins() -> list[AdminUser]:
    return list(db.session.scalars(select(AdminUser).order_by(AdminUser.email)))


def authenticate(email: str, password: str) -> AdminUser | None:
    """The active admin with this email and password, or None whichever part was wrong."""
    admin = find_admin(email)
    try:
        hasher.verify(admin.password_hash if admin else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if admin is None or not admin.active:
        return None
    if hasher.check_needs_rehash(admin.password_hash):
        admin.password_hash = hasher.hash(password)
        db.session.commit()
    return admin


def _known_browser_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="admin-known-browser")


def _account_digest(admin: AdminUser) -> str:
    """A hash of the account and its password hash: it changes with a new password."""
    material = f"{normalise_email(admin.email)}\0{admin.password_hash}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def known_browser_token(admin: AdminUser) -> str:
    """The cookie value that marks this browser as one the admin has signed in from."""
    return _known_browser_signer().dumps(_account_digest(admin))


def is_known_browser(token: str | None, email: str) -> bool:
    """Whether the cookie is ours, recent enough, for the account being signed in to, and
    given since its password was last set, while the account is active."""
    if not token or not email:
        return False
    try:
        digest = _known_browser_signer().loads(token, max_age=KNOWN_BROWSER_DAYS * 86400)
    except BadSignature:
        return False
    admin = find_admin(email)
    if admin is None or not admin.active or not isinstance(digest, str):
        return False
    return hmac.compare_digest(digest, _account_digest(admin))


def start_session(admin: AdminUser) -> None:
    """Sign the admin in on a fresh session: nothing from before sign-in is carried over."""
    session.clear()
    now = int(time.time())
    session["admin_id"] = admin.id
    session["admin_version"] = admin.session_version
    session["admin_started"] = now
    session["admin_seen"] = now
    admin.last_login_at = utcnow()
    db.session.commit()


def end_session(admin: AdminUser) -> None:
    """Sign out: this cookie and every copy of it stop working."""
    admin.session_version += 1
    db.session.commit()
    session.clear()


def session_owner() -> AdminUser | None:
    """The admin this session was signed in as, while nothing has ended it everywhere, even
    past its timeouts: signing out from a tab left idle still ends every copy of it."""
    admin_id = session.get("admin_id")
    admin = db.session.get(AdminUser, admin_id) if isinstance(admin_id, int) else None
    if admin is None or not admin.active:
        return None
    return admin if session.get("admin_version") == admin.session_version else None


def session_admin() -> AdminUser | None:
    """The admin this request's session belongs to, if it is still valid; else clear it."""
    if session.get("admin_id") is None:
        return None
    now = int(time.time())
    config = current_app.config
    idle = int(config["ADMIN_IDLE_MINUTES"]) * 60
    absolute = int(config["ADMIN_ABSOLUTE_HOURS"]) * 3600
    started = int(session.get("admin_started", 0))
    seen = int(session.get("admin_seen", 0))
    admin = session_owner()
    ended = None
    if admin is None:
        ended = "elsewhere"  # signed out in another tab, or the account was changed
    elif now - seen > idle:
        ended = "idle"
    elif now - started > absolute:
        ended = "absolute"
    if ended is not None:
        session.clear()
        g.session_ended = ended  # for the sign-in page to say why
        return None
    session["admin_seen"] = now
    return admin


def safe_next(target: str | None) -> str | None:
    """The `next` path if it stays on this site, else None: no open redirects."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    if any(ord(ch) < 32 or ch == "\\" for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
