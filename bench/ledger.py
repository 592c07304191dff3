"""Export the ledger of N issues (default 50,000) as XLSX with thumbnails and as CSV.

Prints the time and the peak memory of each export, measured in a fresh process so that the
figures are the export's own. Loads the issues with bulk INSERTs (each with a before-photo,
every second one with an after-photo) into a temp SQLite database, or into
--database-url (a PostgreSQL database that this script may fill).

    python bench/ledger.py [--issues 50000] [--database-url postgresql+psycopg://…/bench]
"""

import argparse
import io
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from PIL import Image
from sqlalchemy import insert, update
from sqlmodel import Session, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.db import get_engine, migrate  # noqa: E402
from app.models import ChangeCounter, Issue, Photo, User  # noqa: E402
from app.models.base import utcnow  # noqa: E402
from app.services import auth, exports, orgs  # noqa: E402
from app.services.issue_list import IssueFilters  # noqa: E402
from app.services.storage import Storage  # noqa: E402
from tests.stored import derivative_file  # noqa: E402

THUMBS = 50
CHUNK = 5000


def _thumbs(storage: Storage) -> list[str]:
    """Distinct thumbnail JPEGs in storage, named by made-up hashes."""
    shas = []
    for n in range(THUMBS):
        sha = f"{n:064x}"
        path = derivative_file(storage.root, sha, "thumb")
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (320, 240), (40 + 4 * n, 90, 140 - 2 * n))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        path.write_bytes(buffer.getvalue())
        shas.append(sha)
    return shas


def load(settings: Settings, count: int) -> None:
    migrate(settings.database_url)
    storage = Storage(settings.upload_dir)
    storage.ensure_dirs()
    shas = _thumbs(storage)
    rng = random.Random(7)
    with Session(get_engine(settings.database_url)) as session:
        orgs.add_org(session, "JKQ", "经开区", "district", None)
        office = orgs.add_org(session, "XY", "祥云办事处", "office", "JKQ")
        user, _ = auth.create_user(session, "bench", "supervisor", "JKQ")
        assert office.id is not None and user.id is not None
        now = utcnow()
        for start in range(0, count, CHUNK):
            ids = range(start + 1, min(start + CHUNK, count) + 1)
            session.execute(insert(Issue), [_issue(n, office.id, user.id, now) for n in ids])
            photos = [_photo(n, "before", rng.choice(shas), user.id) for n in ids]
            photos += [_photo(n, "after", rng.choice(shas), user.id) for n in ids if n % 2]
            session.execute(insert(Photo), photos)
            session.commit()
        session.execute(update(ChangeCounter).values(value=count, changed_at=now))
        session.commit()


def _issue(n: int, org_id: int, user_id: int, now) -> dict:  # type: ignore[no-untyped-def]
    at = now - timedelta(minutes=n)
    closed = n % 2 == 1
    return {
        "id": n,
        "code": f"JK-BENCH-{n:06d}",
        "category_code": "garbage",
        "description": "路边堆放生活垃圾未清运" * 2,
        "status": "closed" if closed else "dispatched",
        "lat": 34.75 + (n % 1000) / 50_000,
        "lon": 113.78 + (n // 1000) / 50_000,
        "location_source": "exif",
        "address": f"经开区第{n % 20 + 1}大街{n}号",
        "org_unit_id": org_id,
        "reported_by_id": user_id,
        "reported_at": at,
        "dispatched_at": at,
        "deadline_at": at + timedelta(hours=24),
        "rectified_at": at + timedelta(hours=12) if closed else None,
        "closed_at": at + timedelta(hours=13) if closed else None,
        "verified_by_id": user_id if closed else None,
        "quantity": float(n % 7),
        "version": 3,
        "updated_at": at,
        "change_seq": n,
    }


def _photo(issue_id: int, kind: str, sha: str, user_id: int) -> dict:  # type: ignore[type-arg]
    return {
        "issue_id": issue_id,
        "kind": kind,
        "sha256": sha,
        "content_type": "image/jpeg",
        "bytes": 1,
        "width": 4000,
        "height": 3000,
        "uploaded_by_id": user_id,
        "uploaded_at": utcnow(),
        "exif": {},
        "flags": [],
    }


def export(settings: Settings, kind: str) -> None:
    """One export, in this process; prints seconds, peak RSS and output size."""
    storage = Storage(settings.upload_dir)
    started = time.perf_counter()
    with Session(get_engine(settings.database_url)) as session:
        user = session.exec(select(User).where(User.username == "bench")).one()
        batches = exports.ledger_batches(session, settings, user, IssueFilters(), utcnow())
        if kind == "csv":
            size = sum(len(chunk) for chunk in exports.csv_chunks(batches))
        else:
            ledger = exports.write_xlsx(batches, storage, images=kind == "xlsx")
            size = ledger.size
            ledger.path.unlink()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{kind:<12} {seconds:7.1f} s   peak RSS {peak:6.0f} MB   {size / 1e6:7.1f} MB out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=50_000)
    parser.add_argument("--database-url")
    parser.add_argument("--export", choices=["xlsx", "xlsx-nopics", "csv"])
    parser.add_argument("--upload-dir")
    args = parser.parse_args()
    if args.export:
        settings = Settings(database_url=args.database_url, upload_dir=Path(args.upload_dir))
        export(settings, args.export)
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        settings = Settings(database_url=url, upload_dir=Path(tmp) / "uploads")
        started = time.perf_counter()
        load(settings, args.issues)
        print(f"loaded {args.issues} issues in {time.perf_counter() - started:.1f} s")
        for kind in ("csv", "xlsx-nopics", "xlsx"):
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--export",
                    kind,
                    "--database-url",
                    url,
                    "--upload-dir",
                    str(settings.upload_dir),
                ],
                check=True,
            )


if __name__ == "__main__":
    main()
