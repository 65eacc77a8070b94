"""The admin area's services: filter, count, find and erase the personal data we hold.

The lists, their CSV exports and the shell export all build their query here, so an
export holds exactly the rows the list showed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, delete, desc, false, func, or_, select, text

from .forms import country_names
from .models import (
    AuditLog,
    ChargeRefund,
    Donation,
    DonationPayment,
    DonationStatus,
    Frequency,
    PendingEvent,
    Pledge,
    PrayerRhythm,
    db,
    utcnow,
)
from .money import donation_settings, exponent, to_major
from .payments import REFUSED_NOTE
from .pledges import email_key
from .text import search_key, stored_email

# Money that reached us: a gift counts once paid, and stays counted if later ended.
RECEIVED = (DonationStatus.PAID, DonationStatus.ENDED, DonationStatus.REFUNDED)


def minor_to_text(amount: int, currency: str) -> str:
    """Minor units as a plain decimal string, e.g. 2550 EUR -> "25.50", 1000 JPY -> "1000"."""
    return f"{to_major(amount, currency):.{exponent(currency)}f}"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class _Filters:
    """What both lists can be narrowed by. Dates are whole UTC days, both included."""

    q: str = ""
    since: date | None = None
    until: date | None = None

    def active(self) -> dict[str, str]:
        """The filters in use, as text: for links, the audit log and file names."""
        return {
            k: v.isoformat() if isinstance(v, date) else v for k, v in asdict(self).items() if v
        }


@dataclass(frozen=True)
class PledgeFilters(_Filters):
    """What the pledge list is narrowed to."""

    country: str = ""
    rhythm: str = ""
    public: str = ""  # "", "yes" or "no"


@dataclass(frozen=True)
class DonationFilters(_Filters):
    """What the donation list is narrowed to."""

    status: str = ""
    frequency: str = ""
    currency: str = ""
    mode: str = ""  # "", "live" or "test"


def _dates(query: Select[Any], column: Any, since: date | None, until: date | None) -> Select[Any]:
    # The calendar's first and last days bound nothing, and the day after the last one
    # does not exist: either end of it leaves that side of the range open.
    if since and since > date.min:
        query = query.where(column >= _day_start(since))
    if until and until < date.max:
        query = query.where(column < _day_start(until + timedelta(days=1)))
    return query


def _name_has(key_column: Any, q: str) -> Any:
    """Whether a name holds the search text, capitals and accents set aside on both sides:
    "novak" finds "Novák", and "Zoë" finds "Zoe". Text that folds to nothing (marks alone)
    finds no name, rather than every one."""
    key = search_key(q)
    return key_column.contains(key, autoescape=True) if key else false()


def filter_pledges(query: Select[Any], filters: PledgeFilters) -> Select[Any]:
    """Narrow a pledge query to the filters, newest first."""
    if filters.q:
        query = query.where(
            or_(
                _name_has(Pledge.name_key, filters.q),
                Pledge.email_key.contains(email_key(stored_email(filters.q)), autoescape=True),
            )
        )
    query = _dates(query, Pledge.created_at, filters.since, filters.until)
    if filters.country == "none":
        query = query.where(Pledge.country.is_(None))
    elif filters.country:
        query = query.where(Pledge.country == filters.country)
    if filters.rhythm:
        query = query.where(Pledge.rhythm == filters.rhythm)
    if filters.public:
        query = query.where(Pledge.show_publicly.is_(filters.public == "yes"))
    return query.order_by(desc(Pledge.created_at), desc(Pledge.id))


def filter_donations(query: Select[Any], filters: DonationFilters) -> Select[Any]:
    """Narrow a donation query to the filters, newest first."""
    if filters.q:
        query = query.where(
            or_(
                _name_has(Donation.donor_name_key, filters.q),
                Donation.donor_email.icontains(stored_email(filters.q), autoescape=True),
                # Donors are shown the reference's first 8 characters; they may quote those.
                Donation.reference.startswith(filters.q.strip().lower(), autoescape=True)
                if len(filters.q.strip()) >= 8
                else false(),
            )
        )
    query = _dates(query, Donation.created_at, filters.since, filters.until)
    if filters.status:
        query = query.where(Donation.status == filters.status)
    if filters.frequency:
        query = query.where(Donation.frequency == filters.frequency)
    if filters.currency:
        query = query.where(Donation.currency == filters.currency.upper())
    if filters.mode:
        query = query.where(Donation.livemode.is_(filters.mode == "live"))
    return query.order_by(desc(Donation.created_at), desc(Donation.id))


def test_donations_among(filters: DonationFilters) -> int:
    """How many test gifts the filters take in: staff exporting for the accounts want none."""
    if filters.mode:
        return 0
    query = filter_donations(select(func.count(Donation.id)), filters).order_by(None)
    return db.session.scalar(query.where(Donation.livemode.is_(False))) or 0


def donation_currencies() -> list[str]:
    """Currencies we take, and any others already in the database."""
    stored = db.session.scalars(select(Donation.currency).distinct())
    return sorted({*donation_settings().currencies, *stored})


# --------------------------------------------------------------------------- dashboard


@dataclass
class DonationSummary:
    """Totals for live or for test donations; the two are never added together."""

    paid: list[dict[str, Any]] = field(default_factory=list)
    active_monthly: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0


def _donation_summary(live: bool) -> DonationSummary:
    mode = Donation.livemode.is_(live)
    summary = DonationSummary()
    summary.count = db.session.scalar(select(func.count(Donation.id)).where(mode)) or 0
    paid = db.session.execute(
        select(
            Donation.currency,
            Donation.frequency,
            func.count(Donation.id),
            func.sum(Donation.amount_received),
        )
        .where(mode, Donation.status.in_(RECEIVED))
        .group_by(Donation.currency, Donation.frequency)
        .order_by(Donation.currency, Donation.frequency)
    )
    by_currency: dict[str, dict[str, Any]] = {}
    for currency, frequency, count, total in paid:
        row = by_currency.setdefault(
            currency, {"currency": currency, "one_time": 0, "monthly": 0, "gifts": 0, "total": 0}
        )
        key = "monthly" if frequency == Frequency.MONTHLY else "one_time"
        row[key] += total or 0
        row["gifts"] += count
        row["total"] += total or 0
    summary.paid = list(by_currency.values())
    monthly = db.session.execute(
        select(
            Donation.currency,
            func.count(Donation.id),
            func.sum(Donation.amount + Donation.fee_covered),
        )
        .where(
            mode, Donation.frequency == Frequency.MONTHLY, Donation.status == DonationStatus.PAID
        )
        .group_by(Donation.currency)
        .order_by(Donation.currency)
    )
    summary.active_monthly = [
        {"currency": c, "gifts": n, "per_month": total or 0} for c, n, total in monthly
    ]
    refunds = db.session.execute(
        select(Donation.currency, func.count(Donation.id), func.sum(Donation.amount_refunded))
        .where(mode, Donation.amount_refunded > 0)
        .group_by(Donation.currency)
        .order_by(Donation.currency)
    )
    summary.refunds = [{"currency": c, "gifts": n, "total": total or 0} for c, n, total in refunds]
    refunded = {row["currency"]: row["total"] for row in summary.refunds}
    for row in summary.paid:
        row["refunded"] = refunded.get(row["currency"], 0)
        row["net"] = row["total"] - row["refunded"]
    return summary


def dashboard() -> dict[str, Any]:
    """The figures on the admin home page."""
    now = utcnow()
    count = func.count(Pledge.id)
    total, last_7, last_30 = db.session.execute(
        select(
            count,
            count.filter(Pledge.created_at >= now - timedelta(days=7)),
            count.filter(Pledge.created_at >= now - timedelta(days=30)),
        )
    ).one()
    rhythms = dict(db.session.execute(select(Pledge.rhythm, count).group_by(Pledge.rhythm)).all())
    by_rhythm = [(r.label, r.value, rhythms.get(r.value, 0)) for r in PrayerRhythm]
    countries = db.session.execute(
        select(Pledge.country, count)
        .group_by(Pledge.country)
        .order_by(desc(count), Pledge.country)
        .limit(8)
    ).all()
    recent_pledges = db.session.scalars(
        select(Pledge).order_by(desc(Pledge.created_at), desc(Pledge.id)).limit(8)
    ).all()
    recent_donations = db.session.scalars(
        select(Donation).order_by(desc(Donation.created_at), desc(Donation.id)).limit(8)
    ).all()
    recent: list[tuple[datetime, str, Any]] = [
        *((p.created_at, "pledge", p) for p in recent_pledges),
        *((d.created_at, "donation", d) for d in recent_donations),
    ]
    recent.sort(key=lambda item: item[0], reverse=True)
    return {
        "pledges": {
            "total": total,
            "last_7": last_7,
            "last_30": last_30,
            "by_rhythm": by_rhythm,
            "countries": countries,
        },
        "live": _donation_summary(live=True),
        "test": _donation_summary(live=False),
        "recent": recent[:10],
        "attention": needs_a_look(),
    }


def needs_a_look() -> dict[str, Any]:
    """Money the totals leave out on purpose, for staff to check in the Stripe Dashboard.

    Checkouts Stripe refused this week (a wrong key or setting: no donor can give until it
    is put right), Stripe events still waiting for the gift they belong to, and payments or
    refunds made in a currency other than their gift's (kept, never added to its totals).
    """
    waiting, oldest = db.session.execute(
        select(func.count(PendingEvent.event_id), func.min(PendingEvent.received_at))
    ).one()
    payments = db.session.execute(
        select(
            Donation.reference, Donation.livemode, DonationPayment.amount, DonationPayment.currency
        )
        .join(Donation, DonationPayment.donation_id == Donation.id)
        .where(DonationPayment.currency != Donation.currency)
        .order_by(desc(DonationPayment.created_at))
        .limit(20)
    ).all()
    refunds = db.session.execute(
        select(
            Donation.reference,
            Donation.livemode,
            ChargeRefund.amount_refunded,
            ChargeRefund.currency,
        )
        .join(Donation, ChargeRefund.donation_id == Donation.id)
        .where(ChargeRefund.currency != Donation.currency)
        .order_by(desc(ChargeRefund.updated_at))
        .limit(20)
    ).all()
    refused_this_week = (
        Donation.failure_reason.startswith(REFUSED_NOTE, autoescape=True),
        Donation.created_at >= utcnow() - timedelta(days=7),
        # Paid after all, on a later attempt (or its money on the way): the note is old.
        Donation.status.not_in(
            (
                DonationStatus.PROCESSING,
                DonationStatus.PAID,
                DonationStatus.ENDED,
                DonationStatus.REFUNDED,
            )
        ),
    )
    refused = db.session.scalar(select(func.count(Donation.id)).where(*refused_this_week)) or 0
    latest_refusal = None
    if refused:
        latest_refusal = db.session.scalar(
            select(Donation.failure_reason)
            .where(*refused_this_week)
            .order_by(desc(Donation.created_at), desc(Donation.id))
            .limit(1)
        )
    return {
        "refused": refused,
        "latest_refusal": latest_refusal,
        "waiting": waiting or 0,
        "oldest": oldest,
        "other_currency": [("payment", *row) for row in payments]
        + [("refund", *row) for row in refunds],
        # The pledge consent promises people can ask for their data: they need an address.
        "no_contact": not current_app.config["CONTACT_EMAIL"],
    }


# --------------------------------------------------------------------------- audit


def audit(
    actor: str, action: str, details: dict[str, Any] | None = None, row_count: int | None = None
) -> AuditLog:
    """Record what an admin or the shell did. Callers pass no personal data in details."""
    entry = AuditLog(
        actor=actor,
        action=action,
        details=json.dumps(details, sort_keys=True, ensure_ascii=False) if details else None,
        row_count=row_count,
    )
    db.session.add(entry)
    db.session.commit()
    return entry


def audit_details(entry: AuditLog) -> dict[str, Any]:
    return json.loads(entry.details) if entry.details else {}


# --------------------------------------------------------------------------- one person


@dataclass
class Person:
    """Everything we hold about one email address."""

    email: str
    pledge: Pledge | None
    donations: list[Donation]

    @property
    def found(self) -> bool:
        return self.pledge is not None or bool(self.donations)

    @property
    def still_charging(self) -> list[Donation]:
        """Their monthly gifts Stripe may still be charging: erasure here does not stop them."""
        return [d for d in self.donations if may_still_charge(d)]


def find_person(email: str) -> Person:
    """The pledge and donations made with this email address, whatever its case, and
    however the address was written (see stored_email)."""
    email = stored_email(email)
    key = email_key(email)
    pledge = db.session.scalar(select(Pledge).where(Pledge.email_key == key))
    # How a database's lower() treats letters beyond ASCII depends on its build and
    # locale, so the database narrows to the address's domain (stored in lower case) and
    # Python compares whole addresses the way pledges are keyed: an erasure must not miss
    # a donation.
    domain = email.strip().rpartition("@")[2].lower()
    candidates = db.session.scalars(
        select(Donation)
        .where(func.lower(Donation.donor_email).endswith("@" + domain, autoescape=True))
        .order_by(desc(Donation.created_at), desc(Donation.id))
    )
    donations = [d for d in candidates if email_key(d.donor_email or "") == key]
    return Person(email=email.strip(), pledge=pledge, donations=donations)


def _iso(value: datetime | None) -> str | None:
    """A UTC time to the second, as the CSV exports write it."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def status_word(status: str) -> str:
    """Where a gift stands, as the admin pages word it ("not started"), for exports too."""
    return status.replace("_", " ")


