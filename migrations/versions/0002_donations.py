"""Donations, their payments, and the Stripe events applied to them.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "donation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("fee_covered", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("frequency", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("donor_name", sa.String(length=100), nullable=True),
        sa.Column("donor_email", sa.String(length=254), nullable=True),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("dedication_kind", sa.String(length=16), nullable=True),
        sa.Column("dedication_name", sa.String(length=100), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("stripe_session_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payment_intent", sa.String(length=255), nullable=True),
        sa.Column("stripe_subscription", sa.String(length=255), nullable=True),
        sa.Column("stripe_customer", sa.String(length=255), nullable=True),
        sa.Column("amount_received", sa.Integer(), nullable=False),
        sa.Column("amount_refunded", sa.Integer(), nullable=False),
        sa.Column("failure_reason", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_donation")),
        sa.UniqueConstraint("reference", name=op.f("uq_donation_reference")),
        sa.UniqueConstraint("stripe_session_id", name=op.f("uq_donation_stripe_session_id")),
    )
    with op.batch_alter_table("donation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_donation_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_donation_currency"), ["currency"], unique=False)
        batch_op.create_index(batch_op.f("ix_donation_frequency"), ["frequency"], unique=False)
        batch_op.create_index(batch_op.f("ix_donation_livemode"), ["livemode"], unique=False)
        batch_op.create_index(batch_op.f("ix_donation_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_donation_stripe_payment_intent"), ["stripe_payment_intent"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_donation_stripe_subscription"), ["stripe_subscription"], unique=False
        )

    op.create_table(
        "donation_payment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("donation_id", sa.Integer(), nullable=False),
        sa.Column("stripe_ref", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["donation_id"], ["donation.id"], name=op.f("fk_donation_payment_donation_id_donation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_donation_payment")),
        sa.UniqueConstraint("stripe_ref", name=op.f("uq_donation_payment_stripe_ref")),
    )
    with op.batch_alter_table("donation_payment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_donation_payment_donation_id"), ["donation_id"], unique=False
        )

    op.create_table(
        "webhook_event",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_event")),
    )


def downgrade():
    op.drop_table("webhook_event")
    op.drop_table("donation_payment")
    op.drop_table("donation")
