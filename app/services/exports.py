"""The issue ledger (问题台账) as XLSX and CSV, read from the database in batches.

Issues are read BATCH at a time with a keyset on id, so an export of 50,000 issues never holds
more than one batch (the session's identity map holds its rows weakly). The CSV is streamed as
it is read. The XLSX is written with openpyxl's write-only mode to a temp file; its pictures
(the thumbnails of each issue's first before-photo and latest after-photo) are streamed too:
each JPEG goes into the archive as its row is written, and the drawing part that places them is
written to a temp file as it grows (see _Pictures). openpyxl's own drawing writer would keep
every picture's anchor in memory and build the whole drawing as one XML tree at the end.
"""

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from copy import copy
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import quoteattr
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.packaging.relationship import get_rels_path
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.writer.excel import ExcelWriter
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.config import Settings
from app.models import Category, Issue, OrgUnit, Photo, User
from app.models.base import utcnow
from app.models.issue import IssueStatus, is_overdue
from app.models.photo import PhotoKind
from app.services import ledger_extra, ledger_summary
from app.services.cells import csv_text, xlsx_text
from app.services.issue_list import IssueFilters, filtered
from app.services.ledger_summary import Summary
from app.services.objects import ObjectMissing, ObjectStore, derivative_key, open_store
from app.services.stats import Period
from app.services.storage import CHUNK, Storage

BATCH = 500

COLUMNS = [
    "编号",
    "类别",
    "位置",
    "问题描述",
    "上报人",
    "上报时间",
    "责任单位",
    "整改时限",
    "状态",
    "整改完成时间",
    "核查人",
    "是否超期",
    "返工次数",
    "数量",
    # For a weekly 台账 (services/ledger_extra.py): numbers stay numbers.
    "单位",
    "超期天数",
    "整改人",
    "派遣时间",
    "整改数量",
    "立行立改",
    "照片标记",
]
PHOTO_COLUMNS = ["整改前照片", "整改后照片"]

STATUS_NAMES = {
    IssueStatus.REPORTED: "已上报",
    IssueStatus.ACCEPTED: "已受理",
    IssueStatus.DISPATCHED: "整改中",
    IssueStatus.RECTIFIED: "待核查",
    IssueStatus.CLOSED: "已结案",
    IssueStatus.REJECTED: "不予受理",
    IssueStatus.DUPLICATE: "重复上报",
}


@dataclass(frozen=True)
class Thumb:
    """A photo's stored thumbnail, read from the store when it is placed in the sheet."""

    store: ObjectStore
    key: str
    width: int
    height: int


@dataclass
class LedgerRow:
    code: str
    category: str
    address: str | None
    lat: float
    lon: float
    description: str
    reporter: str
    reported_at: datetime
    org_unit: str
    deadline: datetime | None
    status: str
    rectified_at: datetime | None
    verifier: str
    overdue: bool
    rework_count: int
    quantity: float | None
    unit: str
    before: Thumb | None
    after: Thumb | None
    days_overdue: float = 0.0
    rectifier: str = ""
    dispatched_at: datetime | None = None
    rectified_quantity: float | None = None
    on_the_spot: bool = False
    photo_flags: str = ""

    @property
    def coordinates(self) -> str:
        """The place when no address was given: made here from two numbers, never user text."""
        return f"{self.lat:.6f}, {self.lon:.6f}"


def ledger_filename(suffix: str, settings: Settings, now: datetime) -> str:
    """问题台账-YYYYMMDD.<suffix>, dated in the zone as issue codes are (JK-YYYYMMDD-…)."""
    return f"问题台账-{now.astimezone(settings.zone):%Y%m%d}.{suffix}"


def late(issue: Issue, now: datetime) -> bool:
    """是否超期: overdue now, or the rectification was submitted after the deadline."""
    if is_overdue(issue, now):
        return True
    return bool(issue.deadline_at and issue.rectified_at and issue.rectified_at > issue.deadline_at)


