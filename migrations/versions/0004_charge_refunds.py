"""Refunds kept per Stripe charge, so a gift's refunded total is exact in any event order.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "charge_refund",
        sa.Column("charge_id", sa.String(length=255), nullable=False),
        sa.Column("donation_id", sa.Integer(), nullable=False),
        sa.Column("amount_refunded", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["donation_id"],
            ["donation.id"],
            name=op.f("fk_charge_refund_donation_id_donation"),
        ),
        sa.PrimaryKeyConstraint("charge_id", name=op.f("pk_charge_refund")),
    )
    with op.batch_alter_table("charge_refund", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_charge_refund_donation_id"), ["donation_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("charge_refund", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_charge_refund_donation_id"))
    op.drop_table("charge_refund")
