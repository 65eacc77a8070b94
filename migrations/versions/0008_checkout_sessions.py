"""Every Checkout session a gift was sent to, so the thank-you page finds the gift from any.

Filled here with each gift's current session.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "checkout_session",
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("donation_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["donation_id"],
            ["donation.id"],
            name=op.f("fk_checkout_session_donation_id_donation"),
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_checkout_session")),
    )
    with op.batch_alter_table("checkout_session", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_checkout_session_donation_id"), ["donation_id"], unique=False
        )
    op.execute(
        "INSERT INTO checkout_session (session_id, donation_id, created_at) "
        "SELECT stripe_session_id, id, created_at FROM donation "
        "WHERE stripe_session_id IS NOT NULL"
    )


def downgrade():
    with op.batch_alter_table("checkout_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkout_session_donation_id"))
    op.drop_table("checkout_session")
