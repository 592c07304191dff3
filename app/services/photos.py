"""The photo ingest pipeline: every upload goes through `ingest_photo`.

The upload is copied into storage as it arrives (size-capped on the way); then, in a
decoding process under `gridproof serve` (else in the request's thread), the file is hashed,
its format taken from its bytes, opened with only the accepted Pillow decoders, its EXIF read,
decoded once at reduced scale, and two upright derivatives are written without EXIF. Nothing
here touches the database.
"""

import contextlib
import ctypes
import functools
import math
import multiprocessing
import re
import signal
import struct
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import imagehash
import pillow_heif
from PIL import Image, ImageFile, UnidentifiedImageError

from app.config import Settings
from app.errors import ImageTooManyPixels, ImageUnreadable, PhotoTooLarge, UnsupportedMediaType
from app.services.storage import (
    CHUNK,
    Claim,
    Storage,
    remove_quietly,
    sha256_of_file,
    sha256_of_path,
)

pillow_heif.register_heif_opener(thumbnails=False)
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow's decompression-bomb warning is an error here. (Warning filters are process-global and
# any catch_warnings() elsewhere resets them, so the pixel check in _check_pixels is what holds.)
warnings.simplefilter("error", Image.DecompressionBombWarning)


CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "HEIF": "image/heic",
    "AVIF": "image/avif",
}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic", "AVIF": "avif"}


def format_of_content_type(content_type: str) -> str:
    return next(fmt for fmt, ctype in CONTENT_TYPES.items() if ctype == content_type)


_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}

# EXIF Orientation → the transpose that shows the picture upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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


@dataclass
class IngestedPhoto:
    sha256: str
    format: str
    bytes: int
    width: int
    height: int
    exif: ExifFacts
    phash: str
    # The derivatives as the decoder wrote them, by name: temp files, moved into place by the
    # request (`ingest_photo`), so that a decoder that dies leaves nothing but temp files.
    derivative_temps: dict[str, Path] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def flags(self) -> list[str]:
        return ["exif_unreadable"] if self.exif.unreadable else []


def sniff_format(head: bytes) -> str | None:
    """The image format named by the file's first bytes, if it is one we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        box_size = int.from_bytes(head[:4], "big")
        brands = {head[i : i + 4] for i in range(8, min(box_size, len(head)) - 3, 4)}
        if brands & _AVIF_BRANDS:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
    return None


@dataclass(frozen=True)
class SpooledPhoto:
    """An upload copied into storage's tmp folder, within the size cap: where the pipeline
    starts. The HTTP layer streams multipart file parts straight into one."""

    path: Path
    size: int
    head: bytes  # the first bytes, which name the format


Upload = BinaryIO | SpooledPhoto


class PhotoSpool:
    """Copies one upload into a storage temp file, capping its size on the way.

    It is not hashed here: the HTTP process is the one every request goes through, so the
    work done per byte stays with the decoding (`_process` hashes the spooled file, in a
    decoding process under `gridproof serve`)."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.path, self.file = storage.open_temp()
        self._settings = settings
        self._size = 0
        self._head = b""

    def write(self, data: bytes | memoryview) -> None:
        self._size += len(data)
        if self._size > self._settings.max_upload_bytes:
            raise PhotoTooLarge(
                f"the photo is larger than {self._settings.max_upload_mb:g} MB",
                max_bytes=self._settings.max_upload_bytes,
            )
        if len(self._head) < 64:
            self._head += bytes(data[: 64 - len(self._head)])
        self.file.write(data)

    def finish(self) -> SpooledPhoto:
        """The spooled photo; the file stays open, flushed and rewound."""
        self.file.flush()
        self.file.seek(0)
        return SpooledPhoto(self.path, self._size, self._head)

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def ingest_photo(
    upload: Upload, settings: Settings, storage: Storage, claim: Claim | None = None
) -> IngestedPhoto:
    """Store one uploaded photo and its derivatives; on any failure leave nothing behind.

    A file object is copied into storage first; a `SpooledPhoto` is there already. The photo's
    SHA-256 is claimed before its files are moved into place (see `Claim`). With the claim of a
    request that goes on to write rows, the claim stays with the request, which removes the
    files should it fail later (`Claim.release_and_remove`). Without one (tools, tests), this
    call claims on its own, and on a failure removes what it moved into place itself."""
    spooled = upload if isinstance(upload, SpooledPhoto) else _spool(upload, settings, storage)
    own = claim is None
    claim = Claim(storage) if claim is None else claim
    created: list[Path] = []
    try:
        photo = _decode(spooled, settings, storage)
        claim.add(photo.sha256)
        moves = [
            (temp, storage.derivative_path(photo.sha256, name))
            for name, temp in photo.derivative_temps.items()
        ]
        moves.append((spooled.path, storage.original_path(photo.sha256)))
        storage.commit_all(moves, created)
        photo.derivative_temps = {}
    except BaseException:
        # With the derivatives' temp files (a failed save, a decoder stopped mid-write).
        remove_quietly([spooled.path, *_leftover_temps(spooled, storage)])
        if own:
            claim.release()
            remove_quietly(created)
        raise
    if own:
        claim.release()
    return photo