def rhythm_label(value: str) -> str:
    """How a pledger prays, in the form's words ("Every day"); an unknown code as it is."""
    try:
        return PrayerRhythm(value).label
    except ValueError:
        return value


# Read by the person they are about, as an answer to a request for a copy: words, as the
# CSV exports give them, rather than the codes the database keeps.
def pledge_record(pledge: Pledge) -> dict[str, Any]:
    return {
        "name": pledge.name,
        "email": pledge.email,
        "country": country_names().get(pledge.country, pledge.country) if pledge.country else None,
        "rhythm": rhythm_label(pledge.rhythm),
        "intention": pledge.intention,
        "show_publicly": pledge.show_publicly,
        "consent_version": pledge.consent_version,
        "consented_at": _iso(pledge.consented_at),
        "created_at": _iso(pledge.created_at),
    }


def donation_record(donation: Donation) -> dict[str, Any]:
    return {
        "reference": donation.reference,
        "created_at": _iso(donation.created_at),
        "mode": "live" if donation.livemode else "test",
        "status": status_word(donation.status),
        "frequency": donation.frequency.replace("_", "-"),
        "currency": donation.currency,
        "amount": minor_to_text(donation.amount, donation.currency),
        "fee_covered": minor_to_text(donation.fee_covered, donation.currency),
        "amount_received": minor_to_text(donation.amount_received, donation.currency),
        "amount_refunded": minor_to_text(donation.amount_refunded, donation.currency),
        "donor_name": donation.donor_name,
        "donor_email": donation.donor_email,
        "anonymous": donation.anonymous,
        "dedication_kind": donation.dedication_kind,
        "dedication_name": donation.dedication_name,
        "message": donation.message,
        "paid_at": _iso(donation.paid_at),
        # Why it did not go ahead; Stripe's words may quote what the donor typed.
        "failure_reason": donation.failure_reason,
    }


