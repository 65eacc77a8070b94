"""Stream rows as CSV, shared by the admin view and the CLI, so both write the same bytes.

The rows are read in batches through a server-side cursor where the database has one,
and each batch is sent on before the next is read: memory stays flat however many rows.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import Select, select

from .forms import country_names
from .models import Donation, Pledge, db
from .records import (
    DonationFilters,
    PledgeFilters,
    audit,
    filter_donations,
    filter_pledges,
    rhythm_label,
    status_word,
)
from .records import minor_to_text as amount_text

BOM = "\ufeff"
BATCH_SIZE = 2000
# A spreadsheet reads a cell starting with one of these as a formula (or the start of one).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """Make a cell that a spreadsheet would run as a formula read as plain text.

    Leading whitespace is looked past too, since some spreadsheets trim it on import:
    " =1+1" becomes "' =1+1". The quote is the only change; the text is kept whole.
    """
    # Full-width forms (U+FF1D, U+FF0B...) are folded too: some spreadsheets read them as the
    # ASCII sign when a sheet is set to an East Asian locale.
    start = unicodedata.normalize("NFKC", text.lstrip()[:1])
    if text.startswith(FORMULA_START) or start.startswith(FORMULA_START):
        return "'" + text
    return text


def iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def cell(value: Any) -> str:
    """One value as the text of a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return iso_utc(value)
    return neutralise(str(value))


@dataclass(frozen=True)
class Export:
    """A list to export: its name, header, query and how a database row becomes a CSV row."""

    name: str
    header: Sequence[str]
    query: Select[Any]
    to_row: Callable[[Any], Iterable[Any]]
    filters: dict[str, str]

    def filename(self, today: date) -> str:
        return f"renate-{self.name}-{today.isoformat()}.csv"


def pledge_export(filters: PledgeFilters) -> Export:
    """The pledges the filters select, with the consent each was given under."""
    columns = (
        Pledge.created_at,
        Pledge.name,
        Pledge.email,
        Pledge.country,
        Pledge.rhythm,
        Pledge.intention,
        Pledge.show_publicly,
        Pledge.consent_version,
        Pledge.consented_at,
    )
    names = country_names()

    def to_row(row: Any) -> Iterable[Any]:
        created, name, email, country, rhythm, intention, public, version, consented = row
        return (
            created,
            name,
            email,
            country,
            names.get(country, country) if country else None,
            rhythm_label(rhythm),
            intention,
            public,
            version,
            consented,
        )

    return Export(
        name="pledges",
        header=(
            "Pledged at (UTC)",
            "Name",
            "Email",
            "Country code",
            "Country",
            "How they pray",
            "Prayer intention",
            "Shown publicly",
            "Consent version",
            "Consented at (UTC)",
        ),
        query=filter_pledges(select(*columns), filters),
        to_row=to_row,
        filters=filters.active(),
    )


def donation_export(filters: DonationFilters) -> Export:
    """The donations the filters select; amounts in major units beside their currency."""
    columns = (
        Donation.created_at,
        Donation.reference,
        Donation.livemode,
        Donation.status,
        Donation.frequency,
        Donation.currency,
        Donation.amount,
        Donation.fee_covered,
        Donation.amount_received,
        Donation.amount_refunded,
        Donation.donor_name,
        Donation.donor_email,
        Donation.anonymous,
        Donation.dedication_kind,
        Donation.dedication_name,
        Donation.message,
        Donation.paid_at,
    )

    def to_row(row: Any) -> Iterable[Any]:
        (created, reference, live, status, frequency, currency, amount, fee, received,
         refunded, name, email, anonymous, kind, honoured, message, paid) = row  # fmt: skip
        return (
            created,
            reference,
            "live" if live else "test",
            status_word(status),
            frequency.replace("_", "-"),
            currency,
            amount_text(amount, currency),
            amount_text(fee, currency),
            amount_text(amount + fee, currency),
            amount_text(received, currency),
            amount_text(refunded, currency),
            name,
            email,
            anonymous,
            kind,
            honoured,
            message,
            paid,
        )

    return Export(
        name="donations",
        header=(
            "Created at (UTC)",
            "Reference",
            "Mode",
            "Status",
            "Frequency",
            "Currency",
            "Gift",
            "Fee covered",
            "Charged each time",
            "Received",
            "Refunded",
            "Donor name",
            "Donor email",
            "Anonymous",
            "Dedication",
            "Dedicated to",
            "Message",
            "Paid at (UTC)",
        ),
        query=filter_donations(select(*columns), filters),
        to_row=to_row,
        filters=filters.active(),
    )


def csv_lines(header: Sequence[str], rows: Iterable[Iterable[Any]]) -> Iterator[bytes]:
    """RFC 4180 CSV as UTF-8 with a byte-order mark (so Excel shows accents), a line a row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    yield (BOM + buffer.getvalue()).encode("utf-8")
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([cell(value) for value in row])
        yield buffer.getvalue().encode("utf-8")


def audited_filters(filters: dict[str, str]) -> dict[str, str]:
    """The filters as the audit log keeps them: search text may be a person's name or
    email, which must not outlive that person's erasure, so only its use is recorded."""
    if "q" in filters:
        return {**filters, "q": "(search text)"}
    return filters


def stream_csv(export: Export, actor: str, via: str) -> Iterator[bytes]:
    """The export as CSV bytes, a batch at a time; audited once it ends, however it ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(export.header)
    rows = 0
    complete = False
    result = None
    try:
        yield (BOM + buffer.getvalue()).encode("utf-8")
        result = db.session.execute(export.query.execution_options(yield_per=BATCH_SIZE))
        for batch in result.partitions():
            buffer.seek(0)
            buffer.truncate()
            writer.writerows([cell(v) for v in export.to_row(row)] for row in batch)
            rows += len(batch)
            yield buffer.getvalue().encode("utf-8")
        complete = True
    finally:
        if result is not None:
            result.close()
        details = {"filters": audited_filters(export.filters), "via": via}
        if not complete:
            details["complete"] = "no"
        audit(actor, f"export_{export.name}", details, row_count=rows)
        current_app.logger.info(
            "export of %s by %s via %s: %d rows, filters on %s%s",
            export.name,
            actor,
            via,
            rows,
            ", ".join(sorted(export.filters)) or "nothing",
            "" if complete else " (stopped before the end)",
        )
