"""The monthly report as people read it: one table (a row per measure, a column per dong and one
for the district) in Korean or English, the same table as a CSV for Excel, and the JSON API's
models. Counts only: alerts.report names no resident, and every output here withholds counts of
1 and 2 and the complements that would give them back (protect), so a dong of a few residents
does not show that one of them died."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from alerts.course import END_REASONS, ENDED_OUTCOME
from alerts.models import RESOLUTION_OUTCOMES
from alerts.report import Figures, Month, MonthlyReport
from core.domain import Severity
from dashboards.i18n import finding_kind_label, pick, severity_label

WORDS: dict[str, tuple[str, str]] = {
    "title": ("월간 보고서", "Monthly report"),
    "heading": ("안부 돌봄 월간 보고서", "check-in care monthly report"),
    "help": (
        "관할 구의 행정동별 한 달 집계입니다. 개인정보 없이 건수만 보여 줍니다. 한 사람을 알아볼 "
        "수 있는 1~2건(명)은 \u201c<3\u201d으로, 합계에서 그 값을 계산해 낼 수 있는 칸은 "
        "\u201c*\u201d로 함께 가립니다(0은 그대로 0). 대상자가 다른 행정동으로 옮긴 경우 각 건은 "
        "발생 당시 소속 행정동에 집계합니다. 응답: 사람이 전화를 받음(알아듣지 못한 응답 포함).",
        "The district's month, administrative dong by dong: counts only, no personal data. "
        "Counts of 1 or 2, which could point at one person, show as \u201c<3\u201d, and a cell from "
        "which such a count could be worked back out of a total is withheld as \u201c*\u201d (0 "
        "stays 0). Each event counts in the dong the resident belonged to when it happened. "
        "Answered: a person picked up (an answer not understood included).",
    ),
    "help_reference": (
        "기준 시각: 월말(진행 중인 달은 작성 시각).",
        "Reference time: the month's end (for a month still running, the time of the report).",
    ),
    "help_p90": (
        "90백분위수: 알림 10건 중 9건이 이 시간 안에 확인됨. 확인된 알림이 3건 미만이면 "
        "중앙값과 90백분위수는 \u201c\u2014\u201d로 둡니다.",
        "90th percentile: 9 of 10 alerts were acknowledged within this time. With fewer than 3 "
        "acknowledged alerts the median and the 90th percentile show as \u201c\u2014\u201d.",
    ),
    "help_not_reached": (
        "안부 미확인: 이 달 정기 안부전화 일정이나 알림 안부전화가 있었지만 괜찮음·불편·도움 "
        "요청·응급 중 어느 답도 받지 못한 대상자.",
        "Check-in not confirmed: had a routine check-in call scheduled or an alert's check-in "
        "call this month, and gave none of the answers fine, unwell, help or emergency.",
    ),
    "month": ("조회할 달", "Month"),
    "show": ("보기", "Show"),
    "previous": ("이전 달", "Previous month"),
    "next": ("다음 달", "Next month"),
    "csv": ("CSV 내려받기 (엑셀)", "Download CSV (Excel)"),
    "print_hint": ("A4 가로 방향으로 인쇄됩니다.", "Prints on A4 paper, landscape."),
    "agency": ("기관", "Agency"),
    "period": ("기간", "Period"),
    "made": ("작성일", "Made"),
    "author": ("작성자", "By"),
    "korea_time": ("한국 시간", "Korea time"),
    "as_of": ("현재", "so far"),
    "partial": (
        "이번 달은 아직 끝나지 않았습니다. 작성 시각까지의 집계입니다.",
        "This month has not ended: counted up to the time of the report.",
    ),
    "section": ("구분", "Section"),
    "measure": ("항목", "Measure"),
    "whole": ("전체", "total"),
    "residents": ("대상자", "Residents"),
    "at_end": ("관리 대상자 (기준 시각, 명)", "Residents served (reference time, persons)"),
    "new": ("신규 등록 (명)", "Newly enrolled (persons)"),
    "ended": ("서비스 종료 (명)", "Service ended (persons)"),
    "gateways": ("게이트웨이", "Gateways"),
    "gateways_all": ("설치된 게이트웨이 (대)", "Gateways installed (units)"),
    "gateways_heard": (
        "그중 기준 시각 전 24시간 안에 신호 수신 (대)",
        "of which heard in the 24 hours before the reference time (units)",
    ),
    "alerts": ("알림", "Alerts"),
    "opened": ("발생한 알림 (건)", "Alerts opened (alerts)"),
    "ack": ("알림 확인", "Acknowledgement"),
    "acknowledged": ("확인된 알림 (건)", "Alerts acknowledged (alerts)"),
    "median": ("확인 소요 시간 중앙값 (분)", "Time to acknowledge, median (min)"),
    "p90": ("확인 소요 시간 90백분위수 (분)", "Time to acknowledge, 90th percentile (min)"),
    "resolved": ("알림 종결", "Alerts closed"),
    "resolved_all": ("이 달 종결된 알림 (건)", "Alerts closed this month (alerts)"),
    "resolved_note": ("이전 달 발생분 포함", "including alerts opened in earlier months"),
    "no_outcome": ("결과 미입력", "no outcome entered"),
    "calls": ("안부전화", "Check-in calls"),
    "placed": ("발신 (건)", "Placed (calls)"),
    "answered": ("응답 (건)", "Answered (calls)"),
    "answered_share": ("응답률 (%)", "Answered (%)"),
    "reach": ("안부 확인", "Check-ins"),
    "called": ("안부전화 대상자 (명)", "Residents with a check-in call (persons)"),
    "not_reached": ("안부 미확인 대상자 (명)", "Check-in not confirmed (persons)"),
    "timeout": (
        "보고서를 만드는 데 시간이 너무 오래 걸려 중단했습니다. 잠시 후 다시 시도해 주세요.",
        "Making the report took too long and was stopped; please try again in a moment.",
    ),
    "back": ("월간 보고서로 돌아가기", "Back to the monthly report"),
}
# The report's own words for the end reasons (a sub-row under "service ended").
END_LABELS: dict[str, tuple[str, str]] = {**END_REASONS, "other": ("기타", "other")}
OUTCOMES: dict[str, tuple[str, str]] = {
    **RESOLUTION_OUTCOMES,
    ENDED_OUTCOME: ("서비스 종료로 종결", "closed: service ended"),
}
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def word(lang: str, key: str) -> str:
    return pick(lang, WORDS[key])


# Counts below this (but above 0) are withheld: with a dong of few residents, "died: 1" names one.
SUPPRESS_BELOW = 3


class Withheld(StrEnum):
    """A count not shown: small itself, or a complement that would let a small one be worked
    back out of a total beside it."""

    SMALL = f"<{SUPPRESS_BELOW}"
    COMPLEMENT = "*"


Value = float | int | Withheld | None
Getter = Callable[[Figures], float | int | None]
Path = tuple[str, ...]  # where a line's value lives in Figures: ("alerts_by_kind", kind, sev)


@dataclass(frozen=True, slots=True)
class Line:
    """One measure across the dongs and the district; `unit` says how to write the values;
    `parent`: the line (an index in the table) whose value the lines naming it add up to."""

    section: str
    label: str
    values: tuple[Value, ...]  # the dongs in the report's order, then the district
    unit: str = "count"  # count, minutes, percent
    path: Path = ()
    parent: int | None = None
    note: str = ""


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60.0


def _share(f: Figures) -> float | None:
    share = f.answered_share
    return None if share is None else share * 100.0


def _ack(seconds: Callable[[Figures], float | None]) -> Getter:
    """A time to acknowledge in minutes; none from fewer than SUPPRESS_BELOW acknowledgements."""
    return lambda f: _minutes(seconds(f)) if f.acknowledged >= SUPPRESS_BELOW else None


def lines(report: MonthlyReport, lang: str) -> list[Line]:
    """The report's table, section by section, kinds and outcomes in the order people know,
    with small counts and their complements withheld (protect)."""
    every = (*report.dongs, report.total)
    total = report.total
    out: list[Line] = []

    def line(section: str, label: str, get: Getter, unit: str = "count", path: Path = (),
             parent: int | None = None, note: str = "") -> int:  # fmt: skip
        values = tuple(get(f) for f in every)
        out.append(Line(word(lang, section), label, values, unit, path, parent, note))
        return len(out) - 1

    line("residents", word(lang, "at_end"), lambda f: f.residents_at_end,
         path=("residents_at_end",))  # fmt: skip
    line("residents", word(lang, "new"), lambda f: f.residents_new, path=("residents_new",))
    ended = line("residents", word(lang, "ended"), lambda f: f.residents_ended,
                 path=("residents_ended",))  # fmt: skip
    for reason, pair in END_LABELS.items():
        path = ("ended_by_reason", reason)
        line("residents", f"└ {pick(lang, pair)}", _entry(path), path=path, parent=ended)
    line("gateways", word(lang, "gateways_all"), lambda f: f.gateways, path=("gateways",))
    line("gateways", word(lang, "gateways_heard"), lambda f: f.gateways_heard,
         path=("gateways_heard",))  # fmt: skip
    opened = line("alerts", word(lang, "opened"), lambda f: f.alerts, path=("alerts",))
    kinds = sorted(total.alerts_by_kind)
    for kind in kinds:
        name = kind_label(lang, kind, kinds)
        for severity in sorted(total.alerts_by_kind[kind], key=_severity_rank):
            at: Path = ("alerts_by_kind", kind, severity)
            label = f"{name} – {_severity(lang, severity)}"
            line("alerts", label, _entry(at), path=at, parent=opened)
    line("ack", word(lang, "acknowledged"), lambda f: f.acknowledged, path=("acknowledged",))
    line("ack", word(lang, "median"), _ack(lambda f: f.ack_median_s), "minutes",
         ("ack_median_s",))  # fmt: skip
    line("ack", word(lang, "p90"), _ack(lambda f: f.ack_p90_s), "minutes", ("ack_p90_s",))
    resolved = line("resolved", word(lang, "resolved_all"), lambda f: f.resolved,
                    path=("resolved",), note=word(lang, "resolved_note"))  # fmt: skip
    for outcome in sorted(total.resolved_by_outcome, key=_outcome_rank):
        path = ("resolved_by_outcome", outcome)
        label = f"└ {outcome_label(lang, outcome)}"
        line("resolved", label, _entry(path), path=path, parent=resolved)
    line("calls", word(lang, "placed"), lambda f: f.calls_placed, path=("calls_placed",))
    line("calls", word(lang, "answered"), lambda f: f.calls_answered, path=("calls_answered",))
    line("calls", word(lang, "answered_share"), _share, "percent", ("answered_share",))
    line("reach", word(lang, "called"), lambda f: f.residents_called,
         path=("residents_called",))  # fmt: skip
    line("reach", word(lang, "not_reached"), lambda f: f.residents_not_reached,
         path=("residents_not_reached",))  # fmt: skip
    return protect(out)


def protect(table: list[Line]) -> list[Line]:
    """The table with counts of 1 and 2 withheld (Withheld.SMALL), and complements: wherever
    cells add up to a total (a row's dongs to the district; a column's sub-rows to their line),
    a sum with exactly one cell withheld would give it back, so the smallest other cell of that
    sum is withheld too (Withheld.COMPLEMENT), until no sum has one alone. A share is withheld
    with either count it is made of."""
    grid = [list(row.values) for row in table]
    sums: list[list[tuple[int, int]]] = []  # each: the parts, then the total last
    for i, row in enumerate(table):
        if row.unit != "count":
            continue
        last = len(row.values) - 1
        sums.append([*((i, j) for j in range(last)), (i, last)])
        for j, value in enumerate(row.values):
            if isinstance(value, int) and 0 < value < SUPPRESS_BELOW:
                grid[i][j] = Withheld.SMALL
    for p, parent in enumerate(table):
        parts = [i for i, row in enumerate(table) if row.parent == p]
        if parts:
            sums += [[*((i, j) for i in parts), (p, j)] for j in range(len(parent.values))]
    changed = True
    while changed:
        changed = False
        for cells in sums:
            hidden = [c for c in cells if isinstance(grid[c[0]][c[1]], Withheld)]
            if len(hidden) != 1:
                continue
            shown = [c for c in cells[:-1] if not isinstance(grid[c[0]][c[1]], Withheld)]
            pick_from = shown or [cells[-1]]
            i, j = min(pick_from, key=lambda c: (not grid[c[0]][c[1]], grid[c[0]][c[1]] or 0))
            grid[i][j] = Withheld.COMPLEMENT
            changed = True
    index = {row.path: i for i, row in enumerate(table)}
    share, placed, answered = (index.get((k,)) for k in
                               ("answered_share", "calls_placed", "calls_answered"))  # fmt: skip
    if share is not None and placed is not None and answered is not None:
        for j in range(len(grid[share])):
            if isinstance(grid[placed][j], Withheld) or isinstance(grid[answered][j], Withheld):
                grid[share][j] = None
    return [replace(row, values=tuple(grid[i])) for i, row in enumerate(table)]


def _entry(path: Path) -> Getter:
    """Reads figures.<path[0]>[path[1]][...], 0 when absent."""

    def get(f: Figures) -> int:
        found: Any = getattr(f, path[0])
        for key in path[1:]:
            found = found.get(key, {})
        return found if isinstance(found, int) else 0

    return get


def kind_label(lang: str, kind: str, kinds: Iterable[str]) -> str:
    """An alert kind in the care manager's words; with its code only when another of `kinds`
    has the same words."""
    label = finding_kind_label(lang, kind)
    same = [k for k in kinds if k != kind and finding_kind_label(lang, k) == label]
    return f"{label} ({kind})" if same else label


def _outcome_rank(outcome: str) -> tuple[int, str]:
    """Known outcomes in their table's order, then any other, then none."""
    known = list(OUTCOMES)
    if outcome in known:
        return (known.index(outcome), "")
    return (len(known) + (not outcome), outcome)


