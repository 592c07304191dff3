"""The before/after comparison image: first before-photo and latest after-photo, side by side."""

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont
from sqlmodel import Session, col, select

from app.config import Settings
from app.models import Issue, Photo
from app.models.photo import PhotoKind
from app.services.checks import capture_time
from app.services.geo import distance_m
from app.services.objects import (
    ObjectStore,
    comparison_key,
    derivative_key,
    open_store,
    put_file,
)
from app.services.storage import Storage

PANEL_HEIGHT = 900
CAPTION_HEIGHT = 96
BACKGROUND = (24, 24, 28)


def comparison_photos(session: Session, issue_id: int) -> tuple[Photo | None, Photo | None]:
    """The first before-photo and the latest after-photo of the issue."""
    photos = select(Photo).where(Photo.issue_id == issue_id)
    before = session.exec(
        photos.where(Photo.kind == PhotoKind.BEFORE).order_by(col(Photo.id)).limit(1)
    ).first()
    after = session.exec(
        photos.where(Photo.kind == PhotoKind.AFTER).order_by(col(Photo.id).desc()).limit(1)
    ).first()
    return before, after


@dataclass(frozen=True)
class Comparison:
    """What the image shows: its photos are immutable, so the key names the image for good."""

    key: str
    before: Photo | None
    after: Photo | None


def comparison_of(session: Session, issue: Issue) -> Comparison:
    assert issue.id is not None
    before, after = comparison_photos(session, issue.id)
    key = f"{issue.id}-{before.id if before else 0}-{after.id if after else 0}"
    return Comparison(key, before, after)


def comparison_jpeg(
    session: Session, settings: Settings, issue: Issue, chosen: Comparison | None = None
) -> str:
    """The comparison's key in the object store, the image made once and kept until a photo
    is added (the key says which)."""
    store = open_store(settings)
    chosen = chosen or comparison_of(session, issue)
    key = comparison_key(chosen.key)
    if store.exists(key):
        return key
    image = _render(store, settings, issue, chosen.before, chosen.after)
    temp, out = Storage(settings.upload_dir).open_temp()
    with out:  # open (so locked against the sweep) until it is in the store
        image.save(out, "JPEG", quality=85)
        out.flush()
        put_file(store, temp, key)
    return key


def _render(
    store: ObjectStore,
    settings: Settings,
    issue: Issue,
    before: Photo | None,
    after: Photo | None,
) -> Image.Image:
    panels = [
        _panel(store, before, _caption("BEFORE", before, settings)),
        _panel(store, after, _caption("AFTER", after, settings, issue)),
    ]
    width = sum(p.width for p in panels) + 12
    canvas = Image.new("RGB", (width, PANEL_HEIGHT + CAPTION_HEIGHT), BACKGROUND)
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + 12
    return canvas


def _panel(store: ObjectStore, photo: Photo | None, caption: list[str]) -> Image.Image:
    if photo is None:
        picture = Image.new("RGB", (PANEL_HEIGHT * 4 // 3, PANEL_HEIGHT), (60, 60, 66))
    else:
        source = store.open(derivative_key(photo.sha256, "large"))
        with source, Image.open(source) as large:
            scale = PANEL_HEIGHT / large.height
            picture = large.convert("RGB").resize(
                (max(1, round(large.width * scale)), PANEL_HEIGHT), Image.Resampling.LANCZOS
            )
    panel = Image.new("RGB", (picture.width, PANEL_HEIGHT + CAPTION_HEIGHT), BACKGROUND)
    panel.paste(picture, (0, 0))
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default(size=30)
    for line_no, line in enumerate(caption):
        draw.text((16, PANEL_HEIGHT + 10 + 40 * line_no), line, fill=(240, 240, 240), font=font)
    return panel


def _caption(
    label: str, photo: Photo | None, settings: Settings, issue: Issue | None = None
) -> list[str]:
    if photo is None:
        return [f"{label}: no photo yet"]
    taken = capture_time(photo.taken_at, settings)
    when = taken.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M %z") if taken else "unknown"
    lines = [f"{label} #{photo.id}  taken {when}"]
    if issue is not None:
        if photo.lat is not None and photo.lon is not None:
            metres = distance_m(photo.lat, photo.lon, issue.lat, issue.lon)
            lines.append(f"{metres:,.0f} m from the issue ({photo.location_source})")
        else:
            lines.append("location unknown")
    return lines
