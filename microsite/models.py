"""Typed SQLAlchemy 2 models. The schema itself is made only by the migrations."""

from __future__ import annotations

import enum
import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    inspect,
    text,
)
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from .text import search_key

# Named constraints let SQLite's batch migrations find and alter them later.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always stored and returned as UTC, on SQLite as on Postgres."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite keeps no zone: what we stored was UTC
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _search_key_of(column: str) -> Callable[[DefaultExecutionContext], str | None]:
    """A column default: the search key of the name being inserted in the same row.

    For rows inserted without going through the model's attributes, as a pledge is (one
    INSERT ... ON CONFLICT DO NOTHING); a name set on a model sets its key at once.
    """

    def default(context: DefaultExecutionContext) -> str | None:
        return search_key(context.get_current_parameters().get(column))

    return default


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)


# --------------------------------------------------------------------------- pledges


class PrayerRhythm(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    FEB8 = "feb8"

    @property
    def label(self) -> str:
        return PRAYER_RHYTHM_LABELS[self]


PRAYER_RHYTHM_LABELS = {
    PrayerRhythm.DAILY: "Every day",
    PrayerRhythm.WEEKLY: "Every week",
    PrayerRhythm.FEB8: (
        "On 8 February, the International Day of Prayer and Awareness against Human Trafficking"
    ),
}


class Pledge(db.Model):
    """A promise to pray, with the consent that allows us to keep it (GDPR Art. 9)."""

    __tablename__ = "pledge"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # The name without capitals or accents, which the admin search looks in (search_key).
    # Text, as folding can lengthen a name past its 100 characters ("ß" is "ss"). No
    # index: the search looks anywhere in the name, which no index can help with.
    name_key: Mapped[str] = mapped_column(Text, default=_search_key_of("name"))
    email: Mapped[str] = mapped_column(String(254))
    # The address case-folded: one pledge per person, however they type it.
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    country: Mapped[str | None] = mapped_column(String(2), index=True)
    rhythm: Mapped[str] = mapped_column(String(16), index=True)
    intention: Mapped[str | None] = mapped_column(Text)
    show_publicly: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_version: Mapped[str] = mapped_column(String(40))
    consented_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    @validates("name")
    def _key_the_name(self, _field: str, name: str) -> str:
        self.name_key = search_key(name)
        return name

    @property
    def rhythm_label(self) -> str:
        try:
            return PrayerRhythm(self.rhythm).label
        except ValueError:
            return self.rhythm


# --------------------------------------------------------------------------- donations


class DonationStatus(enum.StrEnum):
    """Where a gift stands. Webhooks move a gift only forward through STATUS_RANK."""

    PENDING = "pending"  # stored, Checkout being created
    NOT_STARTED = "not_started"  # Stripe could not be reached; no session exists
    OPEN = "open"  # Checkout session created, donor is on Stripe's page
    PROCESSING = "processing"  # completed with a delayed payment method
    PAID = "paid"  # money received (for monthly: first payment received, gift active)
    FAILED = "failed"  # delayed payment failed
    ABANDONED = "abandoned"  # session expired unpaid
    ENDED = "ended"  # monthly gift's subscription ended
    REFUNDED = "refunded"  # fully refunded


# How far along each status is. Events arrive out of order: a gift only ever moves to a
# status of higher rank, so a late "completed" never undoes "refunded" or "ended".
STATUS_RANK: dict[str, int] = {
    DonationStatus.PENDING: 0,
    DonationStatus.NOT_STARTED: 1,
    DonationStatus.OPEN: 2,
    DonationStatus.PROCESSING: 3,
    DonationStatus.FAILED: 4,
    DonationStatus.ABANDONED: 4,
    DonationStatus.PAID: 5,
    DonationStatus.ENDED: 6,
    DonationStatus.REFUNDED: 7,
}


class Frequency(enum.StrEnum):
    ONE_TIME = "one_time"
    MONTHLY = "monthly"

    @property
    def label(self) -> str:
        return "Monthly" if self is Frequency.MONTHLY else "One-time"


def _reference() -> str:
    return uuid.uuid4().hex


class Donation(db.Model):
    """One gift: a one-time payment or a monthly subscription, in minor units."""

    __tablename__ = "donation"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unguessable id shown to the donor and sent to Stripe in metadata.
    reference: Mapped[str] = mapped_column(String(32), unique=True, default=_reference)
    amount: Mapped[int] = mapped_column(Integer)  # the gift, minor units
    fee_covered: Mapped[int] = mapped_column(Integer, default=0)  # added to cover fees
    currency: Mapped[str] = mapped_column(String(3), index=True)  # ISO 4217, upper case
    frequency: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16), default=DonationStatus.PENDING, index=True)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    donor_name: Mapped[str | None] = mapped_column(String(100))
    # As Pledge.name_key: the name as the admin search finds it; blank when the name is.
    donor_name_key: Mapped[str | None] = mapped_column(Text, default=_search_key_of("donor_name"))
    donor_email: Mapped[str | None] = mapped_column(String(254))
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    dedication_kind: Mapped[str | None] = mapped_column(String(16))  # honour | memory
    dedication_name: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(Text)
    stripe_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_payment_intent: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_subscription: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_customer: Mapped[str | None] = mapped_column(String(255))
    amount_received: Mapped[int] = mapped_column(Integer, default=0)  # running total
    amount_refunded: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    payments: Mapped[list[DonationPayment]] = relationship(
        back_populates="donation", order_by="DonationPayment.id", cascade="all, delete-orphan"
    )

    @validates("donor_name")
    def _key_the_name(self, _field: str, name: str | None) -> str | None:
        self.donor_name_key = search_key(name)
        return name

    @property
    def total(self) -> int:
        """What the donor is charged each time: the gift plus any fee they chose to cover."""
        return self.amount + self.fee_covered

    def advance(self, status: DonationStatus) -> bool:
        """Move to a later status; an earlier or equal one is ignored. True if it moved."""
        if STATUS_RANK[status] <= STATUS_RANK.get(self.status, 0):
            return False
        self.status = status
        return True


