"""audit checkpoints: Ed25519 signatures of the audit chains' heads

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-06

audit_checkpoints holds one signature per signed chain head (issue_id, seq, hash): made at
least daily for every head that changed, and for the head of every evidence ZIP.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issue_id", "seq"),
    )
    op.create_index("ix_audit_checkpoints_signed_at", "audit_checkpoints", ["signed_at"])
    op.create_index("ix_audit_checkpoints_issue_id", "audit_checkpoints", ["issue_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_checkpoints_issue_id", table_name="audit_checkpoints")
    op.drop_index("ix_audit_checkpoints_signed_at", table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