def _severity_rank(severity: str) -> int:
    try:
        return int(Severity.parse(severity))
    except ValueError:
        return 99


def _severity(lang: str, severity: str) -> str:
    try:
        return severity_label(lang, severity)
    except ValueError:
        return severity


def outcome_label(lang: str, outcome: str) -> str:
    """A resolution outcome's words ('' is an alert resolved without one)."""
    if not outcome:
        return word(lang, "no_outcome")
    return pick(lang, OUTCOMES[outcome]) if outcome in OUTCOMES else outcome


def columns(report: MonthlyReport, lang: str) -> list[str]:
    """The column heads after the section and the measure: each dong, then the district."""
    heads = [f"{f.dong_name} ({f.dong_code})" for f in report.dongs]
    return [*heads, f"{report.district} {word(lang, 'whole')}".strip()]


def cell(value: Value, unit: str, grouped: bool = True) -> str:
    """A value as the page writes it: counts whole (with thousands separators when `grouped`),
    minutes and shares to 0.1, withheld as <3 or *, none as —."""
    if isinstance(value, Withheld):
        return value.value
    if value is None:
        return "—"
    if unit == "count":
        return f"{int(value):,}" if grouped else str(int(value))
    return f"{value:,.1f}" if grouped else f"{value:.1f}"


