"""`gridproof grid import`: a GeoJSON FeatureCollection of grid cells, checked whole, then
written in one transaction (or refused with every problem and its feature index)."""

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from app.errors import GridImportRefused
from app.models import GridCell, GridImport, OrgUnit, User
from app.models.base import utcnow
from app.models.geo import Crs
from app.models.grid import LEVEL_NAMES, LEVEL_RANK, GridImportResult, GridLevel
from app.services import changes, grid
from app.services.geo import to_wgs84

# Two cells of one level may share edges and overlap by slivers of digitising: refused when
# the overlap is more than this fraction of the smaller cell's area.
OVERLAP_TOLERANCE = 0.01
MAX_CODE = 40
MAX_NAME = 100


@dataclass
class Problem:
    feature: int | None
    code: str | None
    message: str

    def __str__(self) -> str:
        where = "文件" if self.feature is None else f"features[{self.feature}]"
        named = f"（code {self.code}）" if self.code else ""
        return f"{where}{named}：{self.message}"


@dataclass
class CellSpec:
    """One feature of the file, checked."""

    index: int
    code: str
    name: str
    level: GridLevel
    parent: str | None
    org_unit: str
    worker: str | None
    geojson: dict[str, Any]
    polygon: BaseGeometry

    def fingerprint(self) -> str:
        said = [self.name, self.level, self.parent, self.org_unit, self.worker, self.geojson]
        return hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()


def import_grid(
    session: Session, data: bytes, crs: Crs = Crs.WGS84, now: datetime | None = None
) -> GridImportResult:
    """Check the whole file, then add, change and retire cells in one commit."""
    now = now or utcnow()
    specs = check_file(session, data, crs)
    current = {c.code: c for c in session.exec(select(GridCell).where(_current()))}
    fingerprints = {spec.code: spec.fingerprint() for spec in specs}
    new = [s for s in specs if s.code not in current]
    changed = [
        s for s in specs if s.code in current and current[s.code].fingerprint != s.fingerprint()
    ]
    gone = [c for code, c in current.items() if code not in fingerprints]
    unchanged = len(specs) - len(new) - len(changed)
    if not (new or changed or gone):
        return GridImportResult(added=0, changed=0, retired=0, unchanged=unchanged, import_id=None)
    record = GridImport(
        token=uuid.uuid4().hex,
        sha256=hashlib.sha256(data).hexdigest(),
        imported_at=now,
        added=len(new),
        changed=len(changed),
        retired=len(gone),
    )
    session.add(record)
    for cell in [*gone, *(current[s.code] for s in changed)]:
        cell.retired_at = now
        session.add(cell)
    session.flush()  # the retired versions leave the unique index before the new ones enter
    _write_cells(session, [*new, *changed], fingerprints, record, now)
    changes.bump(session)
    session.flush()
    # Built inside the transaction (a read after the commit would open another, and on SQLite
    # hold the write lock); an index whose import never commits is never used (its token).
    grid.refresh_index(session)
    session.commit()
    return GridImportResult(
        added=len(new),
        changed=len(changed),
        retired=len(gone),
        unchanged=unchanged,
        import_id=record.id,
    )


def _current() -> Any:
    return col(GridCell.retired_at).is_(None)


def _write_cells(
    session: Session,
    specs: list[CellSpec],
    fingerprints: dict[str, str],
    record: GridImport,
    now: datetime,
) -> None:
    units = _ids(session, OrgUnit, OrgUnit.code, {s.org_unit for s in specs})
    workers = _ids(session, User, User.username, {s.worker for s in specs if s.worker})
    versions = dict(
        session.exec(
            select(GridCell.code, func.max(GridCell.version)).group_by(col(GridCell.code))
        ).all()
    )
    assert record.id is not None
    rows = [
        {
            "code": spec.code,
            "version": versions.get(spec.code, 0) + 1,
            "name": spec.name,
            "level": spec.level.value,
            "parent_code": spec.parent,
            "org_unit_id": units[spec.org_unit],
            "worker_id": workers.get(spec.worker) if spec.worker else None,
            "geometry": spec.geojson,
            **dict(
                zip(("min_lon", "min_lat", "max_lon", "max_lat"), spec.polygon.bounds, strict=True)
            ),
            "fingerprint": fingerprints[spec.code],
            "import_id": record.id,
            "valid_from": now,
        }
        for spec in specs
    ]
    if rows:
        # One executemany: 10,000 ORM objects cost seconds (measured with bench/routing.py).
        session.execute(insert(GridCell), rows)