def _decode(spooled: SpooledPhoto, settings: Settings, storage: Storage) -> IngestedPhoto:
    """The image work, in the process pool when there is one, else in this thread."""
    if not settings.image_processes:
        with _decode_slots(settings.image_workers):
            return _derive(spooled, settings, storage)
    # When a decoder dies (a crash, the OOM killer), the pool fails every photo it holds and
    # is replaced: each is tried once more on the new pool, and only a photo that stops a
    # decoder twice is refused.
    for attempt in (1, 2):
        pool = _pool(settings.image_processes)
        try:
            # submit() raises RuntimeError on a pool that is broken or that another thread has
            # just shut down (BrokenProcessPool is one); result() raises BrokenProcessPool.
            return pool.submit(_derive, spooled, settings, storage).result()
        except BrokenProcessPool:
            pass
        except RuntimeError as exc:
            if "shutdown" not in str(exc):
                raise
        _drop_pool(settings.image_processes, pool)
        remove_quietly(_leftover_temps(spooled, storage))  # what the stopped decoder wrote
        if attempt == 2:
            raise ImageUnreadable("the image decoder stopped on this file")
    raise AssertionError("unreachable")


def _derivative_prefix(spooled: SpooledPhoto) -> str:
    """The temp files of a photo's derivatives are named after the upload's own temp file."""
    return f"{spooled.path.name}-"


def _leftover_temps(spooled: SpooledPhoto, storage: Storage) -> list[Path]:
    """The derivatives' temp files of a photo that is being given up (or decoded again)."""
    return list(storage.tmp_dir.glob(_derivative_prefix(spooled) + "*"))


def _derive(spooled: SpooledPhoto, settings: Settings, storage: Storage) -> IngestedPhoto:
    """SHA-256, derivatives (as temp files, in `derivative_temps`), EXIF and pHash of a spooled
    photo; the temp files are removed again when it fails. (Runs in a pool process too:
    arguments and result pickle.)"""
    written: list[Path] = []
    try:
        return _process(spooled, settings, storage, written)
    except BaseException:
        remove_quietly(written)
        raise


# This server process's decoders, by size: started from a fork server that has this module
# imported (not forked from the server itself, whose threads may hold locks).
_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(processes: int) -> ProcessPoolExecutor:
    with _pools_lock:
        pool = _pools.get(processes)
        if pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_start_decoder)
            _pools[processes] = pool
        return pool


def _drop_pool(processes: int, pool: ProcessPoolExecutor) -> None:
    """Forget a broken pool and wait until its processes have exited: the futures fail before
    the surviving decoders are stopped, and none may still be writing a photo's temp files
    when its request removes them (a few milliseconds, during which no new pool starts)."""
    with _pools_lock:
        if _pools.get(processes) is pool:
            del _pools[processes]
        pool.shutdown(wait=True, cancel_futures=True)


def start_decoders(settings: Settings) -> None:
    """Start the pool's processes now (at the server's startup), not on the first photo."""
    if settings.image_processes:
        pool = _pool(settings.image_processes)
        list(pool.map(_ready, range(settings.image_processes)))


def stop_decoders() -> None:
    """Stop every pool's processes (at the server's shutdown)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(cancel_futures=True)


def _ready(_n: int) -> None:
    return None


def _start_decoder() -> None:
    # Ctrl-C reaches the whole process group: the server shuts the pool down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()


# glibc's mallopt() parameters (malloc.h) and the largest mmap threshold it accepts on 64 bits.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def keep_freed_memory() -> None:
    """Have glibc keep the memory one photo frees for the next one (in a decoding process).

    A 12 MP photo allocates and frees some 30 MB in pieces of up to 12 MB: the image decoded
    at reduced scale, its resized and rotated copies, the JPEG encoder's buffers. With glibc's
    defaults, pieces that large are mapped for each photo and unmapped after it (and the heap
    is trimmed), so the next photo faults them in again: about 6,600 page faults and 10–20 ms
    of CPU per photo, measured here. Served from the heap and kept there (up to 64 MB free at
    its top), the memory is reused; the peak is the same, the process just does not shrink
    between photos. Only for single-threaded decoding processes: in a threaded process each
    thread's arena would keep its own.
    Nothing is changed where the C library has no mallopt (not glibc).
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX)


