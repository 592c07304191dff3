"""Is a HEIF/AVIF file whole? Its item locations (the `iloc` box) checked against its size.

A HEIF or AVIF file (ISO/IEC 23008-12, on the ISO base media file format of ISO/IEC 14496-12)
keeps its images, grid tiles, thumbnails and EXIF as items whose bytes the `meta` box's `iloc`
box locates. The libheif that pillow_heif bundles (1.23) reads those bytes only when an item is
decoded, and decodes a grid image whose tiles are missing without an error (the missing tiles
come out as flat colour): an iPhone photo cut in half decodes, at full size. Older libheif
(and heif-convert built on it) refused such a file on opening; so does `check_complete`.
"""

from pathlib import Path
from typing import BinaryIO


class IncompleteFile(ValueError):
    """The file is truncated or its boxes are malformed."""


# How large the `meta` box may be (an iPhone's is a few KB, a grid of 48 tiles included) and
# how many top-level boxes are looked through for it: bounds on what a hostile file costs.
_MAX_META = 16 * 1024 * 1024
_MAX_BOXES = 1000


def check_complete(path: Path) -> None:
    """Raise `IncompleteFile` unless every item's bytes lie within the file."""
    size = path.stat().st_size
    with path.open("rb") as file:
        meta = _read_meta(file, size)
    if meta is None:
        return  # no items: an image sequence's tracks (moov) are the decoder's to read
    boxes = _children(meta, 4)  # a full box: version and flags come first
    if b"iloc" not in boxes:
        raise IncompleteFile("the meta box has no iloc box")
    idat = boxes.get(b"idat")
    for item, method, end in _extents(boxes[b"iloc"]):
        if method == 1 and idat is None:
            raise IncompleteFile(f"item {item} is in an idat box that the file does not have")
        limit = size if method == 0 or idat is None else len(idat)
        if end > limit:
            where = "file" if method == 0 else "idat box"
            raise IncompleteFile(
                f"item {item} ends at byte {end:,}, past the end of the {where} ({limit:,} bytes)"
            )


def _read_meta(file: BinaryIO, size: int) -> bytes | None:
    """The `meta` box's payload, found among the file's top-level boxes."""
    offset = 0
    for _ in range(_MAX_BOXES):
        if offset >= size:
            break
        file.seek(offset)
        kind, header, length = _header(file.read(16), size - offset)
        if kind == b"meta":
            if length > _MAX_META:
                raise IncompleteFile(f"a meta box of {length:,} bytes")
            if offset + length > size:
                raise IncompleteFile("the meta box is cut short")
            file.seek(offset + header)
            return bytes(file.read(length - header))
        offset += length
    return None


def _header(data: bytes, remaining: int) -> tuple[bytes, int, int]:
    """A box's type, header length and total length (size 1: 64-bit size; 0: to the end)."""
    if len(data) < 8:
        raise IncompleteFile("a box header is cut short")
    length, kind, header = int.from_bytes(data[:4], "big"), data[4:8], 8
    if length == 1:
        if len(data) < 16:
            raise IncompleteFile("a box header is cut short")
        length, header = int.from_bytes(data[8:16], "big"), 16
    elif length == 0:
        length = remaining
    if length < header:
        raise IncompleteFile(f"a {kind!r} box of {length} bytes")
    return kind, header, length


def _children(payload: bytes, start: int) -> dict[bytes, bytes]:
    """The payloads of the boxes in `payload` from `start` on, by type (the first of each)."""
    boxes: dict[bytes, bytes] = {}
    offset = start
    while offset < len(payload):
        kind, header, length = _header(payload[offset : offset + 16], len(payload) - offset)
        if offset + length > len(payload):
            raise IncompleteFile(f"the {kind!r} box is cut short")
        boxes.setdefault(kind, payload[offset + header : offset + length])
        offset += length
    return boxes


def _extents(iloc: bytes) -> list[tuple[int, int, int]]:
    """(item, construction method, end) of every extent in the file or the idat box; items
    that are built from other items (construction method 2) or kept in another file are left
    to the decoder."""
    reader = _Reader(iloc)
    version = reader.take(1)
    reader.take(3)  # flags
    sizes = reader.take(1)
    offset_size, length_size = sizes >> 4, sizes & 0x0F
    sizes = reader.take(1)
    base_size, index_size = sizes >> 4, (sizes & 0x0F if version in (1, 2) else 0)
    if version > 2 or not {offset_size, length_size, base_size, index_size} <= {0, 4, 8}:
        raise IncompleteFile(f"an iloc box of version {version} or with odd field sizes")
    wide = 4 if version == 2 else 2
    extents = []
    for _ in range(reader.take(wide)):
        item = reader.take(wide)
        method = reader.take(2) & 0x0F if version in (1, 2) else 0
        reference = reader.take(2)
        base = reader.take(base_size)
        for _ in range(reader.take(2)):
            reader.take(index_size)
            start, length = reader.take(offset_size), reader.take(length_size)
            if method in (0, 1) and reference == 0:
                # A length of 0 means: up to the end of the file (or the idat box).
                extents.append((item, method, base + start + length))
    return extents


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, size: int) -> int:
        """The next `size` bytes as a big-endian number."""
        if self.at + size > len(self.data):
            raise IncompleteFile("the iloc box is cut short")
        value = int.from_bytes(self.data[self.at : self.at + size], "big")
        self.at += size
        return value