def _ids(session: Session, table: Any, key: Any, wanted: set[str]) -> dict[str, int]:
    """{key: id} of the rows whose key is wanted."""
    if not wanted:
        return {}
    return dict(session.exec(select(key, table.id).where(col(key).in_(wanted))).all())


def check_file(session: Session, data: bytes, crs: Crs) -> list[CellSpec]:
    """Every feature checked; GridImportRefused listing every problem when any is found."""
    features = _features(data)
    problems: list[Problem] = []
    specs: list[CellSpec] = []
    for index, feature in enumerate(features):
        spec = _check_feature(index, feature, crs, problems)
        if spec is not None:
            specs.append(spec)
    _check_codes(specs, problems)
    _check_references(session, specs, problems)
    _check_overlaps(specs, problems)
    if problems:
        problems.sort(key=lambda p: -1 if p.feature is None else p.feature)
        _refuse(problems)
    return specs


def _refuse(problems: list[Problem]) -> NoReturn:
    shown = problems[:50]
    more = f"\n……另有 {len(problems) - len(shown)} 个问题" if len(problems) > len(shown) else ""
    raise GridImportRefused(
        "\n".join(map(str, shown)) + more,
        errors=[{"feature": p.feature, "code": p.code, "message": p.message} for p in problems],
    )


def _features(data: bytes) -> list[Any]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _refuse([Problem(None, None, f"不是 GeoJSON（JSON 无法解析：{exc}）")])
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        _refuse(
            [Problem(None, None, "不是 GeoJSON FeatureCollection（type 不是 FeatureCollection）")]
        )
    features = document.get("features")
    if not isinstance(features, list) or not features:
        _refuse([Problem(None, None, "没有任何要素（features 为空）")])
    return list(features)


def _text(properties: dict[str, Any], name: str, limit: int) -> str | None:
    value = properties.get(name)
    if value is None or value == "":
        return None
    text = str(value).strip()
    return text if len(text) <= limit else None


def _check_feature(index: int, feature: Any, crs: Crs, problems: list[Problem]) -> CellSpec | None:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        problems.append(Problem(index, None, "不是 GeoJSON Feature"))
        return None
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        properties = {}
    code = _text(properties, "code", MAX_CODE)
    found: list[str] = []
    if code is None:
        found.append(f"缺少 code（或超过 {MAX_CODE} 个字符）")
    name = _text(properties, "name", MAX_NAME)
    if name is None:
        found.append(f"缺少 name（或超过 {MAX_NAME} 个字符）")
    level = LEVEL_NAMES.get(str(properties.get("level", "")).strip())
    if level is None:
        found.append(f"未知的 level {properties.get('level')!r}（区、街道·办事处、社区或网格）")
    org_unit = _text(properties, "org_unit", MAX_CODE)
    if org_unit is None:
        found.append("缺少 org_unit（负责的组织单位代码）")
    geojson, polygon, message = _geometry(feature.get("geometry"), crs)
    if message:
        found.append(message)
    problems.extend(Problem(index, code, m) for m in found)
    if found or code is None or name is None or level is None or org_unit is None:
        return None
    assert geojson is not None and polygon is not None
    parent = _text(properties, "parent", MAX_CODE)
    worker = _text(properties, "worker", MAX_NAME)
    return CellSpec(index, code, name, level, parent, org_unit, worker, geojson, polygon)


def _geometry(
    geometry: Any, crs: Crs
) -> tuple[dict[str, Any] | None, BaseGeometry | None, str | None]:
    """(WGS-84 GeoJSON, shapely polygon, None) or (None, None, what is wrong)."""
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        return None, None, "几何类型应为 Polygon 或 MultiPolygon"
    coordinates = geometry.get("coordinates")
    polygons = [coordinates] if geometry["type"] == "Polygon" else coordinates
    if not isinstance(polygons, list) or not polygons:
        return None, None, "多边形没有坐标"
    converted: list[list[list[list[float]]]] = []
    for polygon in polygons:
        rings, message = _rings(polygon, crs)
        if message:
            return None, None, message
        converted.append(rings)
    geojson: dict[str, Any] = (
        {"type": "Polygon", "coordinates": converted[0]}
        if geometry["type"] == "Polygon"
        else {"type": "MultiPolygon", "coordinates": converted}
    )
    made = shape(geojson)
    if not made.is_valid:
        return None, None, f"多边形无效：{_reason(shapely.is_valid_reason(made))}"
    if made.area <= 0:
        return None, None, "多边形面积为零"
    return geojson, made, None


