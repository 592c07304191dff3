"""The photo ingest pipeline, called directly: no database, no HTTP.

Real camera files and hostile files come from tests/samples (MANIFEST.tsv says where each
one comes from and what Pillow reads from it); everything else is generated here with Pillow.
"""

import csv
import io
import math
import os
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import piexif
import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageStat
from pillow_heif.as_plugin import HeifImageFile

from app.config import Settings
from app.demo.photos import exif_bytes, make_jpeg, street_scene
from app.errors import ImageTooManyPixels, ImageUnreadable, PhotoTooLarge, UnsupportedMediaType
from app.services import decoders, photos
from app.services.exif import parse_exif_time, usable_coordinates
from app.services.photos import IngestedPhoto, ingest_photo, sniff_format
from app.services.storage import Storage, spool_file
from tests.factories import CHINA, SAMPLES
from tests.stored import derivative_file, original_file

# --- helpers -----------------------------------------------------------------------------------


def ingest(data: bytes, root: Path, **settings: Any) -> IngestedPhoto:
    return ingest_photo(io.BytesIO(data), Settings(upload_dir=root, **settings), Storage(root))


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def refused(error: type[Exception], data: bytes, root: Path, **settings: Any) -> Exception:
    """Ingest must raise exactly `error` and leave no file at all in storage."""
    with pytest.raises(error) as caught:
        ingest(data, root, **settings)
    assert type(caught.value) is error
    assert stored_files(root) == []
    return caught.value


def derivative(root: Path, photo: IngestedPhoto, name: str) -> Image.Image:
    image = Image.open(derivative_file(root, photo.sha256, name))
    image.load()
    return image


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Incompressible pixels, to make files of a known size."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    return Image.frombytes("RGB", (width, height), pixels)


def grey_small(image: Image.Image) -> Image.Image:
    return image.convert("L").resize((96, 64))


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(ImageStat.Stat(ImageChops.difference(a, b)).mean[0])


def assert_fits(image: Image.Image, width: int, height: int, limit: int) -> None:
    """A derivative of a width×height picture: shrunk to `limit`, never enlarged, same shape."""
    scale = min(limit, max(width, height)) / max(width, height)
    assert max(image.size) == min(limit, max(width, height))
    assert abs(image.width - width * scale) <= 1.5, (image.size, width, height)
    assert abs(image.height - height * scale) <= 1.5, (image.size, width, height)


def assert_derivatives(root: Path, photo: IngestedPhoto) -> tuple[Image.Image, Image.Image]:
    """thumb ≤ 320 and large ≤ 1600, JPEG, without EXIF, shaped like the displayed photo."""
    large, thumb = derivative(root, photo, "large"), derivative(root, photo, "thumb")
    for image, limit in ((large, 1600), (thumb, 320)):
        assert image.format == "JPEG"
        assert image.mode == "RGB"
        assert len(image.getexif()) == 0
        assert "exif" not in image.info
        assert_fits(image, photo.width, photo.height, limit)
    return large, thumb


def assert_stored(root: Path, photo: IngestedPhoto, original: bytes) -> None:
    """Exactly the original and its two derivatives, no temp file; the original unchanged."""
    storage = Storage(root)
    expected = [
        original_file(storage.root, photo.sha256),
        derivative_file(storage.root, photo.sha256, "large"),
        derivative_file(storage.root, photo.sha256, "thumb"),
    ]
    assert stored_files(root) == sorted(expected)
    assert original_file(storage.root, photo.sha256).read_bytes() == original


def exif_jpeg(
    zeroth: dict[int, Any] | None = None,
    exif: dict[int, Any] | None = None,
    gps: dict[int, Any] | None = None,
    size: tuple[int, int] = (300, 200),
) -> bytes:
    """A JPEG carrying exactly the EXIF tags given (written with piexif)."""
    block = piexif.dump(
        {"0th": zeroth or {}, "Exif": exif or {}, "GPS": gps or {}, "1st": {}, "thumbnail": None}
    )
    return encode(street_scene(*size, seed=5), "JPEG", quality=85, exif=block)


# --- 1 and 2: every sample file, outcome derived from MANIFEST.tsv -----------------------------

with (SAMPLES / "MANIFEST.tsv").open(newline="", encoding="utf-8") as _manifest:
    MANIFEST = list(csv.DictReader(_manifest, delimiter="\t"))
ACCEPTED_MAGIC = {"jpeg", "png", "webp", "isobmff:heic", "isobmff:avif"}


def expected_error(row: dict[str, str]) -> type[Exception] | None:
    """What ingesting the sample must raise, from what the manifest records of it.

    `pillow_load` records a load of the first frame only, and the libheif that pillow_heif
    bundles reads an item's bytes only when it decodes it: a HEIF file whose second image is
    cut off loads "ok" there (hostile__heic_truncated.heic). A file the manifest describes as
    truncated (`what_it_is`) is unreadable whatever its first frame's load recorded."""
    if row["magic"] not in ACCEPTED_MAGIC:
        return UnsupportedMediaType
    if row["pillow_open"].startswith("RAISE DecompressionBombError"):
        return ImageTooManyPixels
    if row["pillow_open"].startswith("RAISE") or row["pillow_load"].startswith("RAISE"):
        return ImageUnreadable
    if re.search(r"\btruncated\b", row["what_it_is"], re.IGNORECASE):
        return ImageUnreadable
    return None


def leading_float(text: str) -> float | None:
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
    return float(match.group(1)) if match else None


def displayed_size(row: dict[str, str]) -> tuple[int, int]:
    shown = row["display_wh_after_exif_transpose"] or f"{row['width']}x{row['height']}"
    width, height = shown.split("x")
    return int(width), int(height)


def test_manifest_lists_every_sample_file() -> None:
    on_disk = {p.name for p in SAMPLES.iterdir() if p.name not in ("MANIFEST.tsv", "README.md")}
    assert {row["filename"] for row in MANIFEST} == on_disk
    assert len(MANIFEST) >= 50


