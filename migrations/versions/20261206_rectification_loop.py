"""the rectification loop: the quantity rectified, the pending extension request

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

issues.rectified_quantity: what submit_rectification says was dealt with, in the category's
unit (NULL for issues rectified before, and until a rectification gives one).
issues.extension_*: the pending 延期申请 (deadline asked for, reason, who, when), NULL when
none is pending; indexed on the deadline for the supervisors' queue (extension_pending=true).
issues.nearby_address(_m): for an issue reported without an address, the nearest other
issue's address within 300 m and its distance (NULL for issues reported before).
ix_issues_lat: that lookup reads the issues near a point through a band of latitude.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both engines (no table copy on SQLite: see 0004; a copy would trip the
# foreign keys pointing at issues). extension_requested_by_id has no foreign key for the same
# reason: SQLite cannot drop a column that one names, and users are never deleted.
def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("rectified_quantity", sa.Float(), nullable=True),
        sa.Column("nearby_address", sa.String(length=300), nullable=True),
        sa.Column("nearby_address_m", sa.Float(), nullable=True),
        sa.Column("extension_deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("extension_note", sa.String(length=2000), nullable=True),
        sa.Column("extension_requested_by_id", sa.Integer(), nullable=True),
        sa.Column("extension_requested_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    for column in _columns():
        op.add_column("issues", column)
    op.create_index("ix_issues_extension_deadline_at", "issues", ["extension_deadline_at"])
    op.create_index("ix_issues_lat", "issues", ["lat"])


def downgrade() -> None:
    op.drop_index("ix_issues_lat", table_name="issues")
    op.drop_index("ix_issues_extension_deadline_at", table_name="issues")
    for column in reversed(_columns()):
        op.drop_column("issues", column.name)
