"""Names kept a second time without capitals or accents, for the admin search to look in.

Filled here for the pledges and donations already stored. The folding is a copy of
microsite.text.search_key as it was when this revision was written, so that upgrading an
old database gives the same keys whatever the code has become since; a later change to
the folding comes with a revision of its own that makes the keys again.

Revision ID: 0007
Revises: 0006
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Rows read and written at a time: a large table is never held in memory at once.
BATCH = 1000

_UNDECOMPOSED = str.maketrans(
    {
        "ł": "l",
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "ħ": "h",
        "ŧ": "t",
        "\N{LATIN SMALL LETTER DOTLESS I}": "i",
        "ǥ": "g",
        "ƶ": "z",
        "þ": "th",
        "æ": "ae",
        "œ": "oe",
        "·": "",
        "\N{RIGHT SINGLE QUOTATION MARK}": "'",
        "\N{LEFT SINGLE QUOTATION MARK}": "'",
        "\N{MODIFIER LETTER APOSTROPHE}": "'",
        # A double name is written with a hyphen or a space: "jean pierre" finds Jean-Pierre.
        "-": " ",
        "\N{HYPHEN}": " ",
        "\N{NON-BREAKING HYPHEN}": " ",
    }
)


def search_key(value):
    if value is None:
        return None
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", value).casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.translate(_UNDECOMPOSED).split())


def upgrade():
    with op.batch_alter_table("pledge", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.Text(), nullable=True))
    with op.batch_alter_table("donation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("donor_name_key", sa.Text(), nullable=True))

    connection = op.get_bind()
    _fill_keys(connection, "pledge", "name", "name_key")
    _fill_keys(connection, "donation", "donor_name", "donor_name_key")

    # Every pledge has a name, so every pledge now has a key.
    with op.batch_alter_table("pledge", schema=None) as batch_op:
        batch_op.alter_column("name_key", existing_type=sa.Text(), nullable=False)


def downgrade():
    with op.batch_alter_table("donation", schema=None) as batch_op:
        batch_op.drop_column("donor_name_key")
    with op.batch_alter_table("pledge", schema=None) as batch_op:
        batch_op.drop_column("name_key")


def _fill_keys(connection, table_name, name_column, key_column):
    """Give each row with a name its key, BATCH rows at a time in the order of their ids.

    Each batch starts after the last id of the one before, rather than at an offset, so no
    row is read twice or passed over while the rows before it are being written.
    """
    table = sa.table(
        table_name,
        sa.column("id", sa.Integer),
        sa.column(name_column, sa.String),
        sa.column(key_column, sa.Text),
    )
    update = (
        table.update()
        .where(table.c.id == sa.bindparam("row_id"))
        .values({key_column: sa.bindparam("key")})
    )
    last_id = None
    while True:
        query = (
            sa.select(table.c.id, table.c[name_column])
            .where(table.c[name_column].is_not(None))
            .order_by(table.c.id)
            .limit(BATCH)
        )
        if last_id is not None:
            query = query.where(table.c.id > last_id)
        rows = connection.execute(query).all()
        if not rows:
            return
        connection.execute(
            update, [{"row_id": row_id, "key": search_key(name)} for row_id, name in rows]
        )
        last_id = rows[-1][0]
