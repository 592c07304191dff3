"""ranking flags: the red and black flags the command awards for a week

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-06

ranking_flag_awards is append-only: each decision (week, unit, flag or none, note, who, when)
is a link of one hash chain of its own (seq, prev_hash, hash), like an issue's events; the
latest decision for a week and unit counts.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
# The brief assigns 0008; chained after 0009 (merged from loop) so that this branch has one
# head. The lead re-chains the revisions at merge time.
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ranking_flag_awards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("org_unit", sa.String(length=40), nullable=False),
        sa.Column("flag", sa.String(length=10), nullable=True),
        sa.Column("note", sa.String(length=2000), nullable=False),
        sa.Column("awarded_by_id", sa.Integer(), nullable=False),
        sa.Column("awarded_by", sa.String(length=80), nullable=False),
        sa.Column("awarded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"]),
        sa.ForeignKeyConstraint(["awarded_by_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
    )
    op.create_index("ix_ranking_flag_awards_week", "ranking_flag_awards", ["week"])


def downgrade() -> None:
    op.drop_index("ix_ranking_flag_awards_week", table_name="ranking_flag_awards")
    op.drop_table("ranking_flag_awards")