@pytest.mark.parametrize("processes", [0, 2], ids=["in-thread", "in-pool"])
@pytest.mark.parametrize("row", MANIFEST, ids=[row["filename"] for row in MANIFEST])
def test_manifest_sample(row: dict[str, str], processes: int, tmp_path: Path) -> None:
    """Every sample, decoded in the request's thread and in the pool of decoding processes (the
    server's way): the same facts, the same errors with their details, nothing left behind."""
    data = (SAMPLES / row["filename"]).read_bytes()
    assert len(data) == int(row["bytes"])
    error = expected_error(row)
    if error is not None:
        refused(error, data, tmp_path, image_processes=processes)
        return

    photo = ingest(data, tmp_path, image_processes=processes)

    assert photo.sha256 == row["sha256"]
    assert photo.bytes == int(row["bytes"])
    assert (photo.width, photo.height) == displayed_size(row)
    assert_stored(tmp_path, photo, data)
    assert_derivatives(tmp_path, photo)
    if row["make"]:
        assert photo.exif.make == row["make"]
    if row["model"]:
        assert photo.exif.model == row["model"]
    if row["orientation_piexif"] in list("12345678"):
        assert photo.exif.orientation == int(row["orientation_piexif"])
    lat, lon = leading_float(row["gps_lat"]), leading_float(row["gps_lon"])
    if lat is None or lon is None or (lat == 0 and lon == 0):  # no GPS, or the null island
        assert photo.exif.gps is None
        assert photo.exif.gps_lat is None and photo.exif.gps_lon is None
    else:
        assert photo.exif.gps is not None
        assert photo.exif.gps_lat == pytest.approx(lat, abs=1e-5)
        assert photo.exif.gps_lon == pytest.approx(lon, abs=1e-5)
    if row["datetime_original"]:
        date, time = row["datetime_original"].split(" ")
        assert photo.exif.taken_at is not None
        assert photo.exif.taken_at.startswith(f"{date.replace(':', '-')}T{time}")
        assert datetime.fromisoformat(photo.exif.taken_at)  # ISO 8601, offset or not
    else:
        assert photo.exif.taken_at is None


def test_a_decoder_that_dies_costs_no_photo(tmp_path: Path) -> None:
    """A decoder killed while idle or in the middle of a photo: the pool is replaced, the photo
    it held is decoded again on the new one, and nothing it was writing is left behind."""
    small = (SAMPLES / "orient__landscape_6.jpg").read_bytes()
    ingest(small, tmp_path / "a", image_processes=1)
    (idle,) = decoders._pools[1]._processes.values()
    idle.kill()
    idle.join()
    assert ingest(small, tmp_path / "b", image_processes=1).width == 1800

    big = make_jpeg(6000, 4000, seed=7)  # long enough to be killed in the middle
    worker = decoders._pools[1]
    done: list[IngestedPhoto] = []
    thread = threading.Thread(
        target=lambda: done.append(ingest(big, tmp_path / "c", image_processes=1))
    )
    thread.start()
    # Kill the decoder once it has started writing the photo's derivatives (their temp files
    # are named after the upload's: up-XXXXXXXX-YYYYYYYY).
    deadline = time.monotonic() + 30
    while not list((tmp_path / "c" / "tmp").glob("up-*-*")):
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.001)
    for process in list(worker._processes.values()):
        process.kill()
    thread.join(timeout=60)
    assert len(done) == 1 and (done[0].width, done[0].height) == (6000, 4000)
    assert list((tmp_path / "c" / "tmp").iterdir()) == []
    if decoders._pools.get(1) is worker:
        # On a loaded machine the kill can land just after the photo was done: the next photo
        # then meets the broken pool, which is replaced for it.
        assert ingest(small, tmp_path / "d", image_processes=1).width == 1800
    assert decoders._pools[1] is not worker  # the broken pool was replaced
    # What is stored is exactly what the request lists as its own (to remove should it fail).
    assert_stored(tmp_path / "c", done[0], big)


def test_a_decoder_writes_derivatives_as_temp_files_for_the_request_to_move(
    tmp_path: Path,
) -> None:
    """A decoder puts nothing into place: a decoder that dies after writing a derivative leaves
    a temp file (removed by the request), not a stored file that no request knows it made."""
    data = (SAMPLES / "orient__landscape_6.jpg").read_bytes()
    settings, storage = Settings(upload_dir=tmp_path), Storage(tmp_path)
    spooled = spool_file(io.BytesIO(data), settings, storage)

    photo = photos._derive(spooled, settings, storage)

    assert set(photo.derivative_temps) == {"large", "thumb"}
    assert stored_files(tmp_path) == sorted([spooled.path, *photo.derivative_temps.values()])
    assert all(path.parent == storage.tmp_dir for path in stored_files(tmp_path))