def ledger_batches(
    session: Session,
    settings: Settings,
    user: User,
    filters: IssueFilters,
    now: datetime,
    batch_size: int | None = None,
    period: Period | None = None,
) -> Iterator[list[LedgerRow]]:
    """The rows of the ledger the user may see (reported in `period` when given), in issue
    order, one batch at a time. Filters that cannot be used are refused here, before a byte of
    the answer is sent."""
    filtered(session, user, filters, now)
    return _batches(
        session,
        settings=settings,
        user=user,
        filters=filters,
        now=now,
        size=batch_size or BATCH,
        period=period,
    )


def _batches(
    session: Session,
    *,
    settings: Settings,
    user: User,
    filters: IssueFilters,
    now: datetime,
    size: int,
    period: Period | None,
) -> Iterator[list[LedgerRow]]:
    store = open_store(settings)
    categories = {c.code: (c.name, c.unit) for c in session.exec(select(Category))}
    units = dict(session.exec(select(OrgUnit.id, OrgUnit.name)).all())
    zone = settings.zone
    last_id = 0
    while True:
        query = filtered(session, user, filters, now).where(col(Issue.id) > last_id)
        if period is not None:
            reported = col(Issue.reported_at)
            query = query.where(reported >= period.start, reported < period.end)
        issues = list(session.exec(query.order_by(col(Issue.id)).limit(size)))
        if not issues:
            return
        last_id = issues[-1].id or 0
        names = _names(session, issues)
        before = _thumbs(session, store, issues, PhotoKind.BEFORE, first=True)
        after = _thumbs(session, store, issues, PhotoKind.AFTER, first=False)
        extra = ledger_extra.extras(session, issues)
        yield [
            LedgerRow(
                code=i.code,
                category=categories[i.category_code][0],
                address=i.address or None,
                lat=i.lat,
                lon=i.lon,
                description=i.description,
                reporter=names.get(i.reported_by_id, ""),
                reported_at=i.reported_at.astimezone(zone),
                org_unit=units.get(i.org_unit_id, ""),
                deadline=i.deadline_at.astimezone(zone) if i.deadline_at else None,
                status=STATUS_NAMES[IssueStatus(i.status)],
                rectified_at=i.rectified_at.astimezone(zone) if i.rectified_at else None,
                verifier=names.get(i.verified_by_id, "") if i.verified_by_id else "",
                overdue=late(i, now),
                rework_count=i.rework_count,
                quantity=i.quantity,
                unit=categories[i.category_code][1],
                before=before.get(i.id or 0),
                after=after.get(i.id or 0),
                days_overdue=ledger_extra.days_overdue(i, now),
                rectifier=names.get(i.rectified_by_id, "") if i.rectified_by_id else "",
                dispatched_at=i.dispatched_at.astimezone(zone) if i.dispatched_at else None,
                rectified_quantity=i.rectified_quantity,
                on_the_spot=extra[i.id or 0].on_the_spot,
                photo_flags=extra[i.id or 0].photo_flags,
            )
            for i in issues
        ]


def _names(session: Session, issues: list[Issue]) -> dict[int, str]:
    ids = {i.reported_by_id for i in issues}
    ids |= {i.verified_by_id for i in issues if i.verified_by_id}
    ids |= {i.rectified_by_id for i in issues if i.rectified_by_id}
    query = select(User.id, User.display_name, User.username).where(col(User.id).in_(ids))
    rows = session.exec(query)
    return {user_id: display or name for user_id, display, name in rows if user_id is not None}


def _thumbs(
    session: Session, store: ObjectStore, issues: list[Issue], kind: PhotoKind, *, first: bool
) -> dict[int, Thumb]:
    """Each issue's first (or latest) photo of this kind, as its stored thumbnail."""
    pick = func.min(Photo.id) if first else func.max(Photo.id)
    chosen = (
        select(pick)
        .where(col(Photo.issue_id).in_([i.id for i in issues]), Photo.kind == kind)
        .group_by(col(Photo.issue_id))
    )
    rows = session.exec(
        select(Photo.issue_id, Photo.sha256, Photo.width, Photo.height).where(
            col(Photo.id).in_(chosen)
        )
    )
    return {
        issue_id: Thumb(store, derivative_key(sha256, "thumb"), width, height)
        for issue_id, sha256, width, height in rows
    }


