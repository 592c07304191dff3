"""app secrets: the photo links' signing key, shared by every replica through the database

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-07

Signed photo URLs (services/signing.py) must verify on whichever replica a browser reaches, and
replicas share no file system: without GRIDPROOF_SIGNING_SECRET the key lives here, inserted
once (insert-if-absent) by the first process that needs it. An upload_dir/signing.key of an
earlier release becomes the stored value at the first start, so links already handed out hold.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("app_secrets")
