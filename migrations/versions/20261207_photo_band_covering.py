"""covering indexes for the pHash bands: the similar-photo check reads no table row

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

checks.similar_photos probes each band with 22 or 23 values. The single-column band indexes
(0003) found the candidates, but each candidate then cost a read of its table row, and their
number grows with the table (1 in 2^21 stored hashes per probe: ~94 rows at 3 million photos),
so the lookup took ~3× longer at a million issues than at ten thousand. Each band's index now
holds everything the check reads (the band, issue_id, kind, phash, id) and the check probes
each band's index on its own (a UNION): the probes read index entries only.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BANDS = 3
COVERED = ["issue_id", "kind", "phash", "id"]


def upgrade() -> None:
    for band in range(BANDS):
        op.drop_index(f"ix_photos_phash_b{band}", table_name="photos")
        op.create_index(f"ix_photos_phash_b{band}_covering", "photos", [f"phash_b{band}", *COVERED])


def downgrade() -> None:
    for band in range(BANDS):
        op.drop_index(f"ix_photos_phash_b{band}_covering", table_name="photos")
        op.create_index(f"ix_photos_phash_b{band}", "photos", [f"phash_b{band}"])
