"""Photo flags as the sentences a person reads where they decide: Chinese by default, English
on request, each with its figure ("拍摄位置距问题 8521 km").

The one place that words a flag: the phone, the dashboard, the auditor's page, the evidence
JSON and the ledgers all take their text from `describe`.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.services.geo import distance_m

# code → (Chinese, English); `{figure}` is filled in where the photo gives one.
SENTENCES: dict[str, tuple[str, str]] = {
    "no_gps": ("照片没有拍摄位置（无 GPS）", "The photo has no GPS position"),
    "no_capture_time": ("照片没有拍摄时间", "The photo has no capture time"),
    "gps_far_from_device": (
        "照片的 GPS 位置与手机定位不符",
        "The photo's GPS position does not match the phone's fix",
    ),
    "far_from_issue": ("拍摄位置距问题 {figure}", "Taken {figure} from the issue"),
    "taken_before_report": (
        "整改后照片拍摄于上报之前（{figure}）",
        "The after-photo was taken before the report ({figure})",
    ),
    "taken_in_future": (
        "拍摄时间晚于上传时间（{figure}）",
        "The capture time is later than the upload ({figure})",
    ),
    "stale_capture": ("照片拍摄于上传前 {figure}", "Taken {figure} before it was uploaded"),
    "duplicate_photo": ("同一张照片此前已上传过", "The same photo was uploaded before"),
    "similar_to_other_issue": (
        "与其他问题的照片高度相似",
        "Very similar to a photo of another issue",
    ),
    "after_matches_before": ("整改后照片与整改前相同", "The after-photo matches a before-photo"),
    "edited": ("照片经编辑软件处理（{figure}）", "The photo was edited ({figure})"),
    "exif_unreadable": ("照片的 EXIF 信息无法读取", "The photo's EXIF cannot be read"),
    "outside_zone": (
        "照片的 GPS 位置在辖区之外（{figure}）",
        "The photo's GPS position lies outside the zone ({figure})",
    ),
}


@dataclass(frozen=True)
class PhotoFacts:
    """What a photo's sentences quote: where and when it was taken, and by what software."""

    lat: float | None = None
    lon: float | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    taken_at: str | None = None
    uploaded_at: datetime | None = None
    software: str | None = None
    issue_lat: float | None = None
    issue_lon: float | None = None


def facts_of(photo: Any, issue_lat: float | None, issue_lon: float | None) -> PhotoFacts:
    """What a stored photo's sentences quote (a Photo or a row with its columns)."""
    exif = photo.exif or {}
    return PhotoFacts(
        lat=photo.lat,
        lon=photo.lon,
        gps_lat=exif.get("gps_lat"),
        gps_lon=exif.get("gps_lon"),
        taken_at=photo.taken_at,
        uploaded_at=photo.uploaded_at,
        software=exif.get("software"),
        issue_lat=issue_lat,
        issue_lon=issue_lon,
    )


def describe(
    flags: Iterable[str], facts: PhotoFacts, *, english: bool = False
) -> list[dict[str, str]]:
    """Each flag as `{code, text}`, in the flags' order; an unknown code is worded as itself."""
    out = []
    for code in flags:
        zh, en = SENTENCES.get(code, (code, code))
        template = en if english else zh
        text = (
            template.format(figure=_figure(code, facts, english)) if "{" in template else template
        )
        out.append({"code": code, "text": text.replace("（）", "").replace(" ()", "")})
    return out


def of_photos(
    codes: Iterable[str], photos: Iterable[Any], issue_at: tuple[float, float], *, english: bool
) -> list[dict[str, str]]:
    """Each code as `{code, text}`, with the figure of the first photo that carries it."""
    photos = list(photos)
    out = []
    for code in codes:
        carrier = next((p for p in photos if code in p.flags), None)
        facts = facts_of(carrier, *issue_at) if carrier is not None else PhotoFacts()
        out.extend(describe([code], facts, english=english))
    return out


def sentence(code: str, facts: PhotoFacts, *, english: bool = False) -> str:
    return describe([code], facts, english=english)[0]["text"]


def length(metres: float) -> str:
    """A distance as people say it: "350 m", "8521 km"."""
    return f"{metres / 1000:.0f} km" if metres >= 10_000 else f"{metres:.0f} m"


def _figure(code: str, facts: PhotoFacts, english: bool) -> str:
    if code == "far_from_issue":
        points = (facts.lat, facts.lon, facts.issue_lat, facts.issue_lon)
        if all(v is not None for v in points):
            return length(distance_m(*points))  # type: ignore[arg-type]
        return "超出允许范围" if not english else "beyond the allowed distance"
    if code == "outside_zone":
        if facts.gps_lat is not None and facts.gps_lon is not None:
            return f"{facts.gps_lat:.4f}, {facts.gps_lon:.4f}"
        return ""
    if code in ("taken_before_report", "taken_in_future"):
        return facts.taken_at or ""
    if code == "stale_capture":
        return _age(facts, english)
    if code == "edited":
        return facts.software or ""
    return ""


def _age(facts: PhotoFacts, english: bool) -> str:
    if facts.taken_at is None or facts.uploaded_at is None:
        return ""
    taken = datetime.fromisoformat(facts.taken_at)
    uploaded = facts.uploaded_at
    if taken.tzinfo is None or uploaded.tzinfo is None:
        taken, uploaded = taken.replace(tzinfo=None), uploaded.replace(tzinfo=None)
    hours = (uploaded - taken).total_seconds() / 3600
    if hours >= 48:
        days = round(hours / 24)
        return f"{days} days" if english else f"{days} 天"
    return f"{hours:.0f} h" if english else f"{hours:.0f} 小时"