def sha256_of(upload: Upload) -> str:
    """The upload's SHA-256, read from its spooled file or from the file object."""
    return (
        sha256_of_path(upload.path) if isinstance(upload, SpooledPhoto) else sha256_of_file(upload)
    )


@functools.cache
def _decode_slots(count: int) -> threading.BoundedSemaphore:
    """How many photos one process decodes at once in its own threads. Decoding is CPU work
    that holds the GIL in part: more at a time only adds contention (the pool scales instead)."""
    return threading.BoundedSemaphore(count)


def _spool(upload: BinaryIO, settings: Settings, storage: Storage) -> SpooledPhoto:
    """Copy a file object into storage's tmp folder in chunks (within the size cap)."""
    upload.seek(0)
    spool = PhotoSpool(settings, storage)
    try:
        with spool.file:
            while chunk := upload.read(CHUNK):
                spool.write(chunk)
            return spool.finish()
    except BaseException:
        spool.discard()
        raise


def _process(
    spooled: SpooledPhoto, settings: Settings, storage: Storage, written: list[Path]
) -> IngestedPhoto:
    fmt = sniff_format(spooled.head)
    if fmt is None:
        raise UnsupportedMediaType()
    sha256 = sha256_of_path(spooled.path)
    Image.MAX_IMAGE_PIXELS = max(settings.max_image_pixels, settings.max_full_decode_pixels)
    with _open(spooled.path, fmt) as img:
        _check_pixels(img, fmt, settings)
        exif = read_exif(img)
        orientation = 1 if fmt == "HEIF" else (exif.orientation or 1)
        width, height = img.size  # before draft() shrinks it
        large = _decode_reduced(img, fmt, settings.large_px)
    large = large.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else large
    thumb = large.copy()
    thumb.thumbnail((settings.thumb_px, settings.thumb_px), Image.Resampling.LANCZOS)
    temps = {}
    for name, image in (("large", large), ("thumb", thumb)):
        temp, out = storage.open_temp(prefix=_derivative_prefix(spooled))
        written.append(temp)
        with out:
            image.save(out, "JPEG", quality=85, optimize=True)
        temps[name] = temp
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    phash = str(imagehash.phash(thumb))
    return IngestedPhoto(sha256, fmt, spooled.size, width, height, exif, phash, temps)


def _open(path: Path, fmt: str) -> Image.Image:
    try:
        return Image.open(path, formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooManyPixels(str(exc)) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageUnreadable(f"{ImageUnreadable.title}: {exc}") from exc


def _check_pixels(img: Image.Image, fmt: str, settings: Settings) -> None:
    """Refuse on declared size before decoding; every frame of a multi-frame file counts."""
    # A JPEG's further "frames" are MPF extras (an Ultra HDR gain map, a preview) that are never
    # decoded; in other formats every frame could be.
    frames = 1 if fmt == "JPEG" else max(1, int(getattr(img, "n_frames", 1) or 1))
    pixels = img.width * img.height * frames
    limit = settings.max_image_pixels if fmt == "JPEG" else settings.max_full_decode_pixels
    if pixels > limit:
        raise ImageTooManyPixels(
            f"{img.width}×{img.height} px × {frames} frame(s) = {pixels:,} px; "
            f"the limit for {fmt} is {limit:,} px",
            pixels=pixels,
            max_pixels=limit,
        )


def _decode_reduced(img: Image.Image, fmt: str, longest: int) -> Image.Image:
    """Decode once: JPEG at the smallest DCT scale still ≥ the target, then resize."""
    if fmt == "JPEG":
        scale = longest / max(img.size)
        if scale < 1:
            img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
    try:
        img.load()
        rgb = _to_rgb(img)
        rgb.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooManyPixels(str(exc)) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageUnreadable(f"{ImageUnreadable.title}: {exc}") from exc
    return rgb


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode.startswith("I;16") or img.mode == "I":
        return img.point(lambda v: v / 256).convert("RGB")
    return img.convert("RGB")


# --- EXIF ------------------------------------------------------------------------------------

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


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    # Pillow reads EXIF ASCII as Latin-1; phones write UTF-8 there (美图秀秀, 醒图 …).
    with contextlib.suppress(UnicodeError):
        value = value.encode("latin-1").decode("utf-8")
    value = value.replace("\x00", "").strip()
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