def neutralise(text: str) -> str:
    """A cell a spreadsheet would run as a formula, made plain text by a leading quote."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_bytes(report: MonthlyReport, lang: str) -> bytes:
    """The table as CSV in UTF-8 with a byte order mark (Korean Excel reads it so), numbers
    without separators, every cell guarded against formula injection; an empty value is an
    empty cell, a withheld one <3 or *."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([neutralise(c) for c in
                     (word(lang, "section"), word(lang, "measure"), *columns(report, lang))])  # fmt: skip
    for row in lines(report, lang):
        values = ["" if v is None else cell(v, row.unit, grouped=False) for v in row.values]
        writer.writerow([neutralise(c) for c in (row.section, row.label, *values)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def csv_filename(report: MonthlyReport, lang: str) -> str:
    """'월간보고서_종로구_2026-11.csv' (English: 'monthly-report_...'), no path characters."""
    stem = "monthly-report" if lang == "en" else "월간보고서"
    district = "".join(c for c in report.district if c.isalnum() or c in "-_")
    return "_".join(p for p in (stem, district, report.month.label) if p) + ".csv"


Count = int | None
COUNT_NOTE = (
    f"null: withheld, a count of 1 to {SUPPRESS_BELOW - 1} or a count that would let one be "
    "worked back out of a total (as on the page and in the CSV)"
)


class FiguresOut(BaseModel):
    """One dong's month, or the district's (dong_code null); counts withheld as null as on the
    page (suppressed_below)."""

    dong_code: str | None = Field(description="null: the district as a whole")
    dong_name: str
    residents_at_end: Count = Field(description="Served at the month's end (paused included)")
    residents_new: Count = Field(description="Enrolled in the month")
    residents_ended: Count = Field(description="Service ended in the month")
    ended_by_reason: dict[str, Count] = Field(description="moved, care_home, died, other")
    gateways: Count = Field(description="Gateways of residents served at the month's end")
    gateways_heard: Count = Field(description="Of which heard in the month's last 24 hours")
    alerts: Count = Field(description="Alerts opened in the month")
    alerts_by_kind: dict[str, dict[str, Count]] = Field(description="kind -> severity -> count")
    acknowledged: Count = Field(description="Of the month's alerts, acknowledged")
    ack_median_s: float | None = Field(
        description="Opened to first acknowledgement, median; null under 3 acknowledged"
    )
    ack_p90_s: float | None = Field(description="... 90th percentile (linear interpolation)")
    resolved: Count = Field(description="Alerts resolved in the month")
    resolved_by_outcome: dict[str, Count] = Field(description="outcome ('' none) -> count")
    calls_placed: Count = Field(description="Check-in calls to residents that rang")
    calls_answered: Count = Field(description="Of which a person picked up")
    answered_share: float | None = Field(
        description="answered / placed; null without calls or with either count withheld"
    )
    residents_called: Count = Field(description="With a routine round or alert call this month")
    residents_not_reached: Count = Field(description="Of which no call reached (no answer)")


def _figures_out(f: Figures, column: int, table: list[Line]) -> FiguresOut:
    """One column of the protected table as the API gives it: each count of the table, a
    withheld one null, every row's key present (0 included: the page's rows, the same keys)."""
    data: dict[str, Any] = asdict(f)
    data["answered_share"] = f.answered_share
    if f.acknowledged < SUPPRESS_BELOW:
        data["ack_median_s"] = data["ack_p90_s"] = None
    for row in table:
        value = row.values[column]
        if row.unit == "count" or (row.path == ("answered_share",) and value is None):
            *keys, last = row.path
            holder = data
            for key in keys:
                holder = holder.setdefault(key, {})
            holder[last] = None if isinstance(value, Withheld) else value
    return FiguresOut(**data)


class MonthlyReportOut(BaseModel):
    """The district's month, per dong in view and as a whole; counts only, small ones withheld."""

    month: str = Field(description="YYYY-MM, in `timezone`")
    since: datetime
    until: datetime = Field(description="The month's end, or now while it still runs")
    partial: bool
    timezone: str
    district: str
    suppressed_below: int = Field(
        SUPPRESS_BELOW,
        description=COUNT_NOTE + "; medians and percentiles null under this many acknowledged",
    )
    dongs: list[FiguresOut]
    district_total: FiguresOut

    @classmethod
    def of(cls, r: MonthlyReport) -> MonthlyReportOut:
        table = lines(r, "en")
        outs = [_figures_out(f, j, table) for j, f in enumerate((*r.dongs, r.total))]
        return cls(
            month=r.month.label, since=r.since, until=r.until, partial=r.partial,
            timezone=r.timezone, district=r.district, suppressed_below=SUPPRESS_BELOW,
            dongs=outs[:-1], district_total=outs[-1],
        )  # fmt: skip


def _day(moment: datetime, lang: str, with_year: bool = True) -> str:
    """'2026년 11월 1일' / '1 November 2026' (without the year: '11월 30일' / '30 November')."""
    if lang == "en":
        month = Month(moment.year, moment.month).english.split()[0]
        return f"{moment.day} {month} {moment.year}" if with_year else f"{moment.day} {month}"
    day = f"{moment.month}월 {moment.day}일"
    return f"{moment.year}년 {day}" if with_year else day


def period_text(report: MonthlyReport, lang: str) -> str:
    """'2026년 11월 1일 ~ 11월 30일 (한국 시간)'; a month still running ends at the report's
    moment: '2026년 12월 1일 ~ 12월 3일 10:00 현재 (한국 시간)'."""
    tz = ZoneInfo(report.timezone)
    since = report.since.astimezone(tz)
    zone = word(lang, "korea_time") if report.timezone == "Asia/Seoul" else report.timezone
    if report.partial:
        until = report.until.astimezone(tz)
        end = f"{_day(until, lang, with_year=False)} {until:%H:%M} {word(lang, 'as_of')}"
    else:
        end = _day(report.until.astimezone(tz) - timedelta(days=1), lang, with_year=False)
    return f"{_day(since, lang)} ~ {end} ({zone})"


def made_text(report: MonthlyReport, lang: str) -> str:
    """When the report was made, locally: '2026년 12월 3일 10:00'."""
    made = (report.made_at or report.until).astimezone(ZoneInfo(report.timezone))
    return f"{_day(made, lang)} {made:%H:%M}"


def heading(report: MonthlyReport, lang: str) -> str:
    """'종로구 안부 돌봄 월간 보고서 (2026년 11월)'."""
    month = report.month.english if lang == "en" else report.month.korean
    return f"{report.district} {word(lang, 'heading')} ({month})".strip()


def page_title(report: MonthlyReport, lang: str) -> str:
    """'종로구 월간 보고서 (2026년 11월)'."""
    month = report.month.english if lang == "en" else report.month.korean
    return f"{report.district} {word(lang, 'title')} ({month})".strip()
