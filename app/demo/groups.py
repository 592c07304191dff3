"""The campaign's 10 工作组 (two under each office) and 6 专班 (one per kind of problem, under
the command), ranked like the offices (`/api/v1/rankings?kind=work_group|task_force`).

`gridproof demo` dispatches a story to each of them over the last ten days, so that their
rankings have work this week and last.
"""

GROUP_RECTIFIER = ("zb_zhenggai", "worker", "JKQ", "专班 整改员")

# code, name, parent
WORK_GROUPS = [
    (f"{office}-G{n}", f"{office_name}第{n}工作组", office)
    for office, office_name in (
        ("XY", "祥云"),
        ("JL", "九龙"),
        ("JH", "京航"),
        ("CH", "潮河"),
        ("MH", "明湖"),
    )
    for n in (1, 2)
]
# code, name, the categories it takes
TASK_FORCES = [
    ("ZB-CW", "拆违专班", ("illegal_building",)),
    ("ZB-YC", "扬尘治理专班", ("construction_site", "bare_soil")),
    ("ZB-GG", "广告整治专班", ("flyposter", "banner", "wall_ad")),
    ("ZB-ZD", "占道经营专班", ("road_occupation", "outside_store")),
    ("ZB-SM", "散煤治理专班", ("scattered_coal",)),
    ("ZB-XF", "消防安全专班", ("fire_hazard",)),
]
# What each group's story is driven to, in turn (closed and rework count for the score, an
# overdue one against it).
PLANS = ["closed", "closed_rework", "closed", "overdue", "closed", "dispatched"]
# Photo seeds whose fixed wall looks clearly unlike the wall with posters (pHash distance ≥ 12),
# so that no after-photo is taken for its before-photo (after_matches_before).
SEEDS = [104, 106, 117, 122, 124, 127, 128, 133, 137, 138, 145, 150, 156, 161, 181, 186]


def org_units() -> list[tuple[str, str, str, str]]:
    """(code, name, kind, parent) of every group, for orgs.add_org."""
    units = [(code, name, "work_group", parent) for code, name, parent in WORK_GROUPS]
    units += [(code, name, "task_force", "JKQ") for code, name, _ in TASK_FORCES]
    return units


def stories() -> list[tuple[str, str, str]]:
    """(group code, category code, plan) for each group's demo issue."""
    out = []
    for n, (code, _name, _parent) in enumerate(WORK_GROUPS):
        out.append(
            (code, ("garbage", "road_damage", "street_light", "shared_bike")[n % 4], PLANS[n % 6])
        )
    for n, (code, _name, categories) in enumerate(TASK_FORCES):
        out.append((code, categories[0], PLANS[(n + 2) % 6]))
    return out
