"""What converting a photo's derivatives to sRGB costs, per 12 MP photo.

    .venv/bin/python bench/srgb.py [--rounds N]

`app.services.photos.ingest_photo` in this process, on a 4000×3000 JPEG that embeds the
Display P3 profile of an iPhone HEIC sample and on a 12 MP iPhone HEIC (Display P3), each with
the conversion and with it switched off (turn about, the median CPU time of each); and the
conversion alone on the 1600 px derivative. Prints figures, never fails on them.
"""

from __future__ import annotations

import argparse
import functools
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from app.config import Settings  # noqa: E402
from app.demo.photos import exif_bytes, street_scene  # noqa: E402
from app.services import photos  # noqa: E402
from app.services.storage import Storage  # noqa: E402

HEIC = ROOT / "tests" / "samples" / "heic__apple_iphone8_gps.heic"


def cpu_ms(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return (time.process_time() - start) * 1000


def keep(rgb: Image.Image, icc: object) -> Image.Image:
    """The conversion switched off."""
    return rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    icc = Image.open(HEIC).info["icc_profile"]
    out = io.BytesIO()
    street_scene(4000, 3000, seed=3).save(
        out, "JPEG", quality=90, exif=exif_bytes(lat=34.75, lon=113.78), icc_profile=icc
    )
    inputs = {"JPEG 4000×3000, P3": out.getvalue(), "HEIC 4032×3024, P3": HEIC.read_bytes()}
    convert = photos._to_srgb
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        settings, storage = Settings(upload_dir=root), Storage(root)

        def ingest(data: bytes, n: int) -> None:
            photos.ingest_photo(io.BytesIO(data + n.to_bytes(4, "big")), settings, storage)

        for name, data in inputs.items():
            ingest(data, 0)  # imports, caches, the transform built once
            times: dict[bool, list[float]] = {True: [], False: []}
            for n in range(1, 2 * rounds + 1):
                on = n % 2 == 1
                photos._to_srgb = convert if on else keep  # type: ignore[assignment]
                times[on].append(cpu_ms(functools.partial(ingest, data, n)))
            photos._to_srgb = convert  # type: ignore[assignment]
            with_, without = statistics.median(times[True]), statistics.median(times[False])
            print(
                f"{name}: ingest {with_:.0f} ms CPU with the conversion, {without:.0f} ms "
                f"without: {with_ - without:+.1f} ms ({(with_ / without - 1) * 100:+.1f} %)"
            )
    large = street_scene(1600, 1200, seed=3)
    alone = [cpu_ms(functools.partial(convert, large.copy(), icc)) for _ in range(rounds)]
    print(f"the conversion alone on a 1600×1200 derivative: {statistics.median(alone):.1f} ms")


if __name__ == "__main__":
    main()
