"""storage claims: the SHA-256s that requests in progress store, in the database

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

Claims were marker files under flock in uploads/claims, which only one machine sees (and NFS
does not honour): with the object store shared by replicas (storage=s3), a claim must be
seen by every replica, so it is a row, with an expiry after which it is a dead request's.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storage_claims",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "token"),
    )
    op.create_index("ix_storage_claims_expires_at", "storage_claims", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_storage_claims_expires_at", table_name="storage_claims")
    op.drop_table("storage_claims")
