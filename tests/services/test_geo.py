"""Tests for app.services.geo: WGS-84 / GCJ-02 / BD-09 conversions and haversine distance."""

import math

import pytest

from app.models.geo import Crs
from app.services.geo import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    distance_m,
    from_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    out_of_china,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

# (wgs_lat, wgs_lon, gcj_lat, gcj_lon): the vectors shared by googollee/eviltransform's
# python/test.py, go/transform_test.go and javascript/test.js.
EVILTRANSFORM = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]

# wandergis/coordtransform test/app.js, input (lon, lat) = (116.404, 39.915) for every function;
# shown here as (lat, lon).
CT_INPUT = (39.915, 116.404)
CT_WGS84_TO_GCJ02 = (39.91640428150164, 116.41024449916938)
CT_GCJ02_TO_BD09 = (39.92133699351021, 116.41036949371029)
CT_BD09_TO_GCJ02 = (39.90865673957631, 116.39762729119315)  # closed-form approximation
CT_GCJ02_TO_WGS84 = (39.91359571849836, 116.39775550083061)  # one-step approximation

# A grid over mainland China (points outside the GCJ-02 box are dropped), plus Zhengzhou.
GRID = [
    (lat, lon)
    for lat in (18.3, 22.5, 26.1, 30.7, 34.75, 39.9, 43.8, 47.2, 52.9)
    for lon in (75.9, 87.6, 100.2, 106.5, 113.78, 116.4, 121.5, 126.6, 134.1)
    if not out_of_china(lat, lon)
]

OUTSIDE_CHINA = [
    (35.6762, 139.6503),  # Tokyo
    (51.5074, -0.1278),  # London
    (40.7128, -74.006),  # New York
    (-33.8688, 151.2093),  # Sydney
    (0.5, 100.0),  # south of the box
]


def _max_abs_diff(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]))


def _one_step_gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """The approximate inverse most libraries ship: subtract the offset found at the GCJ point."""
    fwd_lat, fwd_lon = wgs84_to_gcj02(lat, lon)
    return 2 * lat - fwd_lat, 2 * lon - fwd_lon


@pytest.mark.parametrize(("wgs_lat", "wgs_lon", "gcj_lat", "gcj_lon"), EVILTRANSFORM)
def test_wgs84_to_gcj02_matches_eviltransform(
    wgs_lat: float, wgs_lon: float, gcj_lat: float, gcj_lon: float
) -> None:
    assert _max_abs_diff(wgs84_to_gcj02(wgs_lat, wgs_lon), (gcj_lat, gcj_lon)) < 1e-9


@pytest.mark.parametrize(("wgs_lat", "wgs_lon", "gcj_lat", "gcj_lon"), EVILTRANSFORM)
def test_gcj02_to_wgs84_recovers_eviltransform_input(
    wgs_lat: float, wgs_lon: float, gcj_lat: float, gcj_lon: float
) -> None:
    # eviltransform's own exact inverse only promises < 0.5 m; ours is within ~1e-9 degrees.
    assert _max_abs_diff(gcj02_to_wgs84(gcj_lat, gcj_lon), (wgs_lat, wgs_lon)) < 1e-8


def test_matches_coordtransform_vectors() -> None:
    assert _max_abs_diff(wgs84_to_gcj02(*CT_INPUT), CT_WGS84_TO_GCJ02) < 1e-9
    assert _max_abs_diff(gcj02_to_bd09(*CT_INPUT), CT_GCJ02_TO_BD09) < 1e-9


def test_bd09_to_gcj02_refines_the_closed_form() -> None:
    gcj = bd09_to_gcj02(*CT_INPUT)
    # Close to the published closed-form value, but an exact inverse of gcj02_to_bd09.
    assert _max_abs_diff(gcj, CT_BD09_TO_GCJ02) < 1e-6
    assert _max_abs_diff(gcj02_to_bd09(*gcj), CT_INPUT) < 1e-9
    assert _max_abs_diff(gcj02_to_bd09(*CT_BD09_TO_GCJ02), CT_INPUT) > 1e-7


def test_exact_inverse_beats_published_one_step_value() -> None:
    exact = gcj02_to_wgs84(*CT_INPUT)
    assert _max_abs_diff(exact, CT_GCJ02_TO_WGS84) < 1e-5  # same point to ~1 m
    assert _max_abs_diff(wgs84_to_gcj02(*exact), CT_INPUT) < 1e-9
    assert _max_abs_diff(wgs84_to_gcj02(*CT_GCJ02_TO_WGS84), CT_INPUT) > 1e-7


