"""Prayer pledges, with the consent each was given under.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pledge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("email_key", sa.String(length=254), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("rhythm", sa.String(length=16), nullable=False),
        sa.Column("intention", sa.Text(), nullable=True),
        sa.Column("show_publicly", sa.Boolean(), nullable=False),
        sa.Column("consent_version", sa.String(length=40), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pledge")),
        sa.UniqueConstraint("email_key", name=op.f("uq_pledge_email_key")),
    )
    with op.batch_alter_table("pledge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pledge_country"), ["country"], unique=False)
        batch_op.create_index(batch_op.f("ix_pledge_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_pledge_rhythm"), ["rhythm"], unique=False)


def downgrade():
    op.drop_table("pledge")
