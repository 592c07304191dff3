"""Is a HEIF/AVIF file whole: the `iloc` check on files built box by box, and on hostile bytes."""

import random
from pathlib import Path

import pytest

from app.services.isobmff import IncompleteFile, check_complete
from tests.factories import SAMPLES

FTYP = (24).to_bytes(4, "big") + b"ftypheic" + b"\0\0\0\0" + b"mif1heic"


def box(kind: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def full_box(kind: bytes, version: int, payload: bytes) -> bytes:
    return box(kind, bytes([version, 0, 0, 0]) + payload)


def iloc(version: int, items: list[tuple[int, int, list[tuple[int, int]]]], **sizes: int) -> bytes:
    """An iloc box: (item id, construction method, [(offset, length) …]) with 4-byte offsets and
    lengths, no base offset; item ids of 4 bytes in version 2."""
    offset_size, length_size = sizes.get("offset_size", 4), sizes.get("length_size", 4)
    index_size = sizes.get("index_size", 0)
    wide = 4 if version == 2 else 2
    body = bytes([offset_size << 4 | length_size, index_size if version else 0])
    body += len(items).to_bytes(wide, "big")
    for item, method, extents in items:
        body += item.to_bytes(wide, "big")
        if version:
            body += method.to_bytes(2, "big")
        body += (0).to_bytes(2, "big") + len(extents).to_bytes(2, "big")  # data ref, no base
        for start, length in extents:
            body += bytes(index_size) + start.to_bytes(offset_size, "big")
            body += length.to_bytes(length_size, "big")
    return full_box(b"iloc", version, body)


def heif(tmp_path: Path, *meta_children: bytes, mdat: bytes = b"", tail: bytes = b"") -> Path:
    path = tmp_path / "photo.heic"
    path.write_bytes(FTYP + full_box(b"meta", 0, b"".join(meta_children)) + mdat + tail)
    return path


def mdat_at(meta_children: list[bytes]) -> int:
    """Where the mdat box's payload starts, after ftyp and a meta box of these children."""
    return len(FTYP) + 12 + sum(map(len, meta_children)) + 8


@pytest.mark.parametrize("version", [0, 1, 2])
def test_items_within_the_file_pass_and_one_byte_past_its_end_is_refused(
    version: int, tmp_path: Path
) -> None:
    def items(start: int, length: int) -> bytes:
        return iloc(version, [(1, 0, [(start, 50)]), (2, 0, [(start + 50, length - 50)])])

    for length, whole in ((100, True), (101, False)):
        start = mdat_at([items(0, length)])  # the box's size does not depend on the values
        path = heif(tmp_path, items(start, length), mdat=box(b"mdat", b"x" * 100))
        if whole:
            check_complete(path)
        else:
            with pytest.raises(IncompleteFile, match="item 2 ends at byte"):
                check_complete(path)


def test_items_in_the_idat_box_are_checked_against_it(tmp_path: Path) -> None:
    idat = box(b"idat", b"grid" * 4)
    check_complete(heif(tmp_path, iloc(1, [(1, 1, [(0, 16)])]), idat))
    with pytest.raises(IncompleteFile, match="past the end of the idat box"):
        check_complete(heif(tmp_path, iloc(1, [(1, 1, [(8, 9)])]), idat))
    with pytest.raises(IncompleteFile, match="idat box that the file does not have"):
        check_complete(heif(tmp_path, iloc(1, [(1, 1, [(0, 1)])])))


def test_a_length_of_zero_reaches_to_the_end(tmp_path: Path) -> None:
    children = [iloc(0, [(1, 0, [(0, 0)])])]
    start = mdat_at(children)
    ok = heif(tmp_path, iloc(0, [(1, 0, [(start, 0)])]), mdat=box(b"mdat", b"x" * 10))
    check_complete(ok)
    past = heif(tmp_path, iloc(0, [(1, 0, [(start + 11, 0)])]), mdat=box(b"mdat", b"x" * 10))
    with pytest.raises(IncompleteFile):
        check_complete(past)


def test_index_fields_and_eight_byte_sizes_are_read(tmp_path: Path) -> None:
    sizes = {"offset_size": 8, "length_size": 8, "index_size": 4}
    children = [iloc(2, [(70000, 0, [(0, 0), (0, 0)])], **sizes)]
    start = mdat_at(children)
    items = [(70000, 0, [(start, 4), (start + 4, 6)])]
    check_complete(heif(tmp_path, iloc(2, items, **sizes), mdat=box(b"mdat", b"x" * 10)))
    items = [(70000, 0, [(start, 4), (start + 4, 7)])]
    with pytest.raises(IncompleteFile, match="item 70000"):
        check_complete(heif(tmp_path, iloc(2, items, **sizes), mdat=box(b"mdat", b"x" * 10)))


def test_items_made_of_other_items_or_kept_elsewhere_are_left_to_the_decoder(
    tmp_path: Path,
) -> None:
    check_complete(heif(tmp_path, iloc(1, [(1, 2, [(10**6, 10)])])))


def test_boxes_of_64_bit_size_and_a_last_box_to_the_end_of_the_file(tmp_path: Path) -> None:
    children = iloc(0, [(1, 0, [(0, 0)])])
    meta_payload = bytes(4) + children
    meta = (1).to_bytes(4, "big") + b"meta" + (16 + len(meta_payload)).to_bytes(8, "big")
    start = len(FTYP) + len(meta) + len(meta_payload) + 8
    meta_payload = bytes(4) + iloc(0, [(1, 0, [(start, 10)])])
    path = tmp_path / "wide.heic"
    path.write_bytes(FTYP + meta + meta_payload + (0).to_bytes(4, "big") + b"mdat" + b"x" * 10)
    check_complete(path)


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (FTYP + full_box(b"meta", 0, box(b"hdlr", b"\0" * 20)), "no iloc box"),
        (FTYP + full_box(b"meta", 0, full_box(b"iloc", 0, b"\x44\x00\x00")), "cut short"),
        (FTYP + full_box(b"meta", 0, full_box(b"iloc", 3, b"\x44\x00\x00\x00")), "version 3"),
        (FTYP + full_box(b"meta", 0, full_box(b"iloc", 1, b"\x34\x00\x00\x00")), "odd field"),
        (FTYP + full_box(b"meta", 0, b"")[:-1], "cut short"),  # the meta box itself
        (FTYP + (5).to_bytes(4, "big") + b"meta", "of 5 bytes"),
        (FTYP + full_box(b"meta", 0, (4).to_bytes(4, "big") + b"iloc"), "of 4 bytes"),
        (FTYP + full_box(b"meta", 0, (99).to_bytes(4, "big") + b"iloc"), "cut short"),
        (FTYP + b"\0\0\0", "header is cut short"),
    ],
)
def test_malformed_boxes_are_refused(contents: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.heic"
    path.write_bytes(contents)
    with pytest.raises(IncompleteFile, match=message):
        check_complete(path)


def test_a_file_without_items_is_left_to_the_decoder(tmp_path: Path) -> None:
    """No meta box (an image sequence keeps its frames in tracks): there is nothing to check;
    a file whose boxes say otherwise is refused by the decoder (hostile__heic_corrupted.heic)."""
    path = tmp_path / "sequence.heic"
    path.write_bytes(FTYP + box(b"moov", b"\0" * 40))
    check_complete(path)
    check_complete(SAMPLES / "hostile__heic_corrupted.heic")


def test_hostile_bytes_give_incomplete_file_or_nothing(tmp_path: Path) -> None:
    """Bytes of a real iPhone HEIC's boxes changed at random: the check answers (whole or
    incomplete), it never raises anything else, and it reads no more than the file."""
    original = (SAMPLES / "heic__apple_iphone8_gps.heic").read_bytes()
    rng = random.Random(12)
    path = tmp_path / "fuzzed.heic"
    outcomes = {"whole": 0, "incomplete": 0}
    for _ in range(600):
        data = bytearray(original[:8192])  # the meta box and more
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        with path.open("wb") as file:
            file.write(data)
            file.truncate(len(original))  # the rest as a hole: only the size is looked at
        try:
            check_complete(path)
            outcomes["whole"] += 1
        except IncompleteFile:
            outcomes["incomplete"] += 1
    assert outcomes["whole"] > 0 and outcomes["incomplete"] > 0, outcomes