# --- CSV -------------------------------------------------------------------------------------


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else ""


def _number(value: float | None) -> float | int | None:
    """A number as a spreadsheet reads it: 3 rather than 3.0 (never text, never prefixed)."""
    if value is None:
        return None
    return int(value) if value.is_integer() else value


def csv_chunks(batches: Iterator[list[LedgerRow]]) -> Iterator[bytes]:
    """The ledger as CSV, UTF-8 with a BOM (so that Excel reads the Chinese), one batch a chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    yield "\ufeff".encode() + buffer.getvalue().encode()
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_csv_row(row) for row in batch)
        yield buffer.getvalue().encode()


def _csv_row(row: LedgerRow) -> list[str | int | float | None]:
    """Every text through csv_text (user text may look like a formula); numbers as they are."""
    text = csv_text
    return [
        text(row.code),
        text(row.category),
        text(row.address) if row.address else row.coordinates,
        text(row.description),
        text(row.reporter),
        _when(row.reported_at),
        text(row.org_unit),
        _when(row.deadline),
        text(row.status),
        _when(row.rectified_at),
        text(row.verifier),
        "是" if row.overdue else "否",
        row.rework_count,
        _number(row.quantity),
        text(row.unit),
        _number(row.days_overdue),
        text(row.rectifier),
        _when(row.dispatched_at),
        _number(row.rectified_quantity),
        "是" if row.on_the_spot else "否",
        text(row.photo_flags),
    ]


# --- XLSX ------------------------------------------------------------------------------------

EMU_PER_PIXEL = 9525
# A picture fits in PICTURE_BOX pixels inside a cell of PHOTO_COLUMN_WIDTH characters
# (about 7 px each, plus padding) and ROW_HEIGHT points (4/3 px each).
PICTURE_BOX = (120, 90)
PICTURE_MARGIN = 4
PHOTO_COLUMN_WIDTH = 19
ROW_HEIGHT = 73
WIDTHS = [20, 14, 26, 40, 12, 17, 14, 17, 9, 17, 12, 9, 9, 11, 6, 9, 12, 17, 9, 9, 40]
TIME_FORMAT = "yyyy-mm-dd hh:mm"

_DRAWING_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<xdr:wsDr xmlns:xdr="http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing" '
    'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
)
_RELS_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
)
_IMAGE_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/image"


class _Pictures:
    """The sheet's pictures, streamed: JPEGs into the archive, anchors and rels to temp files."""

    def __init__(self, archive: ZipFile, anchors: IO[str], rels: IO[str]) -> None:
        self.archive, self.anchors, self.rels = archive, anchors, rels
        self.count = 0

    def add(self, thumb: Thumb, row: int, column: int, description: str) -> None:
        """Place a picture in the cell (0-based row and column), moving and sizing with it; a
        thumbnail missing from the store leaves the cell empty."""
        try:
            source = thumb.store.open(thumb.key)
        except ObjectMissing:
            return
        self.count += 1
        n = self.count
        info = ZipInfo(f"xl/media/image{n}.jpeg")  # stored as-is: JPEGs are compressed
        with source, self.archive.open(info, "w") as entry:
            shutil.copyfileobj(source, entry, CHUNK)
        self.rels.write(
            f'<Relationship Id="rId{n}" Type="{_IMAGE_REL}" Target="/xl/media/image{n}.jpeg"/>'
        )
        scale = min(PICTURE_BOX[0] / thumb.width, PICTURE_BOX[1] / thumb.height)
        cx, cy = (round(v * scale) * EMU_PER_PIXEL for v in (thumb.width, thumb.height))
        off = PICTURE_MARGIN * EMU_PER_PIXEL
        self.anchors.write(
            '<xdr:twoCellAnchor editAs="twoCell">'
            f"<xdr:from><xdr:col>{column}</xdr:col><xdr:colOff>{off}</xdr:colOff>"
            f"<xdr:row>{row}</xdr:row><xdr:rowOff>{off}</xdr:rowOff></xdr:from>"
            f"<xdr:to><xdr:col>{column}</xdr:col><xdr:colOff>{off + cx}</xdr:colOff>"
            f"<xdr:row>{row}</xdr:row><xdr:rowOff>{off + cy}</xdr:rowOff></xdr:to>"
            f'<xdr:pic><xdr:nvPicPr><xdr:cNvPr id="{n + 1}" name="照片 {n}" '
            f"descr={quoteattr(description)}/>"
            '<xdr:cNvPicPr><a:picLocks noChangeAspect="1"/></xdr:cNvPicPr></xdr:nvPicPr>'
            f'<xdr:blipFill><a:blip r:embed="rId{n}"/><a:stretch><a:fillRect/></a:stretch>'
            "</xdr:blipFill><xdr:spPr>"
            f'<a:xfrm><a:off x="0" y="0"/><a:ext cx="{cx}" cy="{cy}"/></a:xfrm>'
            '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></xdr:spPr></xdr:pic>'
            "<xdr:clientData/></xdr:twoCellAnchor>"
        )

    def write_parts(self, drawing_name: str, rels_name: str) -> None:
        for source, name, head, tail in (
            (self.anchors, drawing_name, _DRAWING_HEAD, "</xdr:wsDr>"),
            (self.rels, rels_name, _RELS_HEAD, "</Relationships>"),
        ):
            source.seek(0)
            with self.archive.open(name, "w", force_zip64=True) as part:
                part.write(head.encode())
                while chunk := source.read(1 << 16):
                    part.write(chunk.encode())
                part.write(tail.encode())