class DonationPayment(db.Model):
    """One payment received for a gift: the one-time charge, or one month of a monthly gift."""

    __tablename__ = "donation_payment"

    id: Mapped[int] = mapped_column(primary_key=True)
    donation_id: Mapped[int] = mapped_column(ForeignKey("donation.id"), index=True)
    # The invoice (monthly) or payment intent (one-time) that paid it: unique, so a
    # session completion and the first month's invoice can never count twice.
    stripe_ref: Mapped[str] = mapped_column(String(255), unique=True)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    donation: Mapped[Donation] = relationship(back_populates="payments")


class CheckoutSession(db.Model):
    """Every Checkout session a gift was sent to. A retry a day later, when Stripe has
    forgotten the first call, makes a new one; a donor who still pays on the older page
    comes back with its id, and is shown their gift all the same."""

    __tablename__ = "checkout_session"

    session_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    donation_id: Mapped[int] = mapped_column(ForeignKey("donation.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ChargeRefund(db.Model):
    """How much of one Stripe charge has been refunded, as the latest event says.

    Stripe reports a charge's refunds as a running total; keeping it per charge lets a gift's
    refunded amount be their sum, whatever order or number of refund events arrive in.
    """

    __tablename__ = "charge_refund"

    charge_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    donation_id: Mapped[int] = mapped_column(ForeignKey("donation.id"), index=True)
    amount_refunded: Mapped[int] = mapped_column(Integer)
    # The charge's currency: only refunds in the gift's own currency add up to its total.
    currency: Mapped[str] = mapped_column(String(3))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class PendingEvent(db.Model):
    """A refund or a month's payment that arrived before its gift could be known.

    Kept with the Stripe ids that may later tie it to a gift, and applied when an event
    teaches a gift one of them. Only the fields the webhook reads are kept, never names,
    emails or addresses.
    """

    __tablename__ = "pending_event"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    payment_intent: Mapped[str | None] = mapped_column(String(255), index=True)
    customer: Mapped[str | None] = mapped_column(String(255), index=True)
    subscription: Mapped[str | None] = mapped_column(String(255), index=True)
    invoice: Mapped[str | None] = mapped_column(String(255), index=True)
    data: Mapped[str] = mapped_column(Text)  # JSON: the event's object, as little as is needed
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class WebhookEvent(db.Model):
    """A Stripe event applied once; its id is the primary key, so a repeat cannot apply."""

    __tablename__ = "webhook_event"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str] = mapped_column(String(40), default="applied")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --------------------------------------------------------------------------- admin


class AdminUser(db.Model):
    """A member of staff who may sign in to /admin."""

    __tablename__ = "admin_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored case-folded
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped at logout and password change: every older session cookie stops working.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditLog(db.Model):
    """Who did what with personal data: exports, erasures, sign-ins. Never the data itself."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(254))  # an admin's email, or "shell"
    action: Mapped[str] = mapped_column(String(40), index=True)
    details: Mapped[str | None] = mapped_column(Text)  # JSON
    row_count: Mapped[int | None] = mapped_column(Integer)


# --------------------------------------------------------------------------- schema


@functools.cache
def _migrations() -> tuple[str | None, frozenset[str]]:
    """The newest migration in migrations/ (the schema this code expects), and all of them."""
    from alembic.script import ScriptDirectory

    from .config import ROOT

    scripts = ScriptDirectory(str(ROOT / "migrations"))
    return scripts.get_current_head(), frozenset(r.revision for r in scripts.walk_revisions())


# Schema states in which this code cannot work until `flask db upgrade` is run.
NEEDS_UPGRADE = frozenset({"missing", "behind"})


def schema_state() -> str:
    """Where the database's schema stands against this code's migrations: "current";
    "missing" (never upgraded) or "behind" (`flask db upgrade` not yet run for this
    release); or "ahead" (upgraded by a newer release)."""
    # Read straight from Alembic's table: its MigrationContext would log two lines each time,
    # and /healthz asks on every probe.
    connection = db.session.connection()
    version = None
    if inspect(connection).has_table("alembic_version"):
        version = connection.scalar(text("SELECT version_num FROM alembic_version"))
    head, known = _migrations()
    if version == head:
        return "current"
    if version is None:
        return "missing"
    return "behind" if version in known else "ahead"
