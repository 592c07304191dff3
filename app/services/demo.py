"""`gridproof demo`: the 经开区 campaign zone with users of every role and ~40 issues."""

import io
import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from app.config import Settings
from app.models import Category, Issue, User
from app.models.base import utcnow
from app.models.issue import IssueReport, PhotoForm, TransitionRequest
from app.models.photo import PhotoKind
from app.services import auth, demo_grid, issues, orgs, reporting
from app.services.sample_photos import make_jpeg
from app.services.storage import Storage, Upload

CENTRE = (34.75, 113.78)
ZONE = ZoneInfo("Asia/Shanghai")  # where the demo cameras are
PASSWORD = "gridproof"

ORG_UNITS = [
    # code, name, kind, parent
    ("JKQ", "经开区", "district", None),
    ("XY", "祥云办事处", "office", "JKQ"),
    ("JL", "九龙办事处", "office", "JKQ"),
    ("JH", "京航办事处", "office", "JKQ"),
    ("CH", "潮河办事处", "office", "JKQ"),
    ("MH", "明湖办事处", "office", "JKQ"),
    ("XY-YD", "远大社区", "community", "XY"),
    ("JL-MZ", "毛庄社区", "community", "JL"),
    ("JH-ZY", "中烟社区", "community", "JH"),
    ("CH-HD", "河东社区", "community", "CH"),
    ("XY-YD-01", "远大社区第一网格", "grid", "XY-YD"),
    ("XY-YD-02", "远大社区第二网格", "grid", "XY-YD"),
    ("JL-MZ-01", "毛庄社区第一网格", "grid", "JL-MZ"),
    ("JH-ZY-01", "中烟社区第一网格", "grid", "JH-ZY"),
]

USERS = [
    # username, role, org, who
    ("admin", "admin", "JKQ", "系统管理员"),
    ("zhihui", "supervisor", "JKQ", "指挥部 督查员"),
    ("xiangyun", "supervisor", "XY", "祥云办事处 主管"),
    ("jiulong", "supervisor", "JL", "九龙办事处 主管"),
    ("xy_zhenggai", "worker", "XY", "祥云办事处 整改员"),
    ("jl_zhenggai", "worker", "JL", "九龙办事处 整改员"),
    ("jh_zhenggai", "worker", "JH", "京航办事处 整改员"),
    ("wang", "worker", "XY-YD-01", "网格员 王"),
    ("li", "worker", "JL-MZ-01", "网格员 李"),
    ("zhao", "worker", "JH-ZY-01", "网格员 赵"),
    ("shenji", "auditor", "JKQ", "审计"),
    ("dapingmu", "viewer", "JKQ", "大屏"),
]

# The state each demo issue is driven to, in turn.
# The same reporter comes round every REPORTER_CYCLE issues; a duplicate points at its own
# reporter's previous issue, which the same supervisor can see.
REPORTER_CYCLE = 3
PLAN = [
    "reported",
    "accepted",
    "dispatched",
    "overdue",
    "rectified",
    "closed",
    "closed_rework",
    "rejected",
    "duplicate",
    "on_the_spot",
]

DESCRIPTIONS = {
    "flyposter": "电线杆上张贴小广告约十余张",
    "banner": "路口悬挂未经审批的横幅",
    "wall_ad": "围墙喷涂办证电话广告",
    "road_occupation": "早市摊贩占用人行道经营",
    "outside_store": "餐馆在店外摆放桌椅经营",
    "bare_soil": "空地黄土裸露未覆盖防尘网",
    "garbage": "路边堆放生活垃圾未清运",
    "illegal_building": "楼顶私自搭建彩钢板房",
    "construction_site": "工地出入口车辆带泥上路，扬尘明显",
    "road_damage": "人行道地砖破损塌陷",
    "street_light": "路灯夜间不亮",
    "shared_bike": "地铁口共享单车堆放阻塞通道",
    "scattered_coal": "居民院内堆放散煤",
    "fire_hazard": "楼道内电动车充电，飞线充电",
    "other": "井盖缺失，存在安全隐患",
}


def load_demo(session: Session, settings: Settings) -> None:
    """Load the zone; a second run changes nothing and prints the sign-ins again."""
    for code, name, kind, parent in ORG_UNITS:
        orgs.add_org(session, code, name, kind, parent)
    users = {}
    for username, role, org, who in USERS:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            user, _token = auth.create_user(session, username, role, org, PASSWORD)
            user.display_name = who
            session.add(user)
            session.commit()
        users[username] = user
    if (
        session.exec(
            select(Issue).where(col(Issue.reported_by_id).in_([u.id for u in users.values()]))
        ).first()
        is None
    ):
        _load_issues(session, settings, users)
    demo_grid.load_demo_grid(session)
    _print_sign_ins()


