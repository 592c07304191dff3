"""indexes for the dashboards: issues by report and closure time, events by action and time

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

/stats and /rankings pick the issues of a period through these (and the existing indexes on
deadline_at and status), so that their cost follows the period's volume, not the table's size.
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_issues_reported_at", "issues", ["reported_at"])
    op.create_index("ix_issues_closed_at", "issues", ["closed_at"])
    op.create_index("ix_issue_events_action_at", "issue_events", ["action", "at"])


def downgrade() -> None:
    op.drop_index("ix_issue_events_action_at", table_name="issue_events")
    op.drop_index("ix_issues_closed_at", table_name="issues")
    op.drop_index("ix_issues_reported_at", table_name="issues")
