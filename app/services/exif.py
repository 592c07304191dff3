"""EXIF facts read from an untrusted upload with Pillow: make, model, orientation, GPS, time.

Whatever is malformed is skipped and the photo flagged `exif_unreadable`; nothing here raises
on hostile bytes. (piexif, which raises on several real phones' EXIF, only writes fixtures.)
"""

import contextlib
import math
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image


@dataclass
class ExifFacts:
    make: str | None = None
    model: str | None = None
    software: str | None = None
    orientation: int | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    gps_alt: float | None = None
    taken_at: str | None = None
    unreadable: bool = False

    def public(self) -> dict[str, Any]:
        keys = ("make", "model", "gps_lat", "gps_lon", "gps_alt", "orientation", "software")
        return {key: getattr(self, key) for key in keys}

    @property
    def gps(self) -> tuple[float, float] | None:
        if self.gps_lat is None or self.gps_lon is None:
            return None
        return self.gps_lat, self.gps_lon


_TAG_MAKE, _TAG_MODEL, _TAG_SOFTWARE, _TAG_ORIENTATION = 0x010F, 0x0110, 0x0131, 0x0112
_IFD_EXIF, _IFD_GPS = 0x8769, 0x8825
_TAG_DATETIME_ORIGINAL, _TAG_OFFSET_TIME_ORIGINAL = 0x9003, 0x9011


def read_exif(img: Image.Image) -> ExifFacts:
    """The EXIF facts we keep, read with Pillow; whatever is malformed is skipped and flagged."""
    facts = ExifFacts()
    try:
        exif = img.getexif()
    except Exception:  # Pillow's EXIF parser on hostile bytes: keep the photo, flag it
        facts.unreadable = True
        return facts
    facts.make = _text(exif.get(_TAG_MAKE))
    facts.model = _text(exif.get(_TAG_MODEL))
    facts.software = _text(exif.get(_TAG_SOFTWARE))
    orientation = img.info.get("original_orientation") or exif.get(_TAG_ORIENTATION)
    valid = isinstance(orientation, int) and 1 <= orientation <= 8
    facts.orientation = orientation if valid else None
    if exif.get(_TAG_ORIENTATION) is not None and facts.orientation is None:
        facts.unreadable = True
    gps = _sub_ifd(exif, _IFD_GPS, facts)
    exif_ifd = _sub_ifd(exif, _IFD_EXIF, facts)
    if _entries_lost(img.info.get("exif"), exif, {_IFD_GPS: gps, _IFD_EXIF: exif_ifd}):
        facts.unreadable = True
    try:
        _read_gps(gps, facts)
    except (TypeError, ValueError, ZeroDivisionError, IndexError, KeyError):
        facts.gps_lat = facts.gps_lon = facts.gps_alt = None
        facts.unreadable = True
    facts.taken_at = parse_exif_time(
        exif_ifd.get(_TAG_DATETIME_ORIGINAL), exif_ifd.get(_TAG_OFFSET_TIME_ORIGINAL)
    )
    return facts


def _sub_ifd(exif: Image.Exif, tag: int, facts: ExifFacts) -> dict[int, Any]:
    pointer = exif.get(tag)
    if pointer is not None and not isinstance(pointer, int):
        facts.unreadable = True  # the pointer itself is of the wrong type
        return {}
    try:
        return dict(exif.get_ifd(tag))
    except Exception:  # a sub-IFD that points into garbage
        facts.unreadable = True
        return {}


def _entries_lost(raw: Any, exif: Image.Exif, sub_ifds: dict[int, dict[int, Any]]) -> bool:
    """True when an IFD declares more entries than Pillow could read (it skips corrupt ones,
    with only a warning, which is no signal to rely on in a threaded server)."""
    if not isinstance(raw, bytes) or len(raw) < 8:
        return False
    tiff = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return True
    ifds = {struct.unpack(order + "L", tiff[4:8])[0]: len(exif)}
    for tag, entries in sub_ifds.items():
        if isinstance(pointer := exif.get(tag), int):
            ifds[pointer] = len(entries)
    for offset, read in ifds.items():
        if (
            offset + 2 > len(tiff)
            or struct.unpack(order + "H", tiff[offset : offset + 2])[0] > read
        ):
            return True
    return False


def _read_gps(gps: dict[int, Any], facts: ExifFacts) -> None:
    lat = _degrees(gps.get(2), gps.get(1), "S")
    lon = _degrees(gps.get(4), gps.get(3), "W")
    if lat is None or lon is None or not usable_coordinates(lat, lon):
        return
    facts.gps_lat, facts.gps_lon = round(lat, 7), round(lon, 7)
    altitude = gps.get(6)
    if altitude is not None and math.isfinite(float(altitude)):
        below_sea = gps.get(5) in (1, b"\x01")
        facts.gps_alt = round(-float(altitude) if below_sea else float(altitude), 2)


def _degrees(value: Any, ref: Any, negative_ref: str) -> float | None:
    if not value:
        return None
    parts = [float(v) for v in value][:3]
    degrees = sum(part / 60**i for i, part in enumerate(parts))
    return -degrees if _text(ref) == negative_ref else degrees


def usable_coordinates(lat: float, lon: float) -> bool:
    """False for NaN, out of range, and 0/0 (Android writes zeros when it redacts location)."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return False
    return not (lat == 0 and lon == 0)


# C0 controls, DEL and C1 controls: never part of a camera's name or a time.
_CONTROLS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)])


def _text(value: Any) -> str | None:
    """An EXIF text as the camera meant it: up to its terminating NUL (what follows is left
    over from the camera's buffer), without control characters, UTF-8 where it is UTF-8."""
    if isinstance(value, bytes):
        value = value.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.split("\x00", 1)[0]
    # Pillow reads EXIF ASCII as Latin-1; phones write UTF-8 there (美图秀秀, 醒图 …).
    with contextlib.suppress(UnicodeError):
        value = value.encode("latin-1").decode("utf-8")
    value = value.translate(_CONTROLS).strip()
    return value[:100] or None


_OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")


def parse_exif_time(value: Any, offset: Any = None) -> str | None:
    """EXIF 'YYYY:MM:DD HH:MM:SS' (+ OffsetTimeOriginal) as ISO 8601; None when unparseable."""
    text = _text(value)
    if not text:
        return None
    try:
        moment = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    iso = moment.isoformat()
    offset_text = _text(offset)
    return iso + offset_text if offset_text and _OFFSET.match(offset_text) else iso
