"""Where an address string lies, from the service's own data (no outside geocoder).

Open311 lets a caller send `address_string` instead of `lat` + `long` (a hotline operator types
what the citizen said). The zone's own data know two kinds of place names, tried in order:

1. **An address issues were already reported at** (the exact text, but for leading and
   trailing spaces), among the issues the caller may see: the median of the positions of the
   latest few with a real position. The most precise answer we have, and it says where the
   hotline's usual addresses ("经开区第五大街与航海路交叉口") are, which is what 12345 repeats.
2. **A 网格's name or code** (the finest level only: a 社区 or an office is an area, not a
   place to send a worker), exact first, else the longest cell name the address
   contains ("第五大街网格 东侧公交站" → 第五大街网格), refused if two cells tie. The point is
   inside the cell (shapely's representative point), so the issue is routed to that cell.

Anything else is `UnknownAddress` (Open311's 400 error list): a guess would send a grid worker
to the wrong street, and an outside geocoder would send citizens' words to a third party.
"""

import statistics
import unicodedata
from dataclasses import dataclass

from sqlmodel import Session, col, select

from app.errors import UnknownAddress
from app.models import Issue, User
from app.models.grid import GridLevel
from app.models.issue import LocationSource
from app.services import grid
from app.services.permissions import visible_issues

# How many of the latest issues at an address are asked where it is.
LATEST_AT_ADDRESS = 20
# A shorter cell name inside an address is too likely to be there by chance.
MIN_CONTAINED_NAME = 2
_REAL_POSITIONS = (LocationSource.EXIF, LocationSource.DEVICE, LocationSource.MANUAL)


@dataclass(frozen=True)
class Place:
    lat: float
    lon: float
    found_by: str  # "issue_address" or "grid_cell:<code>"


def _key(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


def locate(session: Session, user: User, address: str) -> Place:
    """The WGS-84 position of an address; UnknownAddress when our data do not know it."""
    key = _key(address)
    if not key:
        raise UnknownAddress("address_string 为空")
    place = _known_address(session, user, address) or _grid_cell(session, key)
    if place is None:
        raise UnknownAddress(f"找不到地址 {address.strip()!r}")
    return place


def _known_address(session: Session, user: User, address: str) -> Place | None:
    text = address.strip()
    rows = session.exec(
        select(Issue.lat, Issue.lon)
        .where(Issue.address == text, col(Issue.location_source).in_(_REAL_POSITIONS))
        .where(visible_issues(session, user))
        .order_by(col(Issue.id).desc())
        .limit(LATEST_AT_ADDRESS)
    ).all()
    if not rows:
        return None
    lat = statistics.median(r[0] for r in rows)
    lon = statistics.median(r[1] for r in rows)
    return Place(lat, lon, "issue_address")


def _grid_cell(session: Session, key: str) -> Place | None:
    index = grid.index_for(session)
    if index is None:
        return None
    names = {
        i: (_key(c.name), _key(c.code))
        for i, c in enumerate(index.cells)
        if c.level == GridLevel.GRID
    }
    exact = [i for i, (name, code) in names.items() if key in (name, code)]
    if not exact:
        contained = [
            i for i, (name, _) in names.items() if len(name) >= MIN_CONTAINED_NAME and name in key
        ]
        longest = max((len(names[i][0]) for i in contained), default=0)
        exact = [i for i in contained if len(names[i][0]) == longest]
    if not exact:
        return None
    if len(exact) > 1:
        codes = "、".join(sorted(index.cells[i].code for i in exact))
        raise UnknownAddress(f"地址可指多个网格（{codes}）：请提供经纬度或网格编码")
    cell = index.cells[exact[0]]
    point = index.tree.geometries[exact[0]].representative_point()
    return Place(point.y, point.x, f"grid_cell:{cell.code}")
