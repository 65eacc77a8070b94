"""Pledge email keys compare capitals only: "straße@" and "strasse@" are two addresses.

Keys were made with casefold(), which also folds ß into ss and the like; they are now
lower(). Only addresses with such letters change, and no two can collide: casefold() is
the coarser of the two, so addresses that were apart stay apart.

Revision ID: 0005
Revises: 0004
"""

from collections import Counter

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

pledge = sa.table(
    "pledge",
    sa.column("id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("email_key", sa.String),
)


def upgrade():
    connection = op.get_bind()
    rows = connection.execute(sa.select(pledge.c.id, pledge.c.email, pledge.c.email_key))
    changed = [
        {"row_id": row_id, "key": email.strip().lower()}
        for row_id, email, key in rows
        if email.strip().lower() != key
    ]
    _store_keys(connection, changed)


def downgrade():
    # Back to casefold() keys, which the code before this revision looks pledges up by.
    # Where two people's addresses would fold into one key (straße@ and strasse@), both
    # keep their lower() key: the unique key allows no other way, and neither is lost.
    connection = op.get_bind()
    rows = list(connection.execute(sa.select(pledge.c.id, pledge.c.email, pledge.c.email_key)))
    folded = Counter(email.strip().casefold() for _, email, _ in rows)
    changed = [
        {"row_id": row_id, "key": email.strip().casefold()}
        for row_id, email, key in rows
        if folded[email.strip().casefold()] == 1 and email.strip().casefold() != key
    ]
    _store_keys(connection, changed)


def _store_keys(connection, changed):
    """Write each {"row_id", "key"} pair in one executemany."""
    if changed:
        connection.execute(
            pledge.update()
            .where(pledge.c.id == sa.bindparam("row_id"))
            .values(email_key=sa.bindparam("key")),
            changed,
        )
