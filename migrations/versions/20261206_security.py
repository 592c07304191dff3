"""security: login throttling shared by every replica, token expiry, disabled users

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

login_throttles counts failed sign-ins per username ("user:NAME") and per client address
("ip:ADDR") within a window, and holds the time until which that key must wait.
api_tokens.last_used_at (to the hour) drives idle expiry; users.disabled_at marks a user who
may no longer sign in (their tokens are revoked when they are disabled).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_login_throttles_last_failure_at", "login_throttles", ["last_failure_at"])
    op.add_column("api_tokens", sa.Column("last_used_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("disabled_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of users would break the
    # foreign keys that point at it.
    op.drop_column("users", "disabled_at")
    op.drop_column("api_tokens", "last_used_at")
    op.drop_index("ix_login_throttles_last_failure_at", table_name="login_throttles")
    op.drop_table("login_throttles")