def _print_sign_ins() -> None:
    print(f"Demo zone 经开区 loaded. Every demo user's password is {PASSWORD!r}:")
    for username, role, org, who in USERS:
        print(f"  {username:<12} {role:<10} {org:<9} {who}")


def _load_issues(session: Session, settings: Settings, users: dict[str, User]) -> None:
    storage = Storage(settings.upload_dir)
    storage.ensure_dirs()
    rng = random.Random(2026)
    categories = list(session.exec(select(Category).order_by(col(Category.code))))
    reporters = [
        ("wang", "XY", "xiangyun", "xy_zhenggai"),
        ("li", "JL", "jiulong", "jl_zhenggai"),
        ("zhao", "JH", "zhihui", "jh_zhenggai"),
    ]
    start = utcnow() - timedelta(days=12)
    for n in range(40):
        category = categories[n % len(categories)]
        reporter, office, supervisor, rectifier = reporters[n % len(reporters)]
        plan = PLAN[n % len(PLAN)]
        at = start + timedelta(hours=7 * n + rng.randint(0, 5))
        lat = CENTRE[0] + rng.uniform(-0.02, 0.02)
        lon = CENTRE[1] + rng.uniform(-0.025, 0.025)
        _demo_issue(
            session,
            settings,
            storage,
            users,
            category,
            plan,
            at,
            lat,
            lon,
            n,
            reporter,
            office,
            supervisor,
            rectifier,
        )
    print("Loaded 40 demo issues.")


def _photo(lat: float, lon: float, at: datetime, seed: int, fixed: bool) -> io.BytesIO:
    jpeg = make_jpeg(
        1600,
        1200,
        seed=seed,
        fixed=fixed,
        lat=lat,
        lon=lon,
        taken_at=at.astimezone(ZONE),
        orientation=1,
        altitude=96.0,
    )
    return io.BytesIO(jpeg)


def _demo_issue(
    session: Session,
    settings: Settings,
    storage: Storage,
    users: dict[str, User],
    category: Category,
    plan: str,
    at: datetime,
    lat: float,
    lon: float,
    n: int,
    reporter: str,
    office: str,
    supervisor: str,
    rectifier: str,
) -> None:
    fields: dict[str, list[Upload]] = {"photos": [_photo(lat, lon, at, n, False)]}
    if plan == "on_the_spot":
        fields["after_photos"] = [_photo(lat, lon, at + timedelta(minutes=20), n, True)]
    form = IssueReport(
        category=category.code,
        description=DESCRIPTIONS[category.code],
        quantity=float(1 + n % 5),
        address=f"经开区第{n % 9 + 1}大街",
    )
    caller = reporting.Caller(session, settings, storage, users[reporter])
    issue, _ = reporting.report_issue(caller, form, reporting.Uploads(fields), now=at)
    assert issue.id is not None
    issue_id = issue.id
    clock = [at]

    def act(action: str, who: str, **kwargs: object) -> None:
        clock[0] += timedelta(hours=3)
        request = TransitionRequest.model_validate({"action": action, **kwargs})
        issues.apply_transition(
            session,
            settings,
            users[who],
            issue_id,
            request,
            version=issue.version,
            now=clock[0],
        )

    def after_photo() -> None:
        clock[0] += timedelta(hours=2)
        upload = reporting.Uploads({"files": [_photo(lat, lon, clock[0], n, True)]})
        reporting.add_photos(
            reporting.Caller(session, settings, storage, users[rectifier]),
            issue_id,
            PhotoForm(kind=PhotoKind.AFTER),
            upload,
            now=clock[0],
        )

    deadline_hours = category.deadline_hours
    if plan in ("reported", "on_the_spot"):
        return
    if plan == "rejected":
        act("reject", supervisor, note="不属于整治范围")
        return
    if plan == "duplicate":
        act("mark_duplicate", supervisor, duplicate_of=issue.id - REPORTER_CYCLE)
        return
    act("accept", supervisor)
    if plan == "accepted":
        return
    # Overdue issues get a deadline that has passed by now; the others one still ahead.
    ahead = timedelta(hours=1) if plan == "overdue" else timedelta(days=30)
    act(
        "dispatch",
        supervisor,
        org_unit=office,
        deadline=clock[0]
        + max(ahead, timedelta(hours=min(deadline_hours, 1)))
        + timedelta(hours=3),
    )
    if plan in ("dispatched", "overdue"):
        return
    after_photo()
    act("submit_rectification", rectifier)
    if plan == "closed_rework":
        act("verify_fail", "zhihui", note="整改不彻底，仍有残留")
        after_photo()
        act("submit_rectification", rectifier)
    if plan in ("closed", "closed_rework"):
        act("verify_pass", "zhihui")
