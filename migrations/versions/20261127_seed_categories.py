"""seed the 15 categories of the contract

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# code, name, name_en, group, deadline_hours, unit
CATEGORIES = [
    ("flyposter", "非法小广告", "Flyposters and illegal small ads", "市容秩序", 24, "处"),
    ("banner", "违规横幅", "Unauthorised banners", "市容秩序", 24, "条"),
    ("wall_ad", "墙体广告", "Painted wall advertising", "市容秩序", 72, "m²"),
    ("road_occupation", "占道经营", "Road occupation by vendors", "街面秩序", 24, "处"),
    ("outside_store", "店外经营", "Business outside the store", "街面秩序", 24, "处"),
    ("bare_soil", "黄土裸露", "Bare soil not covered", "扬尘治理", 72, "m²"),
    ("garbage", "暴露垃圾", "Exposed garbage", "环境卫生", 24, "m³"),
    ("illegal_building", "违法建设", "Illegal structure", "违法建设", 168, "m²"),
    ("construction_site", "施工工地扬尘", "Construction site dust", "扬尘治理", 48, "处"),
    ("road_damage", "道路破损", "Damaged road surface", "市政设施", 72, "m²"),
    ("street_light", "路灯设施损坏", "Broken street light", "市政设施", 48, "处"),
    ("shared_bike", "共享单车乱停放", "Disorderly shared bikes", "街面秩序", 4, "处"),
    ("scattered_coal", "散煤", "Loose coal burning or storage", "扬尘治理", 72, "处"),
    ("fire_hazard", "消防隐患", "Fire hazard", "安全隐患", 24, "处"),
    ("other", "其他", "Other", "其他", 72, "处"),
]

categories = sa.table(
    "categories",
    sa.column("code", sa.String),
    sa.column("name", sa.String),
    sa.column("name_en", sa.String),
    sa.column("group", sa.String),
    sa.column("deadline_hours", sa.Integer),
    sa.column("unit", sa.String),
)


def upgrade() -> None:
    keys = ("code", "name", "name_en", "group", "deadline_hours", "unit")
    op.bulk_insert(categories, [dict(zip(keys, row, strict=True)) for row in CATEGORIES])


def downgrade() -> None:
    codes = [row[0] for row in CATEGORIES]
    op.execute(categories.delete().where(categories.c.code.in_(codes)))
