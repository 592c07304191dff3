"""Grid import (checked whole, one transaction, versioned) and the routing index."""

import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.errors import GridImportRefused
from app.models import GridCell, GridImport
from app.models.geo import Crs
from app.services import grid, grid_import
from app.services.geo import wgs84_to_gcj02
from tests import grid_samples as samples


def counts(session: Session) -> tuple[int, int]:
    cells = session.exec(select(func.count()).select_from(GridCell)).one()
    imports = session.exec(select(func.count()).select_from(GridImport)).one()
    return cells, imports


def test_import_adds_every_cell(session, zone):
    result = grid_import.import_grid(session, samples.dumps(samples.zone_grid()))
    assert (result.added, result.changed, result.retired, result.unchanged) == (7, 0, 0, 0)
    assert result.import_id is not None
    assert counts(session) == (7, 1)
    b1g = session.exec(select(GridCell).where(GridCell.code == "B1G")).one()
    assert (b1g.level, b1g.parent_code, b1g.version) == ("grid", "B1", 1)
    assert (b1g.min_lon, b1g.min_lat, b1g.max_lon, b1g.max_lat) == (113.78, 34.75, 113.79, 34.76)


def test_reimporting_the_same_file_changes_nothing(session, zone):
    data = samples.dumps(samples.zone_grid())
    grid_import.import_grid(session, data)
    before = [(c.id, c.version, c.retired_at) for c in session.exec(select(GridCell))]
    result = grid_import.import_grid(session, data)
    assert (result.added, result.changed, result.retired, result.unchanged) == (0, 0, 0, 7)
    assert result.import_id is None
    assert counts(session) == (7, 1)
    session.expire_all()
    assert [(c.id, c.version, c.retired_at) for c in session.exec(select(GridCell))] == before


def test_a_changed_file_versions_cells_and_keeps_the_old_ones(session, zone):
    grid_import.import_grid(session, samples.dumps(samples.zone_grid()))
    result = grid_import.import_grid(session, samples.dumps(samples.changed_grid()))
    assert (result.added, result.changed, result.retired, result.unchanged) == (0, 1, 1, 5)
    versions = session.exec(
        select(GridCell).where(GridCell.code == "B1G").order_by(col(GridCell.version))
    ).all()
    assert [(v.version, v.name, v.retired_at is None) for v in versions] == [
        (1, "毛庄第一网格", False),
        (2, "毛庄网格（调整后）", True),
    ]
    retired = session.exec(select(GridCell).where(GridCell.code == "B1")).one()
    assert retired.retired_at is not None
    assert counts(session) == (8, 2)
    # Routing follows the new grid: the grown cell, and no community B1 any more.
    assert grid.locate(session, 34.762, 113.785).code == "B1G"  # type: ignore[union-attr]
    assert grid.locate(session, 34.745, 113.785).code == "B"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "data", "index", "word"), samples.REFUSED, ids=[r[0] for r in samples.REFUSED]
)
def test_a_bad_file_is_refused_whole(session, zone, kind, data, index, word):
    with pytest.raises(GridImportRefused) as refused:
        grid_import.import_grid(session, data)
    errors = refused.value.extra["errors"]
    assert any(e["feature"] == index and word in e["message"] for e in errors), errors
    where = "文件" if index is None else f"features[{index}]"
    assert where in refused.value.detail
    session.rollback()
    assert counts(session) == (0, 0)


def test_a_bad_file_leaves_the_grid_in_use_alone(session, zone):
    grid_import.import_grid(session, samples.dumps(samples.zone_grid()))
    with pytest.raises(GridImportRefused):
        grid_import.import_grid(session, samples.REFUSED[-1][1])
    session.rollback()
    assert counts(session) == (7, 1)
    assert grid.locate(session, *samples.IN_B1G).code == "B1G"  # type: ignore[union-attr]


def test_every_problem_is_listed_with_its_feature(session, zone):
    collection = samples.zone_grid()
    collection["features"][2]["properties"]["org_unit"] = "NOPE"
    collection["features"][5]["geometry"] = samples.BOWTIE
    with pytest.raises(GridImportRefused) as refused:
        grid_import.import_grid(session, samples.dumps(collection))
    assert [e["feature"] for e in refused.value.extra["errors"]] == [2, 5]


def test_routing_picks_the_finest_cell(session, zone):
    grid_import.import_grid(session, samples.dumps(samples.zone_grid()))
    assert grid.locate(session, *samples.IN_A1G).code == "A1G"  # type: ignore[union-attr]
    assert grid.locate(session, *samples.IN_B1G).code == "B1G"  # type: ignore[union-attr]
    assert grid.locate(session, *samples.IN_A1_ONLY).code == "A1"  # type: ignore[union-attr]
    assert grid.locate(session, *samples.PARIS) is None


def test_a_point_on_a_shared_edge_always_lands_in_the_same_cell(session, zone):
    collection = samples.zone_grid()
    grid_import.import_grid(session, samples.dumps(collection))
    first = grid.locate(session, *samples.ON_SHARED_EDGE)
    assert first is not None and first.code == "A1G"
    # The same cells in the reverse order, as a new revision: the same answer.
    collection["features"].reverse()
    collection["features"][0]["properties"]["name"] = "毛庄第一网格（新）"  # a new revision
    grid_import.import_grid(session, samples.dumps(collection))
    again = grid.locate(session, *samples.ON_SHARED_EDGE)
    assert again is not None and again.code == "A1G"


def test_no_grid_routes_nowhere(session, zone):
    assert grid.locate(session, *samples.IN_A1G) is None
    assert grid.placement(session, *samples.PARIS, 42) == {"org_unit_id": 42}


def test_gcj02_input_is_stored_as_wgs84(session, zone):
    collection = samples.zone_grid()
    for f in collection["features"]:
        for ring in f["geometry"]["coordinates"]:
            for point in ring:
                lat, lon = wgs84_to_gcj02(point[1], point[0])
                point[:] = [lon, lat]
    grid_import.import_grid(session, samples.dumps(collection), Crs.GCJ02)
    b1g = session.exec(select(GridCell).where(GridCell.code == "B1G")).one()
    assert b1g.min_lon == pytest.approx(113.78, abs=1e-7)
    assert b1g.max_lat == pytest.approx(34.76, abs=1e-7)
    assert grid.locate(session, *samples.IN_B1G).code == "B1G"  # type: ignore[union-attr]
