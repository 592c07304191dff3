"""Coordinate systems used by Chinese map providers (WGS-84, GCJ-02, BD-09) and distances.

All functions take and return (lat, lon) in degrees, in that order.
GCJ-02 formulas follow eviltransform / coordTransform with the Krasovsky ellipsoid.
"""

import math
from collections.abc import Callable

from app.models.geo import Crs

A = 6378245.0  # Krasovsky 1940 semi-major axis (m)
EE = 0.00669342162296594323  # Krasovsky 1940 first eccentricity squared
X_PI = math.pi * 3000.0 / 180.0
EARTH_RADIUS_M = 6371008.8  # IUGG mean Earth radius
EXACT_TOLERANCE_DEG = 1e-9
EXACT_MAX_ITERATIONS = 30


def out_of_china(lat: float, lon: float) -> bool:
    """True if the point lies outside the rough bounding box where GCJ-02 applies."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _transform_lat(x: float, y: float) -> float:
    """Published GCJ-02 latitude offset polynomial (unscaled)."""
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _transform_lon(x: float, y: float) -> float:
    """Published GCJ-02 longitude offset polynomial (unscaled)."""
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _gcj_offset(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 minus WGS-84 offset in degrees at a WGS-84 point (no China check)."""
    d_lat = _transform_lat(lon - 105.0, lat - 35.0)
    d_lon = _transform_lon(lon - 105.0, lat - 35.0)
    rad_lat = math.radians(lat)
    magic = 1.0 - EE * math.sin(rad_lat) ** 2
    sqrt_magic = math.sqrt(magic)
    d_lat = (d_lat * 180.0) / ((A * (1.0 - EE)) / (magic * sqrt_magic) * math.pi)
    d_lon = (d_lon * 180.0) / (A / sqrt_magic * math.cos(rad_lat) * math.pi)
    return d_lat, d_lon


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """Convert WGS-84 to GCJ-02; points outside China are returned unchanged."""
    if out_of_china(lat, lon):
        return lat, lon
    d_lat, d_lon = _gcj_offset(lat, lon)
    return lat + d_lat, lon + d_lon


def _invert(
    forward: Callable[[float, float], tuple[float, float]],
    lat: float,
    lon: float,
    guess: tuple[float, float],
) -> tuple[float, float]:
    """Solve forward(p) == (lat, lon) by fixed-point iteration until within 1e-9 degrees."""
    est_lat, est_lon = guess
    for _ in range(EXACT_MAX_ITERATIONS):
        fwd_lat, fwd_lon = forward(est_lat, est_lon)
        err_lat, err_lon = fwd_lat - lat, fwd_lon - lon
        if abs(err_lat) < EXACT_TOLERANCE_DEG and abs(err_lon) < EXACT_TOLERANCE_DEG:
            break
        est_lat, est_lon = est_lat - err_lat, est_lon - err_lon
    return est_lat, est_lon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """Convert GCJ-02 to WGS-84 with the exact (iterative) inverse of wgs84_to_gcj02."""
    if out_of_china(lat, lon):
        return lat, lon
    return _invert(wgs84_to_gcj02, lat, lon, guess=(lat, lon))


def gcj02_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    """Convert GCJ-02 to Baidu BD-09 (the standard Baidu formula)."""
    z = math.hypot(lon, lat) + 0.00002 * math.sin(lat * X_PI)
    theta = math.atan2(lat, lon) + 0.000003 * math.cos(lon * X_PI)
    return z * math.sin(theta) + 0.006, z * math.cos(theta) + 0.0065


def _bd09_to_gcj02_approx(lat: float, lon: float) -> tuple[float, float]:
    """Standard closed-form BD-09 to GCJ-02 formula (accurate to about 2e-6 degrees)."""
    x, y = lon - 0.0065, lat - 0.006
    z = math.hypot(x, y) - 0.00002 * math.sin(y * X_PI)
    theta = math.atan2(y, x) - 0.000003 * math.cos(x * X_PI)
    return z * math.sin(theta), z * math.cos(theta)


def bd09_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """Convert BD-09 to GCJ-02: the standard formula refined into the exact inverse."""
    return _invert(gcj02_to_bd09, lat, lon, guess=_bd09_to_gcj02_approx(lat, lon))


def wgs84_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    """Convert WGS-84 to Baidu BD-09 via GCJ-02."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lat, lon))


def bd09_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """Convert Baidu BD-09 to WGS-84 via GCJ-02 (exact GCJ-02 inverse)."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lat, lon))


def to_wgs84(lat: float, lon: float, crs: Crs) -> tuple[float, float]:
    """Convert a point given in `crs` to WGS-84."""
    match crs:
        case Crs.WGS84:
            return lat, lon
        case Crs.GCJ02:
            return gcj02_to_wgs84(lat, lon)
        case Crs.BD09:
            return bd09_to_wgs84(lat, lon)
    raise ValueError(f"unknown CRS: {crs!r}")


def from_wgs84(lat: float, lon: float, crs: Crs) -> tuple[float, float]:
    """Convert a WGS-84 point to `crs`."""
    match crs:
        case Crs.WGS84:
            return lat, lon
        case Crs.GCJ02:
            return wgs84_to_gcj02(lat, lon)
        case Crs.BD09:
            return wgs84_to_bd09(lat, lon)
    raise ValueError(f"unknown CRS: {crs!r}")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres on a sphere of radius 6371008.8 m."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi, d_lambda = phi2 - phi1, math.radians(lon2 - lon1)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
