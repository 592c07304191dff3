"""change feed: a change counter row and a per-issue change sequence

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

Existing issues get change_seq 1..N in their old feed order (updated_at, id), so a client
resuming from an old cursor finds its place; the counter starts at N.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTER_ID = 1


def upgrade() -> None:
    counter = op.create_table(
        "change_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # Plain ALTER TABLE on both engines (SQLite ≥ 3.35 adds and drops columns in place), so
    # that SQLite never copies the table: a copy trips the foreign keys pointing at issues.
    op.add_column(
        "issues", sa.Column("change_seq", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.create_index("ix_issues_change_seq_id", "issues", ["change_seq", "id"])

    issues = sa.table(
        "issues",
        sa.column("id", sa.Integer),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("change_seq", sa.BigInteger),
    )
    numbered = sa.select(
        issues.c.id,
        sa.func.row_number().over(order_by=(issues.c.updated_at, issues.c.id)).label("seq"),
    ).subquery()
    connection = op.get_bind()
    connection.execute(
        issues.update()
        .where(issues.c.id == numbered.c.id)
        .values(change_seq=numbered.c.seq)
    )
    # Copied in SQL, so the timestamp keeps the engine's own storage format.
    connection.execute(
        counter.insert().from_select(
            ["id", "value", "changed_at"],
            sa.select(
                sa.literal(COUNTER_ID),
                sa.func.count(issues.c.id),
                sa.func.max(issues.c.updated_at),
            ),
        )
    )


def downgrade() -> None:
    op.drop_index("ix_issues_change_seq_id", table_name="issues")
    op.drop_column("issues", "change_seq")
    op.drop_table("change_counter")
