"""Record prayer pledges and count them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from .models import Pledge, db, utcnow
from .text import looks_like_an_address


@dataclass(frozen=True)
class PledgeInput:
    name: str
    email: str
    rhythm: str
    consent_version: str
    country: str | None = None
    intention: str | None = None
    show_publicly: bool = False


def email_key(email: str) -> str:
    """An address compared without regard to capitals: MARIA@Example.org is maria@example.org.

    lower(), not casefold(): casefold would make "straße@" and "strasse@" one address,
    and they are two mailboxes.
    """
    return email.strip().lower()


def record_pledge(data: PledgeInput) -> bool:
    """Store a pledge unless this address has already pledged. True if a row was added.

    An existing pledge is left exactly as it was: someone typing another person's
    address must not be able to change that person's pledge. A new and a repeated
    address take the same path, one insert that the unique key may turn into nothing,
    so neither the answer nor its timing tells a stranger which it was; two requests
    for one address at the same moment store it once.
    """
    now = utcnow()
    values = {
        "name": data.name,
        "email": data.email,
        "email_key": email_key(data.email),
        "country": data.country or None,
        "rhythm": data.rhythm,
        "intention": data.intention or None,
        "show_publicly": data.show_publicly,
        "consent_version": data.consent_version,
        "consented_at": now,
        "created_at": now,
    }
    insert = _insert_for(db.session.get_bind().dialect.name)
    statement = (
        insert(Pledge)
        .values(values)
        .on_conflict_do_nothing(index_elements=["email_key"])
        .returning(Pledge.id)
    )
    # The new row's id, or nothing when the address was there (rowcount is not reliable
    # for this on every driver: psycopg reports -1).
    added = db.session.execute(statement).scalar() is not None
    db.session.commit()
    return added


def _insert_for(dialect: str) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING (SQLite and PostgreSQL)."""
    if dialect == "postgresql":
        return postgresql.insert
    return sqlite.insert


# Titles people put before their name, in the languages RENATE's members write: shown with
# the word after them, since "Sr." alone names no one ("Sr. Mary" rather than "Sr.").
TITLES = frozenset(
    {
        "sr", "sister", "fr", "father", "br", "brother", "rev", "revd", "reverend", "mother",
        "msgr", "mgr", "dr", "mr", "mrs", "ms", "miss", "fra", "suor", "suora", "padre",
        "madre", "hermana", "hermano", "sor", "schwester", "pater", "bruder", "soeur", "sœur",
        "père", "ks", "siostra", "brat", "ojciec",
    }
)  # fmt: skip
# Words that are titles to some and first names to others: "Don Luigi Ciotti" is a priest,
# "Don Smith Jr." a Donald. Nothing in a name tells them apart, and the word after a
# Donald is his surname, so these count as titles only with a dot ("Dom. Columba"): a
# priest may be shown as "Don" alone, but no one's surname is shown by mistake.
# (Unaccented "Pere" is not here at all: it is Catalan for Peter.)
FIRST_NAME_TITLES = frozenset({"don", "dom", "mons"})
# Polish "s." (siostra) and "o." (ojciec) are titles only with their dot: "O Neill" is a name.
DOTTED_TITLES = frozenset({"s.", "o."})


def _is_title(word: str) -> bool:
    folded = word.casefold()
    bare = folded.rstrip(".")
    if bare in FIRST_NAME_TITLES:
        return folded != bare
    return bare in TITLES or folded in DOTTED_TITLES


def public_name(name: str) -> str:
    """The first word of a name as typed, with any titles before it: "Sr. Mary Kelly" shows
    as "Sr. Mary", "Kovács Anna" as "Kovács", "王小明" whole."""
    shown: list[str] = []
    for word in name.split():
        shown.append(word)
        if not _is_title(word):
            break
    return " ".join(shown) or name


def recent_public_pledgers(limit: int = 5) -> list[tuple[str, str | None]]:
    """The latest people who agreed to be shown: the first word of each name, and country.

    The first word, as typed, whatever it is (see public_name): in "Kovács Anna" the family
    name, in "王小明" the whole name. The form says so beside the box that agrees to it.
    A name that is an email or web address is never shown: the form refuses one, but a
    pledge stored before it did may hold one, and the next name takes its place.
    """
    rows = db.session.execute(
        select(Pledge.name, Pledge.country)
        .where(Pledge.show_publicly.is_(True))
        .order_by(Pledge.created_at.desc(), Pledge.id.desc())
        .limit(limit * 4)  # a few spare rows, for the addresses passed over
    )
    shown = ((public_name(name), country) for name, country in rows)
    return [(name, country) for name, country in shown if not looks_like_an_address(name)][:limit]


def pledge_count() -> int:
    return db.session.scalar(select(func.count(Pledge.id))) or 0


@dataclass(frozen=True)
class PublicSummary:
    """What anyone may see: how many pledged, and who chose to be named."""

    count: int
    recent: list[tuple[str, str | None]]


def public_summary() -> PublicSummary:
    return PublicSummary(count=pledge_count(), recent=recent_public_pledgers())
