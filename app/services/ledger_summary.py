"""The ledger's summary sheet (汇总): one row per office for the ledger's period, with the
indicators, the score and the flag of the rankings (services/rankings.py), numbers as numbers.
"""

from dataclasses import dataclass
from datetime import datetime

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from sqlmodel import Session

from app.config import Settings
from app.models import User
from app.services import periods, rankings_flags
from app.services.cells import xlsx_text
from app.services.periods import Chosen, NamedPeriod
from app.services.rankings import GroupBy, RankingItem, ranked_items
from app.services.stats import RankedKind

SHEET = "汇总"
COLUMNS = [
    "单位",
    "上报数",
    "应结案",
    "已结案",
    "结案率",
    "按期结案率",
    "返工率",
    "超期未结",
    "得分",
    "等级",
    "名次",
    "红旗/黑旗",
    "计算建议",
]
WIDTHS = [16, 8, 8, 8, 9, 11, 9, 9, 8, 6, 6, 10, 10]
FLAG_NAMES = {"red": "红旗", "black": "黑旗"}
PERCENT = "0.0%"


@dataclass(frozen=True)
class Summary:
    label: str
    items: list[RankingItem]


def ledger_period(
    name: NamedPeriod | None,
    week: str | None,
    from_text: str | None,
    to_text: str | None,
    settings: Settings,
    now: datetime,
) -> Chosen | None:
    """The period the ledger was asked for (None: every issue), refused as /stats refuses."""
    if not (name or week or from_text or to_text):
        return None
    return periods.resolve(name, week, from_text, to_text, settings.zone, now)


def summary(
    session: Session, settings: Settings, user: User, chosen: Chosen | None, now: datetime
) -> Summary:
    """The offices in the reader's scope for the period (this week when none was asked)."""
    chosen = chosen or periods.resolve(None, None, None, None, settings.zone, now)
    period = chosen.period
    items = ranked_items(session, settings, user, period, RankedKind.OFFICE, GroupBy.ORG_UNIT, now)
    decided = chosen.info.week is not None and rankings_flags.apply_awards(session, period, items)
    for item in items:
        if not decided:
            item.final_flag = item.flag
    return Summary(chosen.info.label, items)


def write_sheet(workbook: Workbook, summary: Summary) -> None:
    sheet = workbook.create_sheet(SHEET)
    for index, width in enumerate(WIDTHS, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    title = WriteOnlyCell(sheet, value=xlsx_text(f"各单位汇总 · {summary.label}"))
    title.font = Font(bold=True, size=13)
    sheet.append([title])
    sheet.append([_bold(sheet, text) for text in COLUMNS])
    for item in summary.items:
        sheet.append(_row(sheet, item))


def _bold(sheet: object, text: str) -> WriteOnlyCell:
    cell = WriteOnlyCell(sheet, value=text)
    cell.font = Font(bold=True)
    return cell


def _row(sheet: object, item: RankingItem) -> list[object]:
    rates = item.indicators

    def percent(value: float | None) -> WriteOnlyCell:
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = PERCENT
        return cell

    name = WriteOnlyCell(sheet, value=xlsx_text(item.name))
    name.data_type = "s"
    return [
        name,
        item.reported,
        rates.due,
        rates.closed,
        percent(rates.closure_rate),
        percent(rates.on_time_closure_rate),
        percent(rates.rework_rate),
        rates.overdue_open,
        item.score,
        item.grade,
        item.rank,
        FLAG_NAMES.get(item.final_flag or ""),
        FLAG_NAMES.get(item.flag or ""),
    ]
