"""`gridproof demo`: the 经开区 campaign zone with users of every role and ~40 issues."""

import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from app.config import Settings
from app.demo import grid as demo_grid
from app.demo import groups as demo_groups
from app.demo.photos import make_jpeg
from app.models import Category, Issue, User
from app.models.base import utcnow
from app.models.issue import IssueReport, PhotoForm, TransitionRequest
from app.models.photo import PhotoKind
from app.services import auth, issues, orgs, reporting
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
    demo_groups.GROUP_RECTIFIER,
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
    for code, name, kind, parent in ORG_UNITS + demo_groups.org_units():
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
    _load_group_issues(session, settings, users)
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
        people = (reporter, office, supervisor, rectifier)
        story = _Story(session, settings, storage, users, people, lat, lon, n, at)
        story.play(category, plan)
    print("Loaded 40 demo issues.")


def _load_group_issues(session: Session, settings: Settings, users: dict[str, User]) -> None:
    """One story per 工作组 and 专班 over the last ten days (once: skipped when they have any)."""
    codes = [code for code, *_ in demo_groups.org_units()]
    unit_ids = [orgs.by_code(session, code).id for code in codes]
    if session.exec(select(Issue).where(col(Issue.org_unit_id).in_(unit_ids))).first():
        return
    storage = Storage(settings.upload_dir)
    rng = random.Random(2027)
    start = utcnow() - timedelta(days=10)
    rectifier = demo_groups.GROUP_RECTIFIER[0]
    for n, (group, category_code, plan) in enumerate(demo_groups.stories()):
        category = session.get(Category, category_code)
        assert category is not None
        at = start + timedelta(hours=13 * n + rng.randint(0, 3))
        lat = CENTRE[0] + rng.uniform(-0.02, 0.02)
        lon = CENTRE[1] + rng.uniform(-0.025, 0.025)
        people = ("wang", group, "zhihui", rectifier)
        seed = demo_groups.SEEDS[n]
        story = _Story(session, settings, storage, users, people, lat, lon, seed, at)
        story.play(category, plan)
    print(f"Loaded {len(codes)} demo issues of the 工作组 and 专班.")


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


@dataclass
class _Story:
    """One demo issue played through the services, a few hours between steps."""

    session: Session
    settings: Settings
    storage: Storage
    users: dict[str, User]
    people: tuple[str, str, str, str]  # reporter, office, supervisor, rectifier
    lat: float
    lon: float
    n: int
    clock: datetime
    issue_id: int = 0

    def report(self, category: Category, on_the_spot: bool) -> None:
        at = self.clock
        fields: dict[str, list[Upload]] = {
            "photos": [_photo(self.lat, self.lon, at, self.n, False)]
        }
        if on_the_spot:
            later = at + timedelta(minutes=20)
            fields["after_photos"] = [_photo(self.lat, self.lon, later, self.n, True)]
        form = IssueReport(
            category=category.code,
            description=DESCRIPTIONS[category.code],
            quantity=float(1 + self.n % 5),
            address=f"经开区第{self.n % 9 + 1}大街",
        )
        caller = reporting.Caller(
            self.session, self.settings, self.storage, self.users[self.people[0]]
        )
        issue, _ = reporting.report_issue(caller, form, reporting.Uploads(fields), now=at)
        assert issue.id is not None
        self.issue_id = issue.id

    def act(self, action: str, who: str, **kwargs: object) -> None:
        self.clock += timedelta(hours=3)
        issue = self.session.get(Issue, self.issue_id)
        assert issue is not None
        request = TransitionRequest.model_validate({"action": action, **kwargs})
        issues.apply_transition(
            self.session,
            self.settings,
            self.users[who],
            self.issue_id,
            request,
            version=issue.version,
            now=self.clock,
        )

    def after_photo(self) -> None:
        self.clock += timedelta(hours=2)
        photo = _photo(self.lat, self.lon, self.clock, self.n, True)
        rectifier = self.users[self.people[3]]
        reporting.add_photos(
            reporting.Caller(self.session, self.settings, self.storage, rectifier),
            self.issue_id,
            PhotoForm(kind=PhotoKind.AFTER),
            reporting.Uploads({"files": [photo]}),
            now=self.clock,
        )

    def play(self, category: Category, plan: str) -> None:
        """Report, then take the issue as far as its plan says."""
        _reporter, office, supervisor, rectifier = self.people
        self.report(category, on_the_spot=plan == "on_the_spot")
        if plan in ("reported", "on_the_spot"):
            return
        if plan in ("rejected", "duplicate"):
            if plan == "rejected":
                self.act("reject", supervisor, note="不属于整治范围")
            else:
                self.act("mark_duplicate", supervisor, duplicate_of=self.issue_id - REPORTER_CYCLE)
            return
        self.act("accept", supervisor)
        if plan == "accepted":
            return
        # Overdue issues get a deadline that has passed by now; the others one still ahead.
        ahead = timedelta(hours=1) if plan == "overdue" else timedelta(days=30)
        lead = max(ahead, timedelta(hours=min(category.deadline_hours, 1))) + timedelta(hours=3)
        self.act("dispatch", supervisor, org_unit=office, deadline=self.clock + lead)
        if plan in ("dispatched", "overdue"):
            return
        self.after_photo()
        self.act("submit_rectification", rectifier)
        if plan == "closed_rework":
            self.act("verify_fail", "zhihui", note="整改不彻底，仍有残留")
            self.after_photo()
            self.act("submit_rectification", rectifier)
        if plan in ("closed", "closed_rework"):
            self.act("verify_pass", "zhihui")
