"""The photo ingest pipeline: every upload goes through `ingest_photo`.

The upload is copied into storage as it arrives (size-capped on the way: `storage.PhotoSpool`);
then, in a decoding process (`decoders`) under `gridproof serve` (else in the request's thread),
the file is hashed,
its format taken from its bytes, opened with only the accepted Pillow decoders, its EXIF read,
decoded once at reduced scale, and two upright derivatives are written without EXIF. Nothing
here touches the database.
"""

import contextlib
import functools
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import pillow_heif
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from app.config import Settings
from app.errors import (
    ImageTooManyPixels,
    ImageUnreadable,
    StorageUnavailable,
    UnsupportedMediaType,
)
from app.services import decoders
from app.services.claims import Claim
from app.services.exif import ExifFacts, read_exif
from app.services.isobmff import IncompleteFile, check_complete
from app.services.objects import (
    ObjectStore,
    derivative_key,
    open_store,
    original_key,
)
from app.services.storage import (
    SpooledPhoto,
    Storage,
    Upload,
    remove_quietly,
    sha256_of_path,
    spooled_copy,
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


@dataclass(frozen=True)
class Recipe:
    """How the two derivatives are encoded (JPEG quality 85, no EXIF). `gridproof verify`
    re-derives a stored derivative with each recipe the pipeline has ever used, newest first
    (`RECIPES`): a derivative stored before a change is still what its original derives to."""

    name: str
    optimize: dict[str, bool]  # optimized Huffman tables, by derivative


RECIPES = (
    # Since 2026-12-07 (issue 19): the large view's Huffman tables are the standard ones, as
    # libjpeg writes by default: ~7 ms of CPU less per 12 MP photo (12 against 5 ms for the
    # bench/ingest.py photo's 1600 px view) for a file 14 % larger (225 against 197 KB). The
    # thumbnail, which lists load by the dozen, stays optimized (a fraction of a ms).
    Recipe("2", {"large": False, "thumb": True}),
    Recipe("1", {"large": True, "thumb": True}),
)


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


def ingest_photo(
    upload: Upload, settings: Settings, storage: Storage, claim: Claim | None = None
) -> IngestedPhoto:
    """Store one uploaded photo and its derivatives; on any failure leave nothing behind.

    A file object is copied into the local temp folder first; a `SpooledPhoto` is there
    already. With the claim of a request that goes on to write rows, the photo's SHA-256 is
    claimed before its objects are put into the claim's store (see `claims.Claim`), and the
    claim stays with the request, which removes the objects should it fail later
    (`Claim.release_and_remove`). Without one (tools, tests that share the store with no live
    request), nothing is claimed, and a failure removes what this call put itself."""
    if isinstance(upload, SpooledPhoto):
        return _ingest_spooled(upload, settings, storage, claim)
    with spooled_copy(upload, settings, storage) as spooled:  # held open (locked) till done
        return _ingest_spooled(spooled, settings, storage, claim)


def _ingest_spooled(
    spooled: SpooledPhoto, settings: Settings, storage: Storage, claim: Claim | None
) -> IngestedPhoto:
    store = claim.store if claim is not None else open_store(settings)
    created: list[str] = []
    try:
        photo = decoders.decode(
            settings,
            _derive,
            spooled,
            settings,
            storage,
            after_crash=lambda: remove_quietly(_leftover_temps(spooled, storage)),
        )
        if claim is not None:
            claim.add(photo.sha256)
        moves = [
            (temp, derivative_key(photo.sha256, name))
            for name, temp in photo.derivative_temps.items()
        ]
        moves.append((spooled.path, original_key(photo.sha256)))
        store.put_files(moves, created)
        photo.derivative_temps = {}
    except BaseException:
        # With the derivatives' temp files (a failed save, a decoder stopped mid-write).
        remove_quietly([spooled.path, *_leftover_temps(spooled, storage)])
        if claim is None:
            _delete_quietly(store, created)
        raise
    return photo


def _delete_quietly(store: ObjectStore, keys: list[str]) -> None:
    """What a failed call put itself, removed if the store lets it (else the sweep does)."""
    with contextlib.suppress(StorageUnavailable):
        store.delete(keys)


def _derivative_prefix(spooled: SpooledPhoto) -> str:
    """The temp files of a photo's derivatives are named after the upload's own temp file."""
    return f"{spooled.path.name}-"


def _leftover_temps(spooled: SpooledPhoto, storage: Storage) -> list[Path]:
    """The derivatives' temp files of a photo that is being given up (or decoded again)."""
    return list(storage.tmp_dir.glob(_derivative_prefix(spooled) + "*"))


def _derive(
    spooled: SpooledPhoto, settings: Settings, storage: Storage, recipe: Recipe = RECIPES[0]
) -> IngestedPhoto:
    """SHA-256, derivatives (as temp files, in `derivative_temps`), EXIF and pHash of a spooled
    photo; the temp files are removed again when it fails. (Runs in a pool process too:
    arguments and result pickle.)"""
    written: list[Path] = []
    try:
        return _process(spooled, settings, storage, recipe, written)
    except BaseException:
        remove_quietly(written)
        raise


def derive_again(
    sha256: str, settings: Settings, storage: Storage, store: ObjectStore, recipe: Recipe
) -> dict[str, bytes]:
    """The derivatives this pipeline makes of a stored original with `recipe`, made again
    (`gridproof verify` compares them with the stored ones); nothing is left behind."""
    with (
        store.open(original_key(sha256)) as source,
        spooled_copy(source, settings, storage) as spooled,
    ):
        photo = _derive(spooled, settings, storage, recipe)
        temps = list(photo.derivative_temps.values())
        try:
            return {name: temp.read_bytes() for name, temp in photo.derivative_temps.items()}
        finally:
            remove_quietly([*temps, spooled.path])


def _process(
    spooled: SpooledPhoto,
    settings: Settings,
    storage: Storage,
    recipe: Recipe,
    written: list[Path],
) -> IngestedPhoto:
    fmt = sniff_format(spooled.head)
    if fmt is None:
        raise UnsupportedMediaType()
    sha256 = sha256_of_path(spooled.path)
    Image.MAX_IMAGE_PIXELS = max(settings.max_image_pixels, settings.max_full_decode_pixels)
    with _open(spooled.path, fmt) as img:
        _check_pixels(img, fmt, settings)
        _check_complete(spooled.path, fmt)
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
            image.save(out, "JPEG", quality=85, optimize=recipe.optimize[name])
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
        raise ImageUnreadable(f"{ImageUnreadable.title_en}: {exc}") from exc


def _check_complete(path: Path, fmt: str) -> None:
    """A HEIF/AVIF file any of whose items is cut off is refused whole (see `isobmff`): the
    decoders would fill a grid's missing tiles with flat colour, or fail on a frame later."""
    if fmt not in ("HEIF", "AVIF"):
        return
    try:
        check_complete(path)
    except IncompleteFile as exc:
        raise ImageUnreadable(f"{ImageUnreadable.title_en}: {exc}") from exc


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
    declared = img.size
    try:
        img.load()
        if fmt != "JPEG" and img.size != declared:  # a thumbnail or part of the image
            raise ValueError(f"decoded {img.size} of the {declared} declared")
        rgb = _to_rgb(img)
        rgb.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooManyPixels(str(exc)) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageUnreadable(f"{ImageUnreadable.title_en}: {exc}") from exc
    return _to_srgb(rgb, img.info.get("icc_profile"))


_SRGB = ImageCms.createProfile("sRGB")


def _to_srgb(rgb: Image.Image, icc: object) -> Image.Image:
    """The derivative's pixels in sRGB, which is what a viewer assumes of a JPEG without a
    profile: converted from the photo's embedded RGB profile (an iPhone's Display P3) when it
    has one other than sRGB. Done once, on the reduced image (bench/srgb.py: some 25 ms of CPU
    for a 1600×1200 one here), which the thumbnail is made from."""
    transform = _transform_to_srgb(icc) if isinstance(icc, bytes) and icc else None
    if transform is not None:
        transform.apply_in_place(rgb)  # a 1600 px image of our own: no copy needed
    rgb.info.pop("icc_profile", None)
    return rgb


@functools.lru_cache(maxsize=16)
def _transform_to_srgb(icc: bytes) -> ImageCms.ImageCmsTransform | None:
    """A profile that cannot be read, is not RGB or is sRGB already: no transform (the photo is
    shown as before). Cached per profile: phones embed the same few. NOCACHE: the transform
    is shared by the threads that decode in one process, and lcms's pixel cache is not."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space != "RGB " or "sRGB" in (
            profile.profile.profile_description or ""
        ):
            return None
        return ImageCms.ImageCmsTransform(
            profile,
            ImageCms.ImageCmsProfile(_SRGB),
            "RGB",
            "RGB",
            ImageCms.Intent.PERCEPTUAL,
            flags=ImageCms.Flags.NOCACHE,
        )
    except (OSError, ImageCms.PyCMSError):
        return None


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