class _LedgerExcelWriter(ExcelWriter):
    """openpyxl's workbook writer, with the sheet's drawing part written by _Pictures."""

    def __init__(self, workbook: Workbook, archive: ZipFile, pictures: _Pictures) -> None:
        super().__init__(workbook, archive)
        self.pictures = pictures

    def _write_drawing(self, drawing: Any) -> None:
        self._drawings.append(drawing)
        drawing._id = len(self._drawings)
        self.pictures.write_parts(drawing.path[1:], get_rels_path(drawing.path)[1:])
        self.manifest.append(drawing)


# Stands in ws._images so that openpyxl writes the sheet's <drawing> element and relationship;
# the drawing itself comes from _Pictures.
_STREAMED_PICTURES = object()


@dataclass(frozen=True)
class ExportFile:
    path: Path
    size: int


def write_xlsx(
    batches: Iterator[list[LedgerRow]],
    storage: Storage,
    *,
    images: bool = True,
    summary: Summary | None = None,
) -> ExportFile:
    """Write the ledger to a temp file in storage (send it with `sent_once`)."""
    storage.tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=storage.tmp_dir, prefix="ledger-", suffix=".xlsx")
    os.close(fd)
    path = Path(name)
    try:
        with (
            ZipFile(path, "w", ZIP_DEFLATED, allowZip64=True) as archive,
            _scratch(storage) as anchors,
            _scratch(storage) as rels,
        ):
            pictures = _Pictures(archive, anchors, rels)
            workbook = _fill_workbook(batches, pictures if images else None)
            if summary is not None:
                ledger_summary.write_sheet(workbook, summary)
            workbook.properties.modified = utcnow().replace(tzinfo=None)
            _LedgerExcelWriter(workbook, archive, pictures).write_data()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ExportFile(path, path.stat().st_size)


def _scratch(storage: Storage) -> IO[str]:
    return tempfile.TemporaryFile("w+", encoding="utf-8", dir=storage.tmp_dir)


