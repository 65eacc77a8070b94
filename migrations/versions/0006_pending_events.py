"""Money events kept until their gift is known; each refund's currency.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pending_event",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("payment_intent", sa.String(length=255), nullable=True),
        sa.Column("customer", sa.String(length=255), nullable=True),
        sa.Column("subscription", sa.String(length=255), nullable=True),
        sa.Column("invoice", sa.String(length=255), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_pending_event")),
    )
    with op.batch_alter_table("pending_event", schema=None) as batch_op:
        for column in ("payment_intent", "customer", "subscription", "invoice", "received_at"):
            batch_op.create_index(batch_op.f(f"ix_pending_event_{column}"), [column], unique=False)

    with op.batch_alter_table("charge_refund", schema=None) as batch_op:
        batch_op.add_column(sa.Column("currency", sa.String(length=3), nullable=True))
    # Every refund kept so far was counted in its gift's currency.
    op.execute(
        "UPDATE charge_refund SET currency = "
        "(SELECT donation.currency FROM donation WHERE donation.id = charge_refund.donation_id)"
    )
    with op.batch_alter_table("charge_refund", schema=None) as batch_op:
        batch_op.alter_column("currency", existing_type=sa.String(length=3), nullable=False)


def downgrade():
    with op.batch_alter_table("charge_refund", schema=None) as batch_op:
        batch_op.drop_column("currency")
    with op.batch_alter_table("pending_event", schema=None) as batch_op:
        for column in ("received_at", "invoice", "subscription", "customer", "payment_intent"):
            batch_op.drop_index(batch_op.f(f"ix_pending_event_{column}"))
    op.drop_table("pending_event")