def person_data(person: Person) -> dict[str, Any]:
    """One person's data as plain values, for a JSON or CSV download."""
    return {
        "email": person.email,
        "exported_at": _iso(utcnow()),
        "pledge": pledge_record(person.pledge) if person.pledge else None,
        "donations": [donation_record(d) for d in person.donations],
    }


# Where a monthly gift may still be taking money at Stripe: paid or being paid, and never
# reported ended (a refund does not cancel the subscription behind it).
MAY_BE_CHARGING = (DonationStatus.PAID, DonationStatus.PROCESSING, DonationStatus.REFUNDED)


def may_still_charge(donation: Donation) -> bool:
    """Whether Stripe may still be charging this monthly gift: only Stripe can stop it."""
    return (
        donation.frequency == Frequency.MONTHLY
        and donation.status in MAY_BE_CHARGING
        and donation.ended_at is None
    )


def has_stripe_ids(donation: Donation) -> bool:
    return any(
        (
            donation.stripe_customer,
            donation.stripe_subscription,
            donation.stripe_payment_intent,
            donation.stripe_session_id,
        )
    )


ERASED_REASON = "its words were erased with the donor's data."


@dataclass(frozen=True)
class Erasure:
    pledges: int
    donations: int
    references: tuple[str, ...]
    audit_id: int


