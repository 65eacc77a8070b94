"""Settings: defaults, then instance/, then the environment, then a test mapping."""

from __future__ import annotations

import difflib
import logging
import os
import secrets
import tempfile
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class SettingsError(RuntimeError):
    """A setting the site cannot start with; the message says what to change."""


logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"

# Every setting an operator may give through the environment, with its default.
# The type of the default decides how the environment's string is read.
DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": "",
    "DATABASE_URL": "",
    "SITE_URL": "",
    "SITE_NAME": "RENATE",
    "ASSEMBLY_URL": "https://www.renate-europe.net/",
    # Where people write to see, change or withdraw their pledge (shown beside the consent).
    "CONTACT_EMAIL": "",
    "CONTENT_DIR": str(ROOT / "site" / "content"),
    "HOME_ARTICLE": "osce-conference-trafficking-in-children-2017",
    "TRUSTED_PROXIES": 0,
    "SESSION_COOKIE_SECURE": False,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "WEBHOOK_MAX_CONTENT_LENGTH": 1024 * 1024,
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_ENABLED": True,
    # Off: the limiter would put its own Retry-After on every answer, a 303 or a 503 too;
    # the 429 pages say when to try again themselves.
    "RATELIMIT_HEADERS_ENABLED": False,
    "PLEDGE_RATE_LIMIT": "20 per minute;200 per day",
    "DONATE_RATE_LIMIT": "10 per minute",
    # Every sign-in attempt counts, successes too: room for a small office on one address.
    "LOGIN_RATE_LIMIT": "20 per 15 minutes",
    # Sign-in attempts for one account from anywhere, failed or not, except from browsers
    # its admin has signed in from: a short window.
    "LOGIN_ACCOUNT_RATE_LIMIT": "5 per minute",
    "STRIPE_SECRET_KEY": "",
    "STRIPE_WEBHOOK_SECRET": "",
    "STRIPE_API_BASE": "",
    "STRIPE_ALLOW_LIVE": False,
    # Stripe's customer portal login link, where monthly donors change or stop their gift.
    "DONOR_PORTAL_URL": "",
    "STRIPE_MAX_NETWORK_RETRIES": 2,
    "STRIPE_TIMEOUT": "5",  # seconds per attempt; a string, so 2.5 reads as it is written
    "DONATION_CURRENCIES": "EUR,GBP,USD,CHF",
    "DONATION_DEFAULT_CURRENCY": "EUR",
    "DONATION_PRESETS": "10,25,50,100",
    "DONATION_MIN": "1",
    "DONATION_MAX": "10000",
    "DONATION_FEE_PERCENT": "1.5",
    "DONATION_FEE_FIXED": "0.25",
    "ADMIN_IDLE_MINUTES": 30,
    "ADMIN_ABSOLUTE_HOURS": 12,
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Rate limits, read at start so that a typo stops the site rather than switching one off.
RATE_LIMITS = (
    "PLEDGE_RATE_LIMIT",
    "DONATE_RATE_LIMIT",
    "LOGIN_RATE_LIMIT",
    "LOGIN_ACCOUNT_RATE_LIMIT",
)
# Shorter, and a key is guessable: whoever guesses it can sign a cookie as an admin.
MIN_SECRET_KEY_LENGTH = 32
MAKE_A_KEY = "python3 -c 'import secrets; print(secrets.token_hex(32))'"
# Names in the environment that are not settings yet look like one (`stripe listen` and
# the real-Stripe test read these two themselves).
NOT_SETTINGS = {"STRIPE_API_KEY", "STRIPE_TEST_SECRET_KEY"}

# Whole-number settings that make no sense below 1: a zero idle timeout would end every
# admin session the moment it began, with no word of why.
AT_LEAST_ONE = ("ADMIN_IDLE_MINUTES", "ADMIN_ABSOLUTE_HOURS")
# The smallest request bodies the site can work with, in bytes. A donation or pledge form
# filled to every field's limit in a non-Latin script, percent-encoded, comes near 12 KB;
# Stripe's events run to several KB, an invoice's to tens. Below these, every form (or
# every event) would be refused as too large.
SMALLEST_BODY = {
    "MAX_CONTENT_LENGTH": (16 * 1024, "a form filled in"),
    "WEBHOOK_MAX_CONTENT_LENGTH": (64 * 1024, "Stripe's events"),
}