def test_a_failure_after_derivatives_were_moved_into_place_removes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The original is moved into place last: when that fails (a full disk, say), the
    derivatives already moved are removed again, and no temp file is left."""
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).parent.parent.name == "originals":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    data = (SAMPLES / "orient__landscape_6.jpg").read_bytes()
    with pytest.raises(OSError, match="No space left"):
        ingest(data, tmp_path)
    assert stored_files(tmp_path) == []


def test_null_island_sample_is_read_but_gives_no_gps(tmp_path: Path) -> None:
    photo = ingest(sample_bytes("gps__samsung_galaxyS_null_island_orient6.jpg"), tmp_path)
    assert photo.exif.make == "SAMSUNG"  # the EXIF was read …
    assert photo.exif.gps is None  # … but 0/0 is "no fix", not a place
    assert photo.flags == []


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


# --- 3: derivatives are upright -----------------------------------------------------------------


@pytest.fixture(scope="module")
def landscape_reference(tmp_path_factory: pytest.TempPathFactory) -> Image.Image:
    """The `large` of orient__landscape_1.jpg (no rotation needed), small and grey."""
    root = tmp_path_factory.mktemp("reference")
    photo = ingest(sample_bytes("orient__landscape_1.jpg"), root)
    return grey_small(derivative(root, photo, "large"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sample_orientations_give_the_same_upright_landscape(
    orientation: int, landscape_reference: Image.Image, tmp_path: Path
) -> None:
    data = sample_bytes(f"orient__landscape_{orientation}.jpg")
    photo = ingest(data, tmp_path)
    large, thumb = assert_derivatives(tmp_path, photo)
    assert (photo.width, photo.height) == (1800, 1200)
    assert photo.exif.orientation == orientation
    assert large.size == (1600, 1067)
    assert thumb.size == (320, 213)
    assert mean_difference(grey_small(large), landscape_reference) < 5
    assert mean_difference(grey_small(thumb), landscape_reference) < 8
    if orientation != 1:
        # The stored pixels, shown without the rotation, look clearly different: the
        # comparison above would catch a derivative that was not turned upright.
        raw = Image.open(io.BytesIO(data))
        assert mean_difference(grey_small(raw), landscape_reference) > 30


# EXIF orientation → how to store an upright picture so that this orientation shows it upright.
_STORE_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright_marker() -> Image.Image:
    """300×200, blue, with a red block in the top-left corner."""
    image = Image.new("RGB", (300, 200), (0, 0, 255))
    ImageDraw.Draw(image).rectangle((0, 0, 100, 60), fill=(255, 0, 0))
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF", "HEIF"])
def test_generated_orientations_are_applied_once(
    fmt: str, orientation: int, tmp_path: Path
) -> None:
    upright = upright_marker()
    stored = upright if orientation == 1 else upright.transpose(_STORE_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo = ingest(encode(stored, fmt, exif=exif.tobytes(), quality=95), tmp_path)
    large, _thumb = assert_derivatives(tmp_path, photo)
    assert (photo.width, photo.height) == (300, 200)
    assert large.size == (300, 200)
    red, blue = large.getpixel((10, 10)), large.getpixel((290, 190))
    assert isinstance(red, tuple) and isinstance(blue, tuple)
    assert red[0] > 200 and red[2] < 50, red
    assert blue[2] > 200 and blue[0] < 50, blue
    if orientation != 1:
        assert photo.exif.orientation == orientation


# --- 4: HEIC orientation is applied by pillow-heif, not again by us -----------------------------


def test_heic_orientation_applied_once(tmp_path: Path) -> None:
    data = sample_bytes("heic__apple_iphone13promax_nogps_orient6.heic")
    photo = ingest(data, tmp_path)
    assert photo.format == "HEIF"
    assert photo.content_type == "image/heic"
    assert (photo.width, photo.height) == (3024, 4032)
    assert photo.exif.orientation == 6
    large, thumb = assert_derivatives(tmp_path, photo)
    assert large.size == (1200, 1600)
    assert thumb.size == (240, 320)
    decoded = Image.open(io.BytesIO(data))  # pillow-heif shows it upright already
    assert decoded.size == (3024, 4032)
    assert mean_difference(grey_small(large), grey_small(decoded)) < 5


HEIF_AND_AVIF = [
    row["filename"]
    for row in MANIFEST
    if row["magic"] in ("isobmff:heic", "isobmff:avif") and expected_error(row) is None
]


@pytest.mark.parametrize("name", HEIF_AND_AVIF)
def test_a_heif_or_avif_file_cut_short_is_refused(name: str, tmp_path: Path) -> None:
    """Cut anywhere, the file is refused whole: the libheif pillow_heif bundles would decode an
    iPhone photo cut in half at full size (the missing grid tiles in flat colour) and one cut
    by a few bytes without its EXIF, and so its GPS."""
    data = sample_bytes(name)
    for keep in (len(data) - 1, len(data) - 16, len(data) // 2, 4096):
        error = refused(ImageUnreadable, data[:keep], tmp_path / str(keep))
        assert "damaged or incomplete" in str(error)
    assert ingest(data, tmp_path / "whole").sha256  # and whole, it is accepted


def test_the_truncated_heic_sample_names_what_is_missing(tmp_path: Path) -> None:
    """pillow_heif's own truncated.heic: its first image (16×16) decodes, the bytes of a later
    item lie past the end of the file; heif-convert refuses it, and so do we."""
    data = sample_bytes("hostile__heic_truncated.heic")
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # what the pipeline did: the primary image alone decodes fine
        assert img.size == (16, 16)
    error = refused(ImageUnreadable, data, tmp_path)
    assert "past the end of the file (3,657 bytes)" in str(error)


def test_a_heif_whose_primary_image_decodes_smaller_than_declared_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a decoder ever hand back a thumbnail or part of the image, it is not taken for
    the photo."""
    real_load = HeifImageFile.load

    def load(self: Any) -> Any:
        result = real_load(self)
        thumbnail = Image.new("RGB", (160, 120))
        self.im, self._size = thumbnail.im, thumbnail.size
        return result

    monkeypatch.setattr(HeifImageFile, "load", load)
    data = sample_bytes("heic__apple_iphone8_gps.heic")
    error = refused(ImageUnreadable, data, tmp_path)
    assert "of the (4032, 3024) declared" in str(error)


# --- 5: content-addressed, stored once -----------------------------------------------------------


