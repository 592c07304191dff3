"""the rectification loop: the quantity rectified

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

issues.rectified_quantity: what submit_rectification says was dealt with, in the category's
unit (NULL for issues rectified before, and until a rectification gives one).
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


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("rectified_quantity")