def _coerce(name: str, default: Any, raw: str) -> Any:
    if isinstance(default, bool | int) and not raw.strip():
        return default  # "NAME=" left blank in .env: keep the default
    if isinstance(default, bool):
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            # A misspelt "ture" must not quietly mean off (SESSION_COOKIE_SECURE, say).
            raise SettingsError(
                f"{name} must be 1 or 0 (or true/false, yes/no, on/off), not {raw!r}"
            )
        return word in _TRUE
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    # A value read from a file (a mounted secret) often ends with a newline.
    return raw.strip()


def _from_file(name: str, default: Any, value: Any) -> Any:
    """A value from instance/settings.py, read as the environment's would be: text goes
    through _coerce ("0" in quotes is off, not a non-empty string), and a true/false or
    whole-number setting given as something else is refused."""
    if isinstance(value, str):
        return _coerce(name, default, value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SettingsError(f'{name} must be True or False (or "1" or "0"), not {value!r}')
    elif isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
        raise SettingsError(f"{name} must be a whole number, like {default}, not {value!r}")
    return value


def _warn_of_misspelt_settings(names: Any, where: str = "") -> None:
    """Name a variable that looks like a mistyped setting: otherwise it is just ignored."""
    for name in names:
        if name in DEFAULTS or name in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(name, DEFAULTS, n=1, cutoff=0.85)
        if close:
            logger.warning(
                "%s%s is not a setting of this site; did you mean %s?", name, where, close[0]
            )


def _check_rate_limits(config: dict[str, Any]) -> None:
    for name in RATE_LIMITS:
        try:
            parsed = parse_many(str(config[name]))
        except ValueError:
            parsed = []
        if not parsed:
            raise SettingsError(
                f"{name} must be limits like '10 per minute' or '20 per minute;200 per day', "
                f"not {config[name]!r}"
            )


def _instance_secret_key(instance: Path) -> str:
    """Read the generated key kept in instance/, making it once if absent.

    The key is written to a private temporary file and then linked into place, so the
    file appears complete or not at all: workers starting together all end with the
    one key that won, never with a half-written or empty one.
    """
    path = instance / "secret_key"
    if not path.exists():
        try:
            instance.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".secret_key.", dir=instance)  # mode 0600
        except OSError as error:
            raise SettingsError(
                f"cannot write a secret key into {instance} ({error.strerror}). Set SECRET_KEY "
                f"in the environment (make one with: {MAKE_A_KEY}), or let the site write there."
            ) from None
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            os.link(tmp, path)
        except FileExistsError:
            pass  # another worker's key won
        finally:
            os.unlink(tmp)
    key = path.read_text().strip()
    if not key:
        raise SettingsError(f"{path} is empty: delete it to have a new key made, or set SECRET_KEY")
    return key


SETTINGS_FILE_HINT = (
    'It is Python: a setting reads like SITE_NAME = "RENATE", text in quotes, numbers without.'
)


def _read_settings_file(path: Path) -> dict[str, Any]:
    """The upper-case names an instance/settings.py sets, its mistakes told as settings errors."""
    namespace: dict[str, Any] = {}
    try:
        exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102
    except SyntaxError as error:
        raise SettingsError(
            f"{path}, line {error.lineno}: {error.msg}. {SETTINGS_FILE_HINT}"
        ) from None
    except Exception as error:  # whatever it raised, the site cannot start with it
        # The line of the file itself that raised, not of whatever it called.
        lines = [
            frame.lineno
            for frame in traceback.extract_tb(error.__traceback__)
            if frame.filename == str(path)
        ]
        where = f"{path}, line {lines[-1]}" if lines else str(path)
        # Text without its quotes (SITE_NAME = RENATE) is read as a name never defined.
        hint = f". {SETTINGS_FILE_HINT}" if isinstance(error, NameError) else ""
        raise SettingsError(f"{where}: {type(error).__name__}: {error}{hint}") from None
    found = {name: value for name, value in namespace.items() if name.isupper()}
    _warn_of_misspelt_settings(found, where=f" in {path.name}")
    for name, default in DEFAULTS.items():
        if name in found:
            try:
                found[name] = _from_file(name, default, found[name])
            except SettingsError as error:
                raise SettingsError(f"{path}: {error}") from None
    return found


# The databases this site is made and tested for, by SQLAlchemy's name for them.
DATABASES = ("sqlite", "postgresql")
DATABASE_EXAMPLE = "sqlite:///renate.db or postgresql://user:pass@host/db"


