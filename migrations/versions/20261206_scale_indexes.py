"""indexes for scale: issues by address (Open311 address_string placement)

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-06

An Open311 report with an `address_string` and no position is placed where issues were already
reported at that address (services/geocode.py): an exact match on issues.address, which without
an index reads the whole table on every such report (a million rows at a city's scale).
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_issues_address", "issues", ["address"])


def downgrade() -> None:
    op.drop_index("ix_issues_address", table_name="issues")
