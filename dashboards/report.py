"""The district's monthly report for supervisors and admins (Action.REPORTS_READ): a Korean-first
page that prints on A4, the same table as a CSV for Excel, and the JSON API, every one with small
counts withheld (dashboards.report_view.protect). Over the dongs the actor sees
(dashboards.authz.visible_dongs); alerts.report computes it in one read-only snapshot under a
statement timeout (503 in Korean first past it). Without ?month= the last full month; a month
that cannot be read, or has not begun, is answered 422 in Korean first. A month that has ended
is kept in this process for CACHE_SECONDS per district, month and dongs in view: reloading
the page, printing it and downloading its CSV ask the database once."""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import threading
import time
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import OAuth2PasswordBearer

from alerts.queries import dong_list
from alerts.report import (
    STATEMENT_TIMEOUT,
    InvalidMonth,
    Month,
    MonthlyReport,
    ReportTimeout,
    last_full_month,
    monthly_report,
)
from alerts.report import reportable as check_reportable
from dashboards.auth import CareManager
from dashboards.authz import Action, api_actor, page_actor, visible_dongs
from dashboards.deps import Deps, get_deps, language
from dashboards.i18n import pick, role_label
from dashboards.report_view import (
    WORDS,
    MonthlyReportOut,
    cell,
    columns,
    csv_bytes,
    csv_filename,
    heading,
    lines,
    made_text,
    page_title,
    period_text,
    word,
)
from dashboards.routes import render

PAGE = "/reports/monthly"
REPORT_TIMEOUT = STATEMENT_TIMEOUT  # per statement of one report
CACHE_SECONDS = 300.0
CACHE_ENTRIES = 64
RETRY_AFTER_S = "30"

AppDeps = Annotated[Deps, Depends(get_deps)]
Lang = Annotated[str, Depends(language)]
PageReader = Annotated[CareManager, Depends(page_actor(Action.REPORTS_READ))]
ApiReader = Annotated[CareManager, Depends(api_actor(Action.REPORTS_READ))]
MonthParam = Annotated[
    str | None,
    Query(
        description="YYYY-MM (ASCII digits) in the district's time zone; default: the last "
        "full month"
    ),
]
CacheKey = tuple[str, str, tuple[str, ...]]


def _month(deps: Deps, text: str | None) -> Month:
    """The asked month (InvalidMonth when unreadable or still ahead), else the last full one."""
    tz = ZoneInfo(deps.settings.timezone)
    now = deps.clock.now()
    if text is None or not text.strip():
        return last_full_month(now, tz)
    return check_reportable(Month.parse(text), now, tz)


class ClosedMonths:
    """Reports of months that have ended, kept CACHE_SECONDS (monotonic) in this process; a
    month still running is always computed afresh."""

    def __init__(self) -> None:
        self._kept: dict[CacheKey, tuple[float, MonthlyReport]] = {}
        self._lock = threading.Lock()

    def report(self, deps: Deps, actor: CareManager, month: Month) -> MonthlyReport:
        tz = ZoneInfo(deps.settings.timezone)
        now = deps.clock.now()
        dongs = visible_dongs(actor)
        key = (actor.district, month.label, tuple(dong_list(dongs)))
        closed = month.next().start(tz) <= now
        with self._lock:
            found = self._kept.get(key)
            if closed and found is not None and found[0] > time.monotonic():
                return found[1]
        with deps.db.connection() as conn:
            made = monthly_report(conn, dongs, month, now, tz, actor.district, REPORT_TIMEOUT)
        if closed:
            with self._lock:
                moment = time.monotonic()
                self._kept = {k: v for k, v in self._kept.items() if v[0] > moment}
                while len(self._kept) >= CACHE_ENTRIES:
                    del self._kept[min(self._kept, key=lambda k: self._kept[k][0])]
                self._kept[key] = (moment + CACHE_SECONDS, made)
        return made