def _database_uri(uri: str) -> str:
    """The database address as SQLAlchemy takes it; SettingsError for one it cannot use.

    Hosting platforms hand out postgres:// URLs, sometimes written Postgres://; SQLAlchemy
    wants a lower-case scheme and a driver name.
    """
    scheme, sep, rest = uri.partition("://")
    if sep:
        scheme = scheme.lower()
        uri = f"{scheme}://{rest}"
    if scheme in ("postgres", "postgresql"):
        uri = "postgresql+psycopg://" + rest
    try:
        backend = make_url(uri).get_backend_name()
    except ArgumentError:
        backend = ""
    if not sep or not backend:
        raise SettingsError(f"DATABASE_URL must be a database address like {DATABASE_EXAMPLE}")
    if backend not in DATABASES:
        # Only the scheme is told: the rest may hold a password.
        raise SettingsError(
            f"DATABASE_URL is a {scheme}:// address, but this site works with SQLite and "
            f"PostgreSQL only: use an address like {DATABASE_EXAMPLE}"
        )
    return uri


def _check_sqlite_folder(uri: str, instance: Path) -> None:
    """SQLite makes its file but not the folders above it: say so at start, not as "unable
    to open database file" at the first request. A relative path is under instance/, as
    Flask-SQLAlchemy reads it."""
    url = make_url(uri)
    name = url.database or ""
    if url.get_backend_name() != "sqlite" or name in ("", ":memory:") or url.query.get("uri"):
        return
    folder = (instance / name).parent  # an absolute name replaces instance/ altogether
    if not folder.is_dir() and folder != instance:  # instance/ is made when it is missing
        raise SettingsError(
            f"DATABASE_URL names a SQLite file in {folder}, a folder that does not exist: "
            "create the folder, or correct the address"
        )


def load(instance: Path, test_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the app's settings from defaults, instance/settings.py, the environment, tests."""
    config: dict[str, Any] = dict(DEFAULTS)
    settings_file = instance / "settings.py"
    if settings_file.is_file():
        config.update(_read_settings_file(settings_file))
    if test_config is None:
        for name, default in DEFAULTS.items():
            if name in os.environ:
                config[name] = _coerce(name, default, os.environ[name])
        _warn_of_misspelt_settings(os.environ)
    else:
        config.update(test_config)
    _check_rate_limits(config)
    for name in AT_LEAST_ONE:
        if int(config[name]) < 1:
            raise SettingsError(f"{name} must be 1 or more, like {DEFAULTS[name]}")
    if int(config["TRUSTED_PROXIES"]) < 0:
        raise SettingsError(
            "TRUSTED_PROXIES must be 0 or more: the number of reverse proxies in front of the "
            "site, 0 when there are none"
        )
    for name, (smallest, what) in SMALLEST_BODY.items():
        if int(config[name]) < smallest:
            raise SettingsError(
                f"{name} must be at least {smallest} (bytes): below that, {what} could be "
                f"refused as too large. The default is {DEFAULTS[name]}."
            )
    # Settings used as they are, in signatures and in addresses given to Stripe: a stray
    # space or newline would refuse every webhook or break every return address.
    for name in ("SITE_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
        config[name] = str(config[name] or "").strip()
    site = urlsplit(config["SITE_URL"])
    if config["SITE_URL"] and (site.scheme not in ("http", "https") or not site.hostname):
        raise SettingsError(
            "SITE_URL must be the site's public address with its https://, like "
            f"https://donate.example.org, not {config['SITE_URL']!r}"
        )

    if not config.get("SQLALCHEMY_DATABASE_URI"):
        if not config["DATABASE_URL"]:
            instance.mkdir(parents=True, exist_ok=True)  # the embedded database lives here
        config["SQLALCHEMY_DATABASE_URI"] = config["DATABASE_URL"] or (
            f"sqlite:///{instance / 'renate.db'}"
        )
    config["SQLALCHEMY_DATABASE_URI"] = _database_uri(str(config["SQLALCHEMY_DATABASE_URI"]))
    _check_sqlite_folder(config["SQLALCHEMY_DATABASE_URI"], instance)
    if not config["SECRET_KEY"]:
        config["SECRET_KEY"] = _instance_secret_key(instance)
    elif len(str(config["SECRET_KEY"])) < MIN_SECRET_KEY_LENGTH:
        raise SettingsError(
            f"SECRET_KEY is shorter than {MIN_SECRET_KEY_LENGTH} characters: a short or "
            "placeholder key can be guessed, and with it anyone can sign themselves in as "
            f"an admin. Make one with: {MAKE_A_KEY}"
        )

    config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    # A form's token lasts as long as the browser's session cookie (an admin's ends at
    # sign-out or its timeouts), not a fixed few hours: a pledge typed slowly, or an admin
    # tab left open, is not refused and made to start again.
    config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    # hide_parameters: a failed statement's error (logged, shown when debugging) would
    # otherwise carry its values, a pledge's intention among them, into the log.
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True, "hide_parameters": True})
    return config