@pytest.mark.parametrize(
    ("wgs", "gcj"),
    [
        ((39.908823, 116.397470), (39.910223, 116.403712)),  # Tiananmen, commonly quoted
        ((39.90374, 116.397389), (39.905146, 116.403633)),  # Beijing, commonly quoted
    ],
)
def test_wgs84_to_gcj02_commonly_quoted_beijing_values(
    wgs: tuple[float, float], gcj: tuple[float, float]
) -> None:
    # These circulate rounded to 6 decimals and are ~3e-6 off the formula, hence 1e-5.
    assert _max_abs_diff(wgs84_to_gcj02(*wgs), gcj) < 1e-5


def test_gcj02_offset_is_hundreds_of_metres_inside_china() -> None:
    for lat, lon in GRID:
        assert 50 < distance_m(lat, lon, *wgs84_to_gcj02(lat, lon)) < 1000


def test_wgs_gcj_round_trip_is_exact() -> None:
    worst_exact = worst_one_step = 0.0
    for point in GRID:
        gcj = wgs84_to_gcj02(*point)
        worst_exact = max(worst_exact, _max_abs_diff(gcj02_to_wgs84(*gcj), point))
        worst_one_step = max(worst_one_step, _max_abs_diff(_one_step_gcj02_to_wgs84(*gcj), point))
    assert worst_exact < 1e-7
    assert worst_one_step > 1e-6  # the approximation would fail the 1e-7 bound


def test_wgs_bd09_round_trip_is_exact() -> None:
    for point in GRID:
        assert _max_abs_diff(bd09_to_wgs84(*wgs84_to_bd09(*point)), point) < 1e-7


def test_gcj_bd09_round_trip_is_exact() -> None:
    for point in GRID:
        assert _max_abs_diff(bd09_to_gcj02(*gcj02_to_bd09(*point)), point) < 1e-7


@pytest.mark.parametrize("point", OUTSIDE_CHINA)
def test_out_of_china_unchanged(point: tuple[float, float]) -> None:
    assert out_of_china(*point)
    assert wgs84_to_gcj02(*point) == point
    assert gcj02_to_wgs84(*point) == point
    assert to_wgs84(*point, Crs.GCJ02) == point
    assert from_wgs84(*point, Crs.GCJ02) == point


@pytest.mark.parametrize("crs", list(Crs))
def test_dispatch_round_trip(crs: Crs) -> None:
    for point in [*GRID, *OUTSIDE_CHINA]:
        assert _max_abs_diff(to_wgs84(*from_wgs84(*point, crs), crs), point) < 1e-7


def test_dispatch_matches_direct_functions() -> None:
    lat, lon = 34.75, 113.78  # Zhengzhou
    assert to_wgs84(lat, lon, Crs.WGS84) == (lat, lon)
    assert from_wgs84(lat, lon, Crs.WGS84) == (lat, lon)
    assert to_wgs84(lat, lon, Crs.GCJ02) == gcj02_to_wgs84(lat, lon)
    assert to_wgs84(lat, lon, Crs.BD09) == bd09_to_wgs84(lat, lon)
    assert from_wgs84(lat, lon, Crs.GCJ02) == wgs84_to_gcj02(lat, lon)
    assert from_wgs84(lat, lon, Crs.BD09) == wgs84_to_bd09(lat, lon)
    assert Crs("bd09") is Crs.BD09


def test_distance_one_degree_of_latitude() -> None:
    assert distance_m(30.0, 114.0, 31.0, 114.0) == pytest.approx(111195.08, abs=1.0)


def test_distance_beijing_shanghai() -> None:
    beijing, shanghai = (39.9042, 116.4074), (31.2304, 121.4737)
    assert distance_m(*beijing, *shanghai) == pytest.approx(1_067_000, rel=0.01)


def test_distance_degenerate_cases() -> None:
    assert distance_m(39.9, 116.4, 39.9, 116.4) == 0.0
    assert distance_m(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * 6371008.8)
    assert distance_m(10.0, 20.0, -5.0, 40.0) == pytest.approx(distance_m(-5.0, 40.0, 10.0, 20.0))
