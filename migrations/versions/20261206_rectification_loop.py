"""the rectification loop: the quantity rectified, the pending extension request

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

issues.rectified_quantity: what submit_rectification says was dealt with, in the category's
unit (NULL for issues rectified before, and until a rectification gives one).
issues.extension_*: the pending 延期申请 (deadline asked for, reason, who, when), NULL when
none is pending; indexed on the deadline for the supervisors' queue (extension_pending=true).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("rectified_quantity", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("extension_deadline_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("extension_note", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("extension_requested_by_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("extension_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_foreign_key(
            "fk_issues_extension_requested_by_id_users",
            "users",
            ["extension_requested_by_id"],
            ["id"],
        )
        batch.create_index("ix_issues_extension_deadline_at", ["extension_deadline_at"])


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_index("ix_issues_extension_deadline_at")
        batch.drop_constraint("fk_issues_extension_requested_by_id_users", type_="foreignkey")
        batch.drop_column("extension_requested_at")
        batch.drop_column("extension_requested_by_id")
        batch.drop_column("extension_note")
        batch.drop_column("extension_deadline_at")
        batch.drop_column("rectified_quantity")
