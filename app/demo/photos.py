"""Real-looking phone JPEGs with real EXIF (written with piexif), for the demo and the tests."""

import io
import random
from datetime import datetime

import piexif
from PIL import Image, ImageDraw


def _rational(value: float, denominator: int = 10_000) -> tuple[int, int]:
    return round(value * denominator), denominator


def _dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return (degrees, 1), (minutes, 1), _rational(seconds, 10_000)


def exif_bytes(
    *,
    lat: float | None = None,
    lon: float | None = None,
    altitude: float | None = None,
    taken_at: datetime | None = None,
    orientation: int = 1,
    make: str = "Xiaomi",
    model: str = "Redmi K70",
    software: str | None = None,
) -> bytes:
    """An EXIF block as a phone camera writes it."""
    zeroth: dict[int, object] = {
        piexif.ImageIFD.Make: make.encode(),
        piexif.ImageIFD.Model: model.encode(),
        piexif.ImageIFD.Orientation: orientation,
    }
    if software:
        zeroth[piexif.ImageIFD.Software] = software.encode()
    exif: dict[int, object] = {}
    if taken_at is not None:
        exif[piexif.ExifIFD.DateTimeOriginal] = taken_at.strftime("%Y:%m:%d %H:%M:%S").encode()
        if taken_at.tzinfo is not None:
            offset = taken_at.strftime("%z")
            exif[piexif.ExifIFD.OffsetTimeOriginal] = f"{offset[:3]}:{offset[3:]}".encode()
    gps: dict[int, object] = {}
    if lat is not None and lon is not None:
        gps = {
            piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _dms(lat),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _dms(lon),
        }
        if altitude is not None:
            gps[piexif.GPSIFD.GPSAltitudeRef] = 0 if altitude >= 0 else 1
            gps[piexif.GPSIFD.GPSAltitude] = _rational(abs(altitude), 100)
    return piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps, "1st": {}, "thumbnail": None})


def street_scene(width: int, height: int, seed: int, *, fixed: bool = False) -> Image.Image:
    """A wall with flyposters (or, fixed, the same wall clean): varied enough to tell apart."""
    rng = random.Random(seed)
    sky = (rng.randint(120, 180), rng.randint(160, 210), rng.randint(200, 240))
    wall = (rng.randint(150, 210), rng.randint(140, 190), rng.randint(120, 170))
    image = Image.new("RGB", (width, height), sky)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, height // 3, width, height), fill=wall)
    draw.rectangle((0, height * 5 // 6, width, height), fill=(90, 90, 95))
    brick = max(8, width // rng.randint(25, 60))
    for y in range(height // 3, height * 5 // 6, brick):
        draw.line((0, y, width, y), fill=(wall[0] - 30, wall[1] - 30, wall[2] - 30), width=2)
    # Windows, doors and a lamp post where this street has them: each scene its own layout.
    for _ in range(rng.randint(2, 6)):
        w, h = rng.randint(width // 12, width // 5), rng.randint(height // 10, height // 3)
        x, y = rng.randint(0, width - w), rng.randint(height // 3, height * 5 // 6 - h)
        shade = rng.randint(20, 90)
        draw.rectangle((x, y, x + w, y + h), fill=(shade, shade + 10, shade + 30))
    pole = rng.randint(0, width - 1)
    draw.rectangle((pole, height // 8, pole + width // 60 + 2, height * 5 // 6), fill=(40, 40, 40))
    if not fixed:
        for _ in range(rng.randint(6, 14)):
            w, h = rng.randint(width // 20, width // 8), rng.randint(height // 20, height // 8)
            x, y = rng.randint(0, width - w), rng.randint(height // 3, height * 5 // 6 - h)
            colour = (rng.randint(200, 255), rng.randint(0, 255), rng.randint(0, 120))
            draw.rectangle((x, y, x + w, y + h), fill=colour, outline=(20, 20, 20))
    return image


def make_jpeg(
    width: int = 1200,
    height: int = 900,
    *,
    seed: int = 0,
    fixed: bool = False,
    quality: int = 88,
    image: Image.Image | None = None,
    **exif: object,
) -> bytes:
    """A JPEG of a street scene (or of `image`) carrying the EXIF of `exif_bytes(**exif)`."""
    picture = image or street_scene(width, height, seed, fixed=fixed)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality, exif=exif_bytes(**exif))  # type: ignore[arg-type]
    return out.getvalue()