def _refused_page(request: Request, deps: Deps, lang: str, actor: CareManager, status: int,
                  message: tuple[str, str]) -> Response:  # fmt: skip
    response = render(request, deps, lang, "report_error.html", actor, status_code=status,
                      message=pick(lang, message), back=PAGE, back_words=word(lang, "back"))  # fmt: skip
    if status == 503:
        response.headers["retry-after"] = RETRY_AFTER_S
    return response


def _disposition(report: MonthlyReport, lang: str) -> str:
    """attachment with an ASCII name for old clients and the Korean one (RFC 6266, 5987)."""
    fallback = f"anbu-monthly-{report.month.label}.csv"
    return (
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(csv_filename(report, lang))}"
    )


def report_router() -> APIRouter:
    """GET /reports/monthly (page), /reports/monthly.csv, /api/v1/reports/monthly."""
    router = APIRouter()
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    kept = ClosedMonths()
    refusals: dict[int | str, dict[str, Any]] = {
        403: {"description": "Not a supervisor or admin"},
        422: {"description": "The month cannot be read or has not begun (detail, Korean first)"},
        503: {"description": "The report ran past its time and was stopped; try again later"},
    }

    @router.get(PAGE, include_in_schema=False)
    def report_page(
        request: Request, deps: AppDeps, lang: Lang, actor: PageReader, month: MonthParam = None
    ) -> Response:
        """The month's table, a column per dong and one for the district."""
        try:
            chosen = _month(deps, month)
            report = kept.report(deps, actor, chosen)
        except InvalidMonth as error:
            return _refused_page(request, deps, lang, actor, 422, (error.ko, error.en))
        except ReportTimeout:
            return _refused_page(request, deps, lang, actor, 503, WORDS["timeout"])
        now = deps.clock.now()
        tz = ZoneInfo(deps.settings.timezone)
        following = chosen.next()
        return render(
            request, deps, lang, "report.html", actor, report=report,
            rows=lines(report, lang), heads=columns(report, lang), cell=cell,
            w=lambda key: word(lang, key),
            previous=None if chosen.first else chosen.previous().label,
            following=following.label if following.start(tz) <= now else None,
            latest=Month.of(now, tz).label, heading=heading(report, lang),
            title=page_title(report, lang), period=period_text(report, lang),
            made=made_text(report, lang),
            author=f"{actor.display_name} ({role_label(lang, actor.role)})",
        )  # fmt: skip

    @router.get(PAGE + ".csv", include_in_schema=False)
    def report_csv(
        request: Request, deps: AppDeps, lang: Lang, actor: PageReader, month: MonthParam = None
    ) -> Response:
        """The table as CSV (UTF-8 with BOM), named after the district and the month."""
        try:
            report = kept.report(deps, actor, _month(deps, month))
        except InvalidMonth as error:
            return _refused_page(request, deps, lang, actor, 422, (error.ko, error.en))
        except ReportTimeout:
            return _refused_page(request, deps, lang, actor, 503, WORDS["timeout"])
        return Response(
            csv_bytes(report, lang),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": _disposition(report, lang)},
        )

    @router.get(
        "/api/v1/reports/monthly",
        response_model=MonthlyReportOut,
        dependencies=[Security(scheme)],
        responses=refusals,
        tags=["api"],
    )
    def report_api(deps: AppDeps, actor: ApiReader, month: MonthParam = None) -> Any:
        """The district's month per dong in view and as a whole: residents served, enrolled
        and ended (by reason), gateways heard, alerts by kind and severity, time to acknowledge,
        outcomes, check-in calls placed and answered, residents not reached. Counts only, with
        the page's suppression: a count of 1 or 2, and any count from which one could be
        worked back out of a total, is null (`suppressed_below`: 3)."""
        try:
            report = kept.report(deps, actor, _month(deps, month))
        except InvalidMonth as error:
            return JSONResponse({"detail": error.ko, "detail_en": error.en}, status_code=422)
        except ReportTimeout:
            ko, en = WORDS["timeout"]
            return JSONResponse({"detail": ko, "detail_en": en}, status_code=503,
                                headers={"retry-after": RETRY_AFTER_S})  # fmt: skip
        return MonthlyReportOut.of(report)

    return router
