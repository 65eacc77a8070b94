"""Record prayer pledges and count them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .models import Pledge, db, utcnow


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
    address must not be able to change that person's pledge.
    """
    key = email_key(data.email)
    if db.session.scalar(select(Pledge.id).where(Pledge.email_key == key)) is not None:
        return False
    now = utcnow()
    pledge = Pledge(
        name=data.name,
        email=data.email,
        email_key=key,
        country=data.country or None,
        rhythm=data.rhythm,
        intention=data.intention or None,
        show_publicly=data.show_publicly,
        consent_version=data.consent_version,
        consented_at=now,
        created_at=now,
    )
    db.session.add(pledge)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        # The same address pledged in a concurrent request: theirs stands. Any other
        # failure is not a pledge already made, and must not be thanked as one.
        if db.session.scalar(select(Pledge.id).where(Pledge.email_key == key)) is None:
            raise
        return False
    return True


def recent_public_pledgers(limit: int = 5) -> list[tuple[str, str | None]]:
    """First names and countries of the latest people who agreed to be shown."""
    rows = db.session.execute(
        select(Pledge.name, Pledge.country)
        .where(Pledge.show_publicly.is_(True))
        .order_by(Pledge.created_at.desc(), Pledge.id.desc())
        .limit(limit)
    )
    return [(name.split()[0] if name.split() else name, country) for name, country in rows]


def pledge_count() -> int:
    return db.session.scalar(select(func.count(Pledge.id))) or 0


@dataclass(frozen=True)
class PublicSummary:
    """What anyone may see: how many pledged, and who chose to be named."""

    count: int
    recent: list[tuple[str, str | None]]


def public_summary() -> PublicSummary:
    return PublicSummary(count=pledge_count(), recent=recent_public_pledgers())