def _rings(polygon: Any, crs: Crs) -> tuple[list[list[list[float]]], str | None]:
    if not isinstance(polygon, list) or not polygon:
        return [], "多边形没有环"
    rings: list[list[list[float]]] = []
    for ring in polygon:
        if not isinstance(ring, list) or len(ring) < 4:
            return [], "环至少需要 4 个坐标（首尾相同）"
        points: list[list[float]] = []
        for position in ring:
            point, message = _position(position, crs)
            if message:
                return [], message
            points.append(point)
        if ring[0][:2] != ring[-1][:2]:
            return [], f"环未闭合：首点 {ring[0][:2]} 与末点 {ring[-1][:2]} 不同"
        rings.append(points)
    return rings, None


def _position(position: Any, crs: Crs) -> tuple[list[float], str | None]:
    ok = isinstance(position, list) and len(position) in (2, 3)
    ok = ok and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in position
    )
    if not ok:
        return [], f"坐标应为 [经度, 纬度]：{position!r}"
    lon, lat = float(position[0]), float(position[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        return [], f"坐标超出范围（经度 −180…180，纬度 −90…90）：[{lon}, {lat}]"
    lat, lon = to_wgs84(lat, lon, crs)
    return [round(lon, 8), round(lat, 8)], None


_REASONS = {
    "Self-intersection": "自相交",
    "Ring Self-intersection": "环自相交",
    "Too few points": "点数过少",
    "Hole lies outside shell": "内环在外环之外",
    "Nested shells": "外环互相嵌套",
    "Interior is disconnected": "内部不连通",
    "Duplicate Rings": "重复的环",
}


def _reason(reason: str) -> str:
    kind = reason.split("[", 1)[0]
    return f"{_REASONS.get(kind, kind)}（{reason}）"


def _check_codes(specs: list[CellSpec], problems: list[Problem]) -> None:
    first: dict[str, int] = {}
    for spec in specs:
        if spec.code in first:
            problems.append(
                Problem(spec.index, spec.code, f"code 重复（与 features[{first[spec.code]}] 相同）")
            )
        else:
            first[spec.code] = spec.index


def _check_references(session: Session, specs: list[CellSpec], problems: list[Problem]) -> None:
    by_code = {spec.code: spec for spec in specs}
    units = _ids(session, OrgUnit, OrgUnit.code, {s.org_unit for s in specs})
    workers = _ids(session, User, User.username, {s.worker for s in specs if s.worker})
    for spec in specs:
        if spec.org_unit not in units:
            problems.append(Problem(spec.index, spec.code, f"未知的组织单位 {spec.org_unit!r}"))
        if spec.worker and spec.worker not in workers:
            problems.append(Problem(spec.index, spec.code, f"未知的网格员 {spec.worker!r}"))
        if spec.parent is None:
            continue
        parent = by_code.get(spec.parent)
        if parent is None:
            problems.append(Problem(spec.index, spec.code, f"未知的上级网格 {spec.parent!r}"))
        elif LEVEL_RANK[parent.level] >= LEVEL_RANK[spec.level]:
            problems.append(
                Problem(spec.index, spec.code, f"上级网格 {spec.parent} 的层级不高于本网格")
            )


def _check_overlaps(specs: list[CellSpec], problems: list[Problem]) -> None:
    """Cells of one level may touch, not overlap (beyond OVERLAP_TOLERANCE)."""
    for level in GridLevel:
        cells = [s for s in specs if s.level == level]
        if len(cells) < 2:
            continue
        tree = shapely.STRtree([c.polygon for c in cells])
        pairs = tree.query([c.polygon for c in cells], predicate="intersects")
        for i, j in zip(pairs[0].tolist(), pairs[1].tolist(), strict=True):
            if i >= j:
                continue
            a, b = cells[i], cells[j]
            shared = a.polygon.intersection(b.polygon).area
            if shared > OVERLAP_TOLERANCE * min(a.polygon.area, b.polygon.area):
                share = 100 * shared / min(a.polygon.area, b.polygon.area)
                message = f"与 features[{a.index}]（{a.code}）重叠 {share:.1f}%（同一层级不得重叠）"
                problems.append(Problem(b.index, b.code, message))
