"""grid cells: versioned polygons with their responsible unit; issues keep their cell

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

grid_imports records each import that changed the grid (its random token names the grid's
revision for the routing index); grid_cells holds every version of every cell, the current
ones with retired_at NULL (one per code). Issues get the code and name of the cell they were
routed to, and outside_grid for a point in no cell. Existing issues keep NULL and false: they
were routed before any grid existed.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grid_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("retired", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token"),
    )
    op.create_table(
        "grid_cells",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=False),
        sa.Column("parent_code", sa.String(length=40), nullable=True),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("min_lon", sa.Float(), nullable=False),
        sa.Column("min_lat", sa.Float(), nullable=False),
        sa.Column("max_lon", sa.Float(), nullable=False),
        sa.Column("max_lat", sa.Float(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["import_id"], ["grid_imports.id"]),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"]),
        sa.ForeignKeyConstraint(["worker_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_grid_cells_code", "grid_cells", ["code"])
    op.create_index("ix_grid_cells_org_unit_id", "grid_cells", ["org_unit_id"])
    op.create_index(
        "ux_grid_cells_current_code",
        "grid_cells",
        ["code"],
        unique=True,
        sqlite_where=sa.text("retired_at IS NULL"),
        postgresql_where=sa.text("retired_at IS NULL"),
    )
    # Plain ALTER TABLE on both engines (no table copy on SQLite: see 0004).
    op.add_column("issues", sa.Column("grid_cell_code", sa.String(length=40), nullable=True))
    op.add_column("issues", sa.Column("grid_cell_name", sa.String(length=100), nullable=True))
    op.add_column(
        "issues",
        sa.Column("outside_grid", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_issues_grid_cell_code", "issues", ["grid_cell_code"])


def downgrade() -> None:
    op.drop_index("ix_issues_grid_cell_code", table_name="issues")
    op.drop_column("issues", "outside_grid")
    op.drop_column("issues", "grid_cell_name")
    op.drop_column("issues", "grid_cell_code")
    op.drop_index("ux_grid_cells_current_code", table_name="grid_cells")
    op.drop_index("ix_grid_cells_org_unit_id", table_name="grid_cells")
    op.drop_index("ix_grid_cells_code", table_name="grid_cells")
    op.drop_table("grid_cells")
    op.drop_table("grid_imports")
