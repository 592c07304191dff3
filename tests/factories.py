"""Plain factory functions for test data: org units, users, photos, issues."""

import io
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.demo.photos import make_jpeg
from app.models import User
from app.services import auth, orgs

SAMPLES = Path(__file__).resolve().parent / "samples"
CHINA = timezone(timedelta(hours=8))
# Inside the demo zone (经开区, Zhengzhou).
LAT, LON = 34.7512345, 113.7801234

# The 15 categories of the contract (shared/CONTRACT.md, Vocabulary).
CONTRACT_CATEGORIES = {
    "flyposter": "非法小广告",
    "banner": "违规横幅",
    "wall_ad": "墙体广告",
    "road_occupation": "占道经营",
    "outside_store": "店外经营",
    "bare_soil": "黄土裸露",
    "garbage": "暴露垃圾",
    "illegal_building": "违法建设",
    "construction_site": "施工工地扬尘",
    "road_damage": "道路破损",
    "street_light": "路灯设施损坏",
    "shared_bike": "共享单车乱停放",
    "scattered_coal": "散煤",
    "fire_hazard": "消防隐患",
    "other": "其他",
}


@dataclass
class Zone:
    """District D with offices A and B; A has community A1 with grid A1G."""

    tokens: dict[str, str] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)

    def headers(self, username: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[username]}", **extra}


ZONE_ORGS = [
    ("D", "经开区", "district", None),
    ("A", "祥云办事处", "office", "D"),
    ("B", "九龙办事处", "office", "D"),
    ("A1", "远大社区", "community", "A"),
    ("A1G", "远大社区第一网格", "grid", "A1"),
    ("B1", "毛庄社区", "community", "B"),
]
ZONE_USERS = [
    # username, role, org
    ("grid_worker", "worker", "A1G"),  # reports in office A's grid
    ("a_worker", "worker", "A"),  # rectifies for office A
    ("a_worker2", "worker", "A"),
    ("b_worker", "worker", "B"),
    ("a_super", "supervisor", "A"),
    ("b_super", "supervisor", "B"),
    ("d_super", "supervisor", "D"),
    ("d_super2", "supervisor", "D"),
    ("auditor", "auditor", "D"),
    ("viewer", "viewer", "D"),
    ("admin", "admin", "D"),
]
PASSWORD = "correct horse battery"


def make_zone(session: Session) -> Zone:
    for code, name, kind, parent in ZONE_ORGS:
        orgs.add_org(session, code, name, kind, parent)
    zone = Zone()
    for username, role, org in ZONE_USERS:
        user, token = auth.create_user(session, username, role, org, PASSWORD)
        zone.users[username] = user
        zone.tokens[username] = token
    return zone


def jpeg(
    *,
    seed: int = 1,
    lat: float | None = LAT,
    lon: float | None = LON,
    taken_at: datetime | None = None,
    width: int = 640,
    height: int = 480,
    **exif: Any,
) -> bytes:
    """A phone-like JPEG with EXIF GPS and capture time (taken now in China by default)."""
    return make_jpeg(
        width,
        height,
        seed=seed,
        lat=lat,
        lon=lon,
        taken_at=taken_at or datetime.now(CHINA).replace(microsecond=0),
        **exif,
    )


def after_jpeg(*, seed: int = 1, **kwargs: Any) -> bytes:
    """An after-photo to send with a report: taken a second from now, since EXIF times are whole
    seconds and the report's before-photo is made after it (never "taken before the report")."""
    later = datetime.now(CHINA).replace(microsecond=0) + timedelta(seconds=1)
    return jpeg(seed=seed, taken_at=later, **kwargs)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def files(field_name: str, *blobs: bytes, filename: str = "photo.jpg") -> list[tuple[str, Any]]:
    return [
        (field_name, (f"{i}-{filename}", io.BytesIO(blob), "image/jpeg"))
        for i, blob in enumerate(blobs)
    ]


def report(
    client: TestClient,
    zone: Zone,
    username: str = "grid_worker",
    *,
    photos: list[bytes] | None = None,
    after: list[bytes] | None = None,
    headers: dict[str, str] | None = None,
    **form: Any,
) -> Any:
    """POST /api/v1/issues; returns the response."""
    data = {"category": "flyposter", "description": "小广告", **form}
    upload = files("photos", *(photos if photos is not None else [jpeg()]))
    if after:
        upload += files("after_photos", *after)
    return client.post(
        "/api/v1/issues", data=data, files=upload, headers=zone.headers(username, **(headers or {}))
    )


def act(
    client: TestClient, zone: Zone, username: str, issue: dict[str, Any], action: str, **body: Any
) -> Any:
    """POST a transition with the issue's current version as If-Match."""
    return client.post(
        f"/api/v1/issues/{issue['id']}/transitions",
        json={"action": action, **body},
        headers=zone.headers(username, **{"If-Match": f'"{issue["version"]}"'}),
    )


# The same picture on many issues is (rightly) flagged duplicate_photo / similar_to_other_issue,
# and passing a check of such an after-photo needs a note: after-photos get a fresh scene.
_SCENES = itertools.count(1000)


def fresh_jpeg() -> bytes:
    """A JPEG of a street scene no other call of this returns."""
    return jpeg(seed=next(_SCENES))


def add_photos(
    client: TestClient,
    zone: Zone,
    username: str,
    issue_id: int,
    kind: str,
    *blobs: bytes,
    **form: Any,
) -> Any:
    return client.post(
        f"/api/v1/issues/{issue_id}/photos",
        data={"kind": kind, **form},
        files=files("files", *(blobs or (fresh_jpeg(),))),
        headers=zone.headers(username),
    )


def dispatched_issue(client: TestClient, zone: Zone, office: str = "A") -> dict[str, Any]:
    """An issue reported in grid A1G and dispatched to `office` by the district supervisor."""
    issue = report(client, zone).json()
    response = act(client, zone, "d_super", issue, "dispatch", org_unit=office)
    assert response.status_code == 200, response.text
    return response.json()


def rectified_issue(client: TestClient, zone: Zone, rectifier: str = "a_worker") -> dict[str, Any]:
    issue = dispatched_issue(client, zone)
    assert add_photos(client, zone, rectifier, issue["id"], "after").status_code == 201
    issue = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers(rectifier)).json()
    response = act(client, zone, rectifier, issue, "submit_rectification")
    assert response.status_code == 200, response.text
    return response.json()


PROBLEM_JSON = "application/problem+json"


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and stable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys(), body
    assert body["status"] == status
    assert body["code"] == code, body
    return body
