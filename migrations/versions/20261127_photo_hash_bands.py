"""index perceptual hashes in three bands, for finding similar photos

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BANDS = 3
BAND_BITS = (21, 21, 22)


def _bands(phash: str) -> list[int]:
    value = int(phash, 16)
    out, shift = [], 64
    for bits in BAND_BITS:
        shift -= bits
        out.append((value >> shift) & ((1 << bits) - 1))
    return out


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        for band in range(BANDS):
            batch.add_column(sa.Column(f"phash_b{band}", sa.Integer(), nullable=True))
            batch.create_index(f"ix_photos_phash_b{band}", [f"phash_b{band}"])
    photos = sa.table(
        "photos",
        sa.column("id", sa.Integer),
        sa.column("phash", sa.String),
        *(sa.column(f"phash_b{band}", sa.Integer) for band in range(BANDS)),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(photos.c.id, photos.c.phash).where(photos.c.phash.is_not(None)))
    for photo_id, phash in rows.all():
        values = {f"phash_b{band}": value for band, value in enumerate(_bands(phash))}
        connection.execute(photos.update().where(photos.c.id == photo_id).values(**values))


def downgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        for band in range(BANDS):
            batch.drop_index(f"ix_photos_phash_b{band}")
            batch.drop_column(f"phash_b{band}")