def erase_person(email: str, actor: str) -> Erasure:
    """Delete the person's pledge and blank them from their donations; log it without them.

    Donations stay, for the accounts, with name, email, message and dedication removed,
    and with Stripe's words for a refused checkout, which may quote them.
    """
    person = find_person(email)
    references = tuple(d.reference for d in person.donations)
    sqlite = db.engine.dialect.name == "sqlite"
    if sqlite:
        # Overwrite what is deleted with zeros, rather than leaving it in free space.
        db.session.execute(text("PRAGMA secure_delete=ON"))
    for donation in person.donations:
        donation.donor_name = None  # and with it the name's search key (see the model)
        donation.donor_email = None
        donation.message = None
        donation.dedication_kind = None
        donation.dedication_name = None
        if (donation.failure_reason or "").startswith(REFUSED_NOTE):
            # Stripe's reason may quote the address or name it refused.
            donation.failure_reason = REFUSED_NOTE + ERASED_REASON
    pledges = 0
    if person.pledge is not None:
        db.session.execute(delete(Pledge).where(Pledge.id == person.pledge.id))
        pledges = 1
    db.session.commit()
    entry = audit(
        actor,
        "erase",
        {"pledges_deleted": pledges, "donations_blanked": list(references)},
        row_count=pledges + len(references),
    )
    if sqlite:
        _checkpoint_sqlite()
    return Erasure(
        pledges=pledges, donations=len(references), references=references, audit_id=entry.id
    )


def _checkpoint_sqlite() -> None:
    """Copy the write-ahead log into the database file and empty it.

    Until then the log still holds the pages as they were before the erasure, names and
    all. Waits (up to the busy timeout) for readers such as a running export to finish.
    """
    with db.engine.connect() as connection:
        busy, _frames, _copied = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    if busy:
        current_app.logger.warning(
            "after an erasure the SQLite write-ahead log was in use and could not be emptied: "
            "erased details may stay in the -wal file until it is; run "
            "PRAGMA wal_checkpoint(TRUNCATE) once nothing is reading"
        )


def erased_donations(entry: AuditLog) -> list[Donation]:
    """The donations an erasure blanked, found again by the references its log entry kept."""
    references = audit_details(entry).get("donations_blanked") or []
    if not references:
        return []
    return list(
        db.session.scalars(
            select(Donation)
            .where(Donation.reference.in_(references))
            .order_by(desc(Donation.created_at), desc(Donation.id))
        )
    )