def test_a_derivative_that_fails_to_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save that fails half-way (a full disk, say): no original, no derivative, no temp file."""

    def full_disk(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        fp.write(b"\xff\xd8 half a JPEG")
        raise OSError(28, "No space left on device")

    data = (SAMPLES / "orient__landscape_6.jpg").read_bytes()
    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        ingest(data, tmp_path)
    assert stored_files(tmp_path) == []


def identities(root: Path) -> dict[Path, int]:
    """The stored photo files and their inodes: a file written again has a new one."""
    return {path: path.stat().st_ino for path in stored_files(root) if "claims" not in path.parts}


def test_same_bytes_are_stored_once(tmp_path: Path) -> None:
    data = make_jpeg(640, 480, seed=7)
    first = ingest(data, tmp_path)
    stored = identities(tmp_path)
    second = ingest(data, tmp_path)
    assert second.sha256 == first.sha256
    assert identities(tmp_path) == stored  # nothing written again
    assert_stored(tmp_path, first, data)
    assert len([p for p in stored_files(tmp_path) if "originals" in p.parts]) == 1


def test_different_bytes_are_stored_apart(tmp_path: Path) -> None:
    one, two = (
        ingest(make_jpeg(320, 240, seed=1), tmp_path),
        ingest(make_jpeg(320, 240, seed=2), tmp_path),
    )
    assert one.sha256 != two.sha256
    assert len(stored_files(tmp_path)) == 6


def test_upload_read_to_its_end_is_ingested_from_the_start(tmp_path: Path) -> None:
    data = make_jpeg(320, 240, seed=3)
    upload = io.BytesIO(data)
    upload.read()
    photo = ingest_photo(upload, Settings(upload_dir=tmp_path), Storage(tmp_path))
    assert photo.bytes == len(data)
    assert_stored(tmp_path, photo, data)


# --- 6: limits ------------------------------------------------------------------------------------


def test_photo_over_max_upload_is_refused(tmp_path: Path) -> None:
    data = encode(noise(320, 320), "JPEG", quality=95)
    assert len(data) > 100_000
    error = refused(PhotoTooLarge, data, tmp_path, max_upload_mb=0.05)
    assert error.extra["max_bytes"] == int(0.05 * 1024 * 1024)


def test_max_upload_boundary_is_inclusive(tmp_path: Path) -> None:
    limit = int(0.05 * 1024 * 1024)
    data = make_jpeg(200, 150, seed=4)
    padded = data + b"\0" * (limit - len(data))  # bytes after EOI are ignored by decoders
    assert len(padded) == limit
    photo = ingest(padded, tmp_path, max_upload_mb=0.05)
    assert photo.bytes == limit
    refused(PhotoTooLarge, padded + b"\0", tmp_path / "over", max_upload_mb=0.05)


@pytest.fixture(scope="module")
def jpeg_1200() -> bytes:
    return make_jpeg(1200, 1200, seed=8)


def test_jpeg_over_max_image_pixels_is_refused(jpeg_1200: bytes, tmp_path: Path) -> None:
    error = refused(ImageTooManyPixels, jpeg_1200, tmp_path, max_image_pixels=1000 * 1000)
    assert error.extra["pixels"] == 1200 * 1200
    assert error.extra["max_pixels"] == 1000 * 1000


def test_jpeg_at_max_image_pixels_passes(tmp_path: Path) -> None:
    photo = ingest(make_jpeg(1000, 1000, seed=8), tmp_path, max_image_pixels=1000 * 1000)
    assert (photo.width, photo.height) == (1000, 1000)


def test_pixel_limit_is_checked_before_decoding(jpeg_1200: bytes, tmp_path: Path) -> None:
    # Header intact, pixel data cut short: decoding would fail as unreadable. Over the pixel
    # limit it must be refused for its pixels, so the size was judged before any decode.
    truncated = jpeg_1200[: len(jpeg_1200) // 4]
    refused(ImageUnreadable, truncated, tmp_path / "default")
    refused(ImageTooManyPixels, truncated, tmp_path / "small", max_image_pixels=1000 * 1000)


def test_full_decode_limit_applies_to_png_not_jpeg(jpeg_1200: bytes, tmp_path: Path) -> None:
    png = encode(street_scene(1200, 1200, seed=8), "PNG")
    error = refused(ImageTooManyPixels, png, tmp_path / "png", max_full_decode_pixels=1_000_000)
    assert error.extra["max_pixels"] == 1_000_000
    photo = ingest(jpeg_1200, tmp_path / "jpeg", max_full_decode_pixels=1_000_000)
    assert (photo.format, photo.width, photo.height) == ("JPEG", 1200, 1200)


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_frames_of_an_animation_count_together(fmt: str, tmp_path: Path) -> None:
    frames = [Image.new("RGB", (100, 100), (60 * i, 90, 200 - 60 * i)) for i in range(3)]
    animated = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(animated)).n_frames == 3
    error = refused(ImageTooManyPixels, animated, tmp_path / "anim", max_full_decode_pixels=25_000)
    assert error.extra["pixels"] == 30_000
    single = ingest(encode(frames[0], fmt), tmp_path / "one", max_full_decode_pixels=25_000)
    assert (single.width, single.height) == (100, 100)


def test_jpeg_gain_map_is_not_counted_as_a_second_full_size_frame(tmp_path: Path) -> None:
    # Ultra HDR phone JPEGs carry a small gain-map image in an MPF segment; Pillow opens them
    # as 2-frame MPO. Only the primary image is ever decoded, so only it counts against
    # max_image_pixels ("real 200 MP phone photos pass"); 1.8 MP + 0.12 MP is under 2 MP.
    primary, gain_map = street_scene(1500, 1200, seed=9), Image.new("L", (400, 300), 128)
    data = encode(primary, "MPO", save_all=True, append_images=[gain_map])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    photo = ingest(data, tmp_path, max_image_pixels=2_000_000)
    assert (photo.format, photo.width, photo.height) == ("JPEG", 1500, 1200)


# --- 7: the format comes from the bytes, not the name -------------------------------------------


def test_jpeg_named_png_is_jpeg(tmp_path: Path) -> None:
    data = make_jpeg(320, 240, seed=10)
    named = tmp_path / "upload" / "photo.png"
    named.parent.mkdir()
    named.write_bytes(data)
    storage_root = tmp_path / "storage"
    with named.open("rb") as upload:
        photo = ingest_photo(upload, Settings(upload_dir=storage_root), Storage(storage_root))
    assert (photo.format, photo.content_type) == ("JPEG", "image/jpeg")


def test_gif_named_jpg_is_refused(tmp_path: Path) -> None:
    named = tmp_path / "upload" / "photo.jpg"
    named.parent.mkdir()
    named.write_bytes(encode(upright_marker(), "GIF"))
    storage_root = tmp_path / "storage"
    with named.open("rb") as upload, pytest.raises(UnsupportedMediaType):
        ingest_photo(upload, Settings(upload_dir=storage_root), Storage(storage_root))
    assert stored_files(storage_root) == []


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("PNG", "image/png"),
        ("WEBP", "image/webp"),
        ("AVIF", "image/avif"),
        ("HEIF", "image/heic"),
        ("JPEG", "image/jpeg"),
    ],
)
def test_generated_formats_are_accepted(fmt: str, content_type: str, tmp_path: Path) -> None:
    data = encode(street_scene(400, 300, seed=11), fmt, quality=90)
    photo = ingest(data, tmp_path)
    assert (photo.format, photo.content_type) == (fmt, content_type)
    assert (photo.width, photo.height) == (400, 300)
    assert_stored(tmp_path, photo, data)
    assert_derivatives(tmp_path, photo)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "BMP", "ICO", "PPM", "TGA", "PCX"])
def test_other_image_formats_are_refused(fmt: str, tmp_path: Path) -> None:
    refused(UnsupportedMediaType, encode(upright_marker(), fmt), tmp_path)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8",
        b"hello world, not an image",
        b"%PDF-1.7\n" + b"0" * 100,
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\0" * 64,
    ],
    ids=["empty", "two-bytes", "text", "pdf", "mp4"],
)
def test_non_images_are_refused(data: bytes, tmp_path: Path) -> None:
    refused(UnsupportedMediaType, data, tmp_path)


@pytest.mark.parametrize(
    "mode",
    ["L", "LA", "P", "RGBA", "I;16", "1", "CMYK"],
)
def test_image_modes_become_rgb_derivatives(mode: str, tmp_path: Path) -> None:
    fmt = "JPEG" if mode in ("CMYK", "L") else "PNG"
    image = street_scene(200, 100, seed=12).convert("RGBA" if mode == "LA" else "RGB")
    image = image.convert(mode) if mode != "I;16" else image.convert("L").convert("I;16")
    photo = ingest(encode(image, fmt), tmp_path)
    large, _thumb = assert_derivatives(tmp_path, photo)
    assert large.size == (200, 100)


def test_transparent_png_gets_a_white_background(tmp_path: Path) -> None:
    photo = ingest(encode(Image.new("RGBA", (200, 100), (0, 0, 0, 0)), "PNG"), tmp_path)
    large, _thumb = assert_derivatives(tmp_path, photo)
    assert large.getpixel((100, 50)) == pytest.approx((255, 255, 255), abs=2)


def test_palette_png_with_transparency_gets_a_white_background(tmp_path: Path) -> None:
    image = Image.new("P", (200, 100), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    ImageDraw.Draw(image).rectangle((100, 0, 199, 99), fill=1)
    photo = ingest(encode(image, "PNG", transparency=0), tmp_path)
    large = derivative(tmp_path, photo, "large")
    assert large.getpixel((50, 50)) == pytest.approx((255, 255, 255), abs=2)  # transparent
    assert large.getpixel((150, 50)) == pytest.approx((255, 0, 0), abs=3)  # opaque red


def test_sixteen_bit_png_keeps_its_brightness(tmp_path: Path) -> None:
    image = Image.new("I;16", (200, 100), 40000)  # 40000 / 65535 ≈ 61 %: 156 in 8 bits
    photo = ingest(encode(image, "PNG"), tmp_path)
    value = derivative(tmp_path, photo, "large").getpixel((100, 50))
    assert isinstance(value, tuple)
    assert value == pytest.approx((156, 156, 156), abs=3)


# --- 8: EXIF -------------------------------------------------------------------------------------


def test_exif_gps_zero_zero_is_no_gps(tmp_path: Path) -> None:
    photo = ingest(make_jpeg(320, 240, lat=0.0, lon=0.0), tmp_path)
    assert photo.exif.gps is None
    assert photo.exif.gps_lat is None and photo.exif.gps_lon is None
    assert photo.exif.make == "Xiaomi"
    assert photo.flags == []


def test_exif_gps_south_west_and_below_sea_level(tmp_path: Path) -> None:
    photo = ingest(make_jpeg(320, 240, lat=-33.8567844, lon=-70.6482666, altitude=-12.5), tmp_path)
    assert photo.exif.gps_lat == pytest.approx(-33.8567844, abs=1e-6)
    assert photo.exif.gps_lon == pytest.approx(-70.6482666, abs=1e-6)
    assert photo.exif.gps_alt == pytest.approx(-12.5)
    assert photo.exif.gps == (photo.exif.gps_lat, photo.exif.gps_lon)


def test_exif_make_model_software_and_public_fields(tmp_path: Path) -> None:
    photo = ingest(
        make_jpeg(
            320,
            240,
            lat=34.75,
            lon=113.78,
            altitude=101.0,
            make="HUAWEI",
            model="Mate 60 Pro",
            software="HarmonyOS 4.0",
            orientation=1,
        ),
        tmp_path,
    )
    assert photo.exif.public() == {
        "make": "HUAWEI",
        "model": "Mate 60 Pro",
        "gps_lat": pytest.approx(34.75),
        "gps_lon": pytest.approx(113.78),
        "gps_alt": 101.0,
        "orientation": 1,
        "software": "HarmonyOS 4.0",
    }
    assert photo.flags == []


def test_exif_text_ends_at_its_nul(tmp_path: Path) -> None:
    """A Sony Mavica writes its model into a fixed buffer: NUL, then whatever was there."""
    data = exif_jpeg(
        zeroth={
            piexif.ImageIFD.Make: b"SONY\x00\x00\x00\x00",
            piexif.ImageIFD.Model: b"MAVICA\x003ghx7y",
            piexif.ImageIFD.Software: b"\x00leftover",
        },
        exif={piexif.ExifIFD.DateTimeOriginal: b"2002:11:03 10:04:51\x00:0"},
    )
    photo = ingest(data, tmp_path)
    assert (photo.exif.make, photo.exif.model, photo.exif.software) == ("SONY", "MAVICA", None)
    assert photo.exif.taken_at == "2002-11-03T10:04:51"
    assert photo.flags == []


def test_exif_text_loses_control_characters_and_keeps_unicode(tmp_path: Path) -> None:
    data = exif_jpeg(
        zeroth={
            # C0 (BEL, ESC, CR, LF), DEL, and C1 both as a Latin-1 byte and as UTF-8 (U+009B).
            piexif.ImageIFD.Make: b"\x7fXia\x07omi\r\n",
            piexif.ImageIFD.Model: b"Redmi\x1b[2J K70\xc2\x9b",
            piexif.ImageIFD.Software: "美图秀秀\x85".encode(),  # U+0085 (NEL) in UTF-8
        }
    )
    photo = ingest(data, tmp_path)
    assert photo.exif.make == "Xiaomi"
    assert photo.exif.model == "Redmi[2J K70"
    assert photo.exif.software == "美图秀秀"  # a phone's UTF-8 is kept
    latin = ingest(exif_jpeg(zeroth={piexif.ImageIFD.Make: b"Caf\xe9\x85"}), tmp_path / "l")
    assert latin.exif.make == "Café"  # not UTF-8: read as Latin-1, its C1 control dropped


def _gps(lat: Any = None, lon: Any = None) -> dict[int, Any]:
    """A GPS IFD with these (degrees, minutes, seconds) rationals; None leaves a tag out."""
    gps: dict[int, Any] = {}
    if lat is not None:
        gps |= {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: lat}
    if lon is not None:
        gps |= {piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: lon}
    return gps


_DEG = ((10, 1), (0, 1), (0, 1))
_NAN = ((0, 0), (0, 0), (0, 0))


@pytest.mark.parametrize(
    "gps",
    [
        _gps(((95, 1), (0, 1), (0, 1)), _DEG),
        _gps(_DEG, ((190, 1), (0, 1), (0, 1))),
        _gps(_NAN, _NAN),
        _gps(((34, 1), (45, 1), (0, 1)), None),
        _gps(None, _DEG),
    ],
    ids=["lat-95", "lon-190", "zero-denominators", "lat-only", "lon-only"],
)
def test_unusable_exif_gps_is_no_gps(gps: dict[int, Any], tmp_path: Path) -> None:
    photo = ingest(exif_jpeg(zeroth={piexif.ImageIFD.Make: b"Xiaomi"}, gps=gps), tmp_path)
    assert photo.exif.gps is None
    assert photo.exif.gps_lat is None and photo.exif.gps_lon is None
    assert photo.exif.make == "Xiaomi"


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_invalid_orientation_is_flagged_but_accepted(orientation: int, tmp_path: Path) -> None:
    data = make_jpeg(300, 200, orientation=orientation, lat=34.75, lon=113.78)
    photo = ingest(data, tmp_path)
    assert photo.flags == ["exif_unreadable"]
    assert photo.exif.orientation is None
    assert (photo.width, photo.height) == (300, 200)  # shown as stored
    assert photo.exif.gps == pytest.approx((34.75, 113.78))  # the rest of the EXIF is kept
    assert derivative(tmp_path, photo, "large").size == (300, 200)


@pytest.mark.parametrize(
    "name", ["hostile__hopper_bad_exif.jpg", "hostile__exif_gps_typeerror.jpg"]
)
def test_broken_exif_samples_are_flagged_but_accepted(name: str, tmp_path: Path) -> None:
    data = sample_bytes(name)
    photo = ingest(data, tmp_path)
    assert photo.flags == ["exif_unreadable"]
    assert photo.exif.gps is None
    assert_stored(tmp_path, photo, data)


def test_good_exif_is_not_flagged(tmp_path: Path) -> None:
    assert ingest(sample_bytes("gps__htc_desire.jpg"), tmp_path).flags == []


def test_offset_time_original_is_kept(tmp_path: Path) -> None:
    photo = ingest(
        make_jpeg(320, 240, taken_at=datetime(2025, 3, 1, 9, 30, 5, tzinfo=CHINA)), tmp_path
    )
    assert photo.exif.taken_at == "2025-03-01T09:30:05+08:00"
    assert datetime.fromisoformat(photo.exif.taken_at).utcoffset() == timedelta(hours=8)


def test_negative_offset_time_original_is_kept(tmp_path: Path) -> None:
    taken = datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))
    photo = ingest(make_jpeg(320, 240, taken_at=taken), tmp_path)
    assert photo.exif.taken_at == "2024-12-31T23:59:59-05:00"


def test_taken_at_without_offset_is_the_camera_wall_time(tmp_path: Path) -> None:
    photo = ingest(make_jpeg(320, 240, taken_at=datetime(2025, 3, 1, 9, 30, 5)), tmp_path)
    assert photo.exif.taken_at == "2025-03-01T09:30:05"


@pytest.mark.parametrize(
    "value",
    [b"not a date", b"0000:00:00 00:00:00", b"2024:02:30 10:00:00", b"    :  :     :  :  "],
)
def test_unparseable_date_time_original_is_none(value: bytes, tmp_path: Path) -> None:
    data = exif_jpeg(
        zeroth={piexif.ImageIFD.Make: b"OPPO"},
        exif={piexif.ExifIFD.DateTimeOriginal: value, piexif.ExifIFD.OffsetTimeOriginal: b"+08:00"},
    )
    photo = ingest(data, tmp_path)
    assert photo.exif.taken_at is None
    assert photo.exif.make == "OPPO"


def test_exif_written_by_the_sample_generator_is_read_back(tmp_path: Path) -> None:
    block = exif_bytes(
        lat=34.7512345, lon=113.7801234, taken_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=CHINA)
    )
    data = encode(street_scene(320, 240, seed=13), "JPEG", exif=block)
    photo = ingest(data, tmp_path)
    assert photo.exif.gps == pytest.approx((34.7512345, 113.7801234), abs=1e-6)
    assert photo.exif.taken_at == "2025-01-02T03:04:05+08:00"


# sniff_format, parse_exif_time, usable_coordinates


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\0" * 16


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "JPEG"),
        (b"\xff\xd8\xff\xe1\x00\x10Exif\x00", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "WEBP"),
        (_ftyp(b"heic", b"mif1", b"heic"), "HEIF"),
        (_ftyp(b"mif1", b"heic"), "HEIF"),
        (_ftyp(b"heix", b"mif1"), "HEIF"),
        (_ftyp(b"avif", b"mif1", b"miaf"), "AVIF"),
        (_ftyp(b"mif1", b"avif"), "AVIF"),
        (_ftyp(b"avis", b"msf1"), "AVIF"),
        (_ftyp(b"mp42", b"isom", b"mp42"), None),
        (_ftyp(b"qt  "), None),
        (b"GIF89a\x01\x00\x01\x00", None),
        (b"GIF87a\x01\x00\x01\x00", None),
        (b"II*\x00\x08\x00\x00\x00", None),
        (b"MM\x00*\x00\x00\x00\x08", None),
        (b"BM\x36\x00\x00\x00", None),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"\xff\xd8", None),
        (b"", None),
        (b"<?php phpinfo(); ?>", None),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def test_sniff_format_of_every_accepted_sample() -> None:
    for row in MANIFEST:
        head = (SAMPLES / row["filename"]).read_bytes()[:64]
        fmt = sniff_format(head)
        expected = {
            "jpeg": "JPEG",
            "png": "PNG",
            "webp": "WEBP",
            "isobmff:heic": "HEIF",
            "isobmff:avif": "AVIF",
        }.get(row["magic"])
        assert fmt == expected, row["filename"]


@pytest.mark.parametrize(
    ("value", "offset", "expected"),
    [
        ("2024:05:07 09:33:04", None, "2024-05-07T09:33:04"),
        (b"2024:05:07 09:33:04", b"+08:00", "2024-05-07T09:33:04+08:00"),
        ("2024:05:07 09:33:04", "-03:30", "2024-05-07T09:33:04-03:30"),
        ("2024:05:07 09:33:04\x00", "+08:00\x00", "2024-05-07T09:33:04+08:00"),
        ("2024:05:07 09:33:04\x00junk", "+08:00\x00junk", "2024-05-07T09:33:04+08:00"),
        ("\x002024:05:07 09:33:04", None, None),
        (" 2024:05:07 09:33:04 ", None, "2024-05-07T09:33:04"),
        ("2024:05:07 09:33:04", "+0800", "2024-05-07T09:33:04"),  # malformed offset dropped
        ("2024:05:07 09:33:04", "   ", "2024-05-07T09:33:04"),
        ("2024:05:07 09:33:04", 8, "2024-05-07T09:33:04"),
        ("0000:00:00 00:00:00", None, None),
        ("2024:13:01 00:00:00", None, None),
        ("2024-05-07 09:33:04", None, None),
        ("yesterday", "+08:00", None),
        ("", None, None),
        (None, "+08:00", None),
        (20240507, None, None),
    ],
)
def test_parse_exif_time(value: Any, offset: Any, expected: str | None) -> None:
    assert parse_exif_time(value, offset) == expected


@pytest.mark.parametrize(
    ("lat", "lon", "usable"),
    [
        (34.75, 113.78, True),
        (-33.86, -70.64, True),
        (90, 180, True),
        (-90, -180, True),
        (0.0, 10.0, True),
        (10.0, 0.0, True),
        (0.0, 0.0, False),
        (-0.0, 0.0, False),
        (math.nan, 113.78, False),
        (34.75, math.nan, False),
        (math.inf, 0.5, False),
        (34.75, -math.inf, False),
        (90.0001, 10, False),
        (-91, 10, False),
        (10, 180.5, False),
        (10, -181, False),
    ],
)
def test_usable_coordinates(lat: float, lon: float, usable: bool) -> None:
    assert usable_coordinates(lat, lon) is usable


# --- 9: JPEG is decoded at reduced scale ---------------------------------------------------------

_MEASURE = textwrap.dedent(
    """
    import io, re, sys, tempfile
    from pathlib import Path
    from PIL import Image
    from app.config import Settings
    from app.services.photos import ingest_photo
    from app.services.storage import Storage

    def peak():  # this process's resident high-water mark (ru_maxrss counts the parent's)
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024

    data = Path(sys.argv[1]).read_bytes()
    root = Path(tempfile.mkdtemp())
    warm = io.BytesIO()
    Image.new("RGB", (64, 48)).save(warm, "JPEG")
    ingest_photo(warm, Settings(upload_dir=root), Storage(root))  # imports, caches
    base = peak()
    photo = ingest_photo(io.BytesIO(data), Settings(upload_dir=root), Storage(root))
    after_ingest = peak()
    Image.open(io.BytesIO(data)).load()  # a full decode, for comparison
    after_full = peak()
    print(photo.width, photo.height, after_ingest - base, after_full - base)
    """
)
MB = 1024 * 1024


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "4000x3000.jpg"
    path.write_bytes(make_jpeg(4000, 3000, seed=14, quality=85))
    return path


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_big_jpeg_is_decoded_at_reduced_scale(big_jpeg: Path, tmp_path: Path) -> None:
    # tracemalloc cannot see Pillow's pixel buffers (they are malloc'ed in C), so the peak
    # resident memory of a fresh process is measured instead, with a full decode as control.
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(big_jpeg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    width, height, ingest_growth, full_growth = map(int, result.stdout.split())
    assert (width, height) == (4000, 3000)
    # A full decode holds 4000×3000 px × 4 bytes = 46 MiB; the measurement must see it …
    assert full_growth > 40 * MB, full_growth
    # … while the ingest, decoding at 1/2 scale (2000×1500), stays well below it.
    assert ingest_growth < 38 * MB, ingest_growth

    photo = ingest(big_jpeg.read_bytes(), tmp_path)
    large, thumb = assert_derivatives(tmp_path, photo)
    assert large.size == (1600, 1200)
    assert thumb.size == (320, 240)


_FAULTS = textwrap.dedent(
    """
    import re, resource, sys
    from pathlib import Path
    from app.config import Settings
    from app.services import decoders, photos
    from app.services.storage import Storage

    # "pool": through a decoding process, as under `gridproof serve`; "here": in this process,
    # with glibc's defaults. Page faults and peak of the process that decodes.
    data, root, where = Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]), sys.argv[3]
    processes = 1 if where == "pool" else 0
    settings, storage = Settings(upload_dir=root, image_processes=processes), Storage(root)
    decoders.start_decoders(settings)
    pool = decoders._pools.get(1)

    def usage():
        return pool.submit(resource.getrusage, resource.RUSAGE_SELF).result() if pool \
            else resource.getrusage(resource.RUSAGE_SELF)

    faults = []
    for i in range(4):  # distinct bytes each time, so that every photo is really stored
        before = usage().ru_minflt
        with open(root / f"in{i}", "w+b") as upload:
            upload.write(data + bytes([i]))
            photos.ingest_photo(upload, settings, storage)
        faults.append(usage().ru_minflt - before)
    pid = next(iter(pool._processes)) if pool else "self"
    status = Path(f"/proc/{pid}/status").read_text()
    print(sum(faults[1:]) // 3, int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024)
    decoders.stop_decoders()
    """
)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(decoders.ctypes.CDLL(None), "mallopt"),
    reason="needs glibc's mallopt and Linux /proc",
)
def test_decoders_keep_the_memory_a_photo_frees_for_the_next(
    big_jpeg: Path, tmp_path: Path
) -> None:
    """With glibc's defaults every 12 MP photo maps its big buffers afresh and faults them in
    (thousands of page faults); a decoding process keeps them: few faults, the same peak."""

    def run(where: str) -> tuple[int, int]:
        root = tmp_path / where
        root.mkdir()
        result = subprocess.run(
            [sys.executable, "-c", _FAULTS, str(big_jpeg), str(root), where],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert result.returncode == 0, result.stderr
        faults, peak = map(int, result.stdout.split())
        return faults, peak

    default_faults, default_peak = run("here")
    kept_faults, kept_peak = run("pool")
    # 2000×1500 px decoded at 4 bytes each is 12 MB, some 2,900 pages, faulted in per photo.
    assert default_faults > 2000, default_faults
    assert kept_faults < default_faults / 5, (kept_faults, default_faults)
    assert kept_peak < default_peak + 16 * MB, (kept_peak, default_peak)


# --- 10: derivatives are sRGB -------------------------------------------------------------------

P3_SAMPLE = "heic__apple_iphone8_gps.heic"


@pytest.fixture(scope="module")
def display_p3() -> bytes:
    """The Display P3 profile an iPhone embeds in its photos."""
    with Image.open(SAMPLES / P3_SAMPLE) as img:
        icc = img.info["icc_profile"]
    assert isinstance(icc, bytes)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    assert ImageCms.getProfileDescription(profile).strip() == "Display P3"
    return icc


def _srgb_from_p3(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Display P3 → sRGB by the book, not by lcms: both use the sRGB curve and D65; the matrix
    is the P3 primaries' in sRGB's linear light; what lies outside sRGB is clipped."""

    def linear(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    def encoded(v: float) -> int:
        v = min(max(v, 0.0), 1.0)
        return round(255 * (12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055))

    matrix = ((1.2249, -0.2247, 0.0), (-0.0420, 1.0419, 0.0), (-0.0197, -0.0786, 1.0979))
    rgb = [linear(c / 255) for c in colour]
    r, g, b = (encoded(sum(m * c for m, c in zip(row, rgb, strict=True))) for row in matrix)
    return r, g, b


# Saturated P3 red (outside sRGB), muted colours (inside it), a grey.
P3_PATCHES = [(255, 0, 0), (200, 60, 60), (60, 160, 60), (80, 80, 200), (128, 128, 128)]


def patches(colours: list[tuple[int, int, int]]) -> Image.Image:
    image = Image.new("RGB", (100 * len(colours), 100))
    for i, colour in enumerate(colours):
        image.paste(colour, (100 * i, 0, 100 * i + 100, 100))
    return image


def test_display_p3_jpeg_derivatives_are_converted_to_srgb(
    display_p3: bytes, tmp_path: Path
) -> None:
    data = encode(patches(P3_PATCHES), "JPEG", quality=95, icc_profile=display_p3)
    photo = ingest(data, tmp_path)
    large, thumb = assert_derivatives(tmp_path, photo)
    assert_stored(tmp_path, photo, data)  # the original keeps its profile, byte for byte
    for image in (large, thumb):
        assert "icc_profile" not in image.info  # sRGB: what a viewer assumes without one
    for i, p3 in enumerate(P3_PATCHES):
        got = large.getpixel((100 * i + 50, 50))
        assert isinstance(got, tuple)
        want = _srgb_from_p3(p3)
        assert all(abs(g - w) <= 4 for g, w in zip(got, want, strict=True)), (p3, got, want)
    # In sRGB numbers P3 colours are more saturated: red up, green and blue down; grey stays.
    red = large.getpixel((50, 50))
    muted = large.getpixel((150, 50))
    assert isinstance(red, tuple) and isinstance(muted, tuple)
    assert red[0] >= 250 and red[1] <= 6 and red[2] <= 6, red
    assert muted[0] > 200 + 10 and muted[1] < 60 - 10 and muted[2] < 60 - 5, muted
    assert large.getpixel((450, 50)) == pytest.approx((128, 128, 128), abs=2)


def _saturation(image: Image.Image) -> float:
    return float(ImageStat.Stat(image.convert("HSV")).mean[1])


@pytest.mark.parametrize("processes", [0, 1], ids=["in-thread", "in-pool"])
def test_display_p3_heic_derivatives_are_converted_to_srgb(
    processes: int, display_p3: bytes, tmp_path: Path
) -> None:
    data = sample_bytes(P3_SAMPLE)
    photo = ingest(data, tmp_path, image_processes=processes)
    large, _thumb = assert_derivatives(tmp_path, photo)
    assert "icc_profile" not in large.info
    with Image.open(io.BytesIO(data)) as decoded:
        naive = decoded.convert("RGB").resize(large.size, Image.Resampling.LANCZOS)
    converted = ImageCms.profileToProfile(
        naive,
        ImageCms.ImageCmsProfile(io.BytesIO(display_p3)),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
    )
    assert isinstance(converted, Image.Image)
    assert _saturation(large) == pytest.approx(_saturation(converted), abs=1.5)
    assert _saturation(large) > _saturation(naive) + 4


@pytest.mark.parametrize("profile", ["sRGB", "unreadable", "none"])
def test_srgb_or_unreadable_profiles_leave_the_pixels_as_they_are(
    profile: str, tmp_path: Path
) -> None:
    """No conversion where there is nothing to convert: the derivative is the one of the same
    pixels without a profile, byte for byte (and a broken profile refuses no photo)."""
    icc = {
        "sRGB": ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        "unreadable": b"not an ICC profile " * 40,
        "none": b"",
    }[profile]
    pixels = patches(P3_PATCHES)
    with_profile = encode(pixels, "JPEG", quality=95, icc_profile=icc)
    without = encode(pixels, "JPEG", quality=95)
    photo = ingest(with_profile, tmp_path / "with")
    plain = ingest(without, tmp_path / "without")
    storage_with, storage_without = Storage(tmp_path / "with"), Storage(tmp_path / "without")
    for name in ("large", "thumb"):
        assert (
            derivative_file(storage_with.root, photo.sha256, name).read_bytes()
            == derivative_file(storage_without.root, plain.sha256, name).read_bytes()
        )
