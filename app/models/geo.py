"""Coordinate reference systems: a vocabulary of the API (the conversions are services/geo.py)."""

from enum import StrEnum


class Crs(StrEnum):
    """Coordinate reference systems a client may report positions in."""

    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    BD09 = "bd09"
