"""Routing cost: placing a point in its grid cell among 10,000 cells (target ≤ 1 ms per point).

    .venv/bin/python bench/routing.py [--cells 10000] [--points 20000]

It prints figures and never fails on a missed target. In a fresh SQLite database it:

1. generates a lattice of N quadrilateral cells (level 网格) over about 20 × 20 km around the
   demo zone, their corners jittered so that no two cells are alike and neighbours share edges
   exactly, and imports them with `grid_import.import_grid` (the CLI's path: every check, one
   transaction) — the import time is printed too;
2. times the in-memory index (`GridIndex.locate`) over random points, one in ten outside the
   grid, and then `grid.placement(session, …)`, what a report runs inside its transaction: the
   revision lookup (one indexed query) and the index; median and p95 in µs.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlmodel import Session  # noqa: E402

from app.db import get_engine, migrate  # noqa: E402
from app.services import grid, grid_import, orgs  # noqa: E402

WEST, SOUTH = 113.68, 34.66
SPAN_DEG = 0.2  # about 18 × 22 km


def lattice(side: int, seed: int = 7) -> list[list[tuple[float, float]]]:
    """(side+1)² corners, each moved by up to a quarter of a cell."""
    rng = random.Random(seed)
    step = SPAN_DEG / side
    corners = []
    for i in range(side + 1):
        row = []
        for j in range(side + 1):
            inner = 0 < i < side and 0 < j < side
            dx, dy = (rng.uniform(-0.25, 0.25) * step, rng.uniform(-0.25, 0.25) * step)
            row.append(
                (WEST + j * step + (dx if inner else 0), SOUTH + i * step + (dy if inner else 0))
            )
        corners.append(row)
    return corners


def grid_file(cells: int) -> bytes:
    side = math.isqrt(cells)
    corners = lattice(side)
    features = []
    for i in range(side):
        for j in range(side):
            ring = [corners[i][j], corners[i][j + 1], corners[i + 1][j + 1], corners[i + 1][j]]
            ring.append(ring[0])
            features.append(
                {
                    "type": "Feature",
                    "properties": {
                        "code": f"G{i:03d}{j:03d}",
                        "name": f"第 {i}-{j} 网格",
                        "level": "网格",
                        "org_unit": "D",
                    },
                    "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
                }
            )
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def points(count: int, seed: int = 11) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    inside = [
        (SOUTH + rng.random() * SPAN_DEG, WEST + rng.random() * SPAN_DEG)
        for _ in range(count - count // 10)
    ]
    outside = [(SOUTH - 0.05 - rng.random(), WEST + rng.random()) for _ in range(count // 10)]
    mixed = inside + outside
    rng.shuffle(mixed)
    return mixed


def timed(label: str, calls: list[tuple[float, float]], fn) -> None:  # type: ignore[no-untyped-def]
    spent = []
    found = 0
    for lat, lon in calls:
        start = time.perf_counter()
        hit = fn(lat, lon)
        spent.append(time.perf_counter() - start)
        found += hit is not None
    spent.sort()
    median = statistics.median(spent) * 1e6
    p95 = spent[int(len(spent) * 0.95)] * 1e6
    print(
        f"{label:<44} median {median:8.1f} µs   p95 {p95:8.1f} µs   "
        f"({found}/{len(calls)} points in a cell)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'routing.db'}"
        migrate(url)
        with Session(get_engine(url), expire_on_commit=False) as session:
            orgs.add_org(session, "D", "经开区", "district", None)
            data = grid_file(args.cells)
            start = time.perf_counter()
            result = grid_import.import_grid(session, data)
            print(
                f"import of {result.added} cells ({len(data) / 1e6:.1f} MB GeoJSON, every check): "
                f"{time.perf_counter() - start:.2f} s"
            )
            start = time.perf_counter()
            index = grid.refresh_index(session)
            session.rollback()
            assert index is not None
            print(f"index build from the database: {(time.perf_counter() - start) * 1e3:.0f} ms")
            calls = points(args.points)
            timed(f"GridIndex.locate, {len(index.cells)} cells", calls, index.locate)

            def placement(lat: float, lon: float) -> object:
                return grid.placement(session, lat, lon, 1).get("grid_cell_code")

            # In one transaction, as in a report (its write transaction is open then).
            timed("grid.placement (revision query + index)", calls[:5000], placement)
    print("target: ≤ 1 ms (1000 µs) per point")
    return 0


if __name__ == "__main__":
    sys.exit(main())