def _fill_workbook(batches: Iterator[list[LedgerRow]], pictures: _Pictures | None) -> Workbook:
    workbook = Workbook(write_only=True)
    sheet: WriteOnlyWorksheet = workbook.create_sheet("问题台账")
    columns = COLUMNS + (PHOTO_COLUMNS if pictures else [])
    for index, width in enumerate(WIDTHS + [PHOTO_COLUMN_WIDTH] * 2, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    if pictures:
        sheet.sheet_format.defaultRowHeight = ROW_HEIGHT
        sheet.sheet_format.customHeight = True
        sheet.row_dimensions[1].height = 24
    sheet.freeze_panes = "B2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}1"
    sheet.append([_header(sheet, title) for title in columns])
    styles = _Styles(sheet)
    row_number = 1
    for batch in batches:
        for row in batch:
            row_number += 1
            sheet.append(_cells(row, styles))
            if pictures is None:
                continue
            for offset, thumb, when in ((0, row.before, "整改前"), (1, row.after, "整改后")):
                if thumb is not None:
                    column = len(COLUMNS) + offset
                    pictures.add(thumb, row_number - 1, column, f"{row.code} {when}")
    if pictures and pictures.count:
        sheet._images.append(_STREAMED_PICTURES)
    return workbook


def _header(sheet: WriteOnlyWorksheet, title: str) -> WriteOnlyCell:
    cell = WriteOnlyCell(sheet, value=title)
    cell.font = Font(bold=True, color="FFFFFF")
    cell.fill = PatternFill("solid", fgColor="1F3A5F")
    cell.alignment = Alignment(horizontal="center", vertical="center")
    return cell


class _Styles:
    """Each kind of cell styled once; rows copy the style (setting one per cell is slow)."""

    def __init__(self, sheet: WriteOnlyWorksheet) -> None:
        self.sheet = sheet
        self.plain = self._make(Alignment(vertical="center"))
        self.wrap = self._make(Alignment(wrap_text=True, vertical="center"))
        self.time = self._make(Alignment(vertical="center"), TIME_FORMAT)
        self.late = self._make(Alignment(vertical="center"), font=Font(color="C00000", bold=True))
        self.quantity: dict[str, WriteOnlyCell] = {}

    def _make(
        self, alignment: Alignment, number_format: str | None = None, font: Font | None = None
    ) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.sheet)
        cell.alignment = alignment
        if number_format:
            cell.number_format = number_format
        if font:
            cell.font = font
        return cell

    def cell(self, value: Any, like: WriteOnlyCell) -> WriteOnlyCell:
        """A cell of this style; text is always a string cell (never a formula: cells.py)."""
        if isinstance(value, str):
            cell = WriteOnlyCell(self.sheet, value=xlsx_text(value))
            cell.data_type = "s"
        else:
            cell = WriteOnlyCell(self.sheet, value=value)
        cell._style = copy(like._style)
        return cell

    def of_quantity(self, unit: str) -> WriteOnlyCell:
        """Numbers that Excel can sum, shown with their unit (12 m²)."""
        if unit not in self.quantity:
            text = unit.replace('"', "")
            self.quantity[unit] = self._make(Alignment(vertical="center"), f'General" {text}"')
        return self.quantity[unit]


def _cells(row: LedgerRow, styles: _Styles) -> list[WriteOnlyCell]:
    plain, wrap, cell = styles.plain, styles.wrap, styles.cell

    def when(at: datetime | None) -> WriteOnlyCell:
        return cell(at.replace(tzinfo=None) if at else None, styles.time)

    return [
        cell(row.code, plain),
        cell(row.category, plain),
        cell(row.address or row.coordinates, wrap),
        cell(row.description, wrap),
        cell(row.reporter, plain),
        when(row.reported_at),
        cell(row.org_unit, plain),
        when(row.deadline),
        cell(row.status, plain),
        when(row.rectified_at),
        cell(row.verifier, plain),
        cell("是", styles.late) if row.overdue else cell("否", plain),
        cell(row.rework_count, plain),
        cell(row.quantity, styles.of_quantity(row.unit)),
        cell(row.unit, plain),
        cell(row.days_overdue, plain),
        cell(row.rectifier, plain),
        when(row.dispatched_at),
        cell(row.rectified_quantity, styles.of_quantity(row.unit)),
        cell("是" if row.on_the_spot else "否", plain),
        cell(row.photo_flags, wrap),
    ]


def sent_once(path: Path) -> Iterator[bytes]:
    """The temp file's bytes in chunks; the file is removed when they have been sent."""
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk
    finally:
        path.unlink(missing_ok=True)
