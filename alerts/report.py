"""The district's monthly report: counts per dong and for the whole district over one calendar
month in the district's time zone, computed in SQL; counts only, no resident is ever named.

Every count is given to the dong the resident belonged to at the moment of the event counted
(enrolled, ended, an alert opened or resolved, a call placed; the month's end for residents
served, their gateways and residents not reached), read from the transfers recorded in
anbu.resident_changes: a resident who moved in the month counts in each dong for what happened
there. The district's figures are the database's own (GROUPING SETS), not sums of rounded
parts: a median of the district is not a mean of its dongs' medians.

The words, from the calls' own tables: a call is *answered* when a person picked up (a keypad or
spoken answer, or a line that completed without a machine: calls.outcomes counts that as
answered but unclear); a resident is *reached* by an answer that settles a check-in (OK, unwell,
help, emergency: a round finishes only on those, calls.checkin_policy.OUTCOME_NEXT). Time to
acknowledge runs from an alert's opening to its first acknowledgement, whenever that came (an
alert opened on the last evening counts with the acknowledgement of the next morning).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from alerts.queries import Dongs, dong_list
from calls.checkin_policy import OUTCOME_NEXT
from calls.dialer import CANCELED
from calls.outcomes import LOST_STATUS
from core.domain import CallOutcome

MIN_YEAR = 2000
# Calls to the resident (an alert's check-in, a routine round's); not a care manager's.
RESIDENT_CALLS = ("check_in", "routine")
# Dialled calls that never rang anyone: cancelled in the queue, or lost before Twilio took them.
UNRUNG_STATUSES = (CANCELED, LOST_STATUS)
# Answers that settle a check-in: the resident was reached.
REACHED = tuple(sorted(o.value for o, (final, _) in OUTCOME_NEXT.items() if final is not None))
# A person picked up: a settling answer, "call me later", or an answer nobody understood.
ANSWERED = tuple(sorted({*REACHED, CallOutcome.CALL_BACK_LATER.value, CallOutcome.UNCLEAR.value}))
# Ingest refuses readings stamped far ahead; a reading buffered longer than this before it was
# received is not looked for when asking whether its gateway was heard (the bound lets the
# readings' partitions or chunks be pruned).
READING_TS_SLACK = timedelta(days=1)
HEARD_WINDOW = timedelta(hours=24)
# Each of a report's statements may run this long; then it is cancelled (ReportTimeout).
STATEMENT_TIMEOUT = timedelta(seconds=20)

# ASCII digits only: \d would take '２０２６-１１' or Arabic-Indic digits too.
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})", re.ASCII)
_MONTH_NAMES_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
                   "September", "October", "November", "December")  # fmt: skip


class ReportTimeout(RuntimeError):
    """The report's statements ran past their time (STATEMENT_TIMEOUT) and were cancelled."""


class InvalidMonth(ValueError):
    """A month that cannot be reported: unreadable, before MIN_YEAR, or not yet begun."""

    def __init__(self, code: str, ko: str, en: str) -> None:
        super().__init__(en)
        self.code = code
        self.ko = ko
        self.en = en


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month, read in the district's time zone."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 1 <= self.year <= 9998:
            raise _unreadable()

    @classmethod
    def parse(cls, text: str) -> Month:
        """'2026-11' -> Month(2026, 11); InvalidMonth otherwise."""
        found = _MONTH.fullmatch(text.strip())
        if found is None:
            raise _unreadable()
        if int(found[1]) < MIN_YEAR:
            raise InvalidMonth(
                "too_old",
                f"{MIN_YEAR}년 1월 이후의 달만 볼 수 있습니다.",
                f"Only months from January {MIN_YEAR} can be reported.",
            )
        return cls(int(found[1]), int(found[2]))

    @classmethod
    def of(cls, moment: datetime, tz: ZoneInfo) -> Month:
        """The month `moment` falls in, locally."""
        local = moment.astimezone(tz)
        return cls(local.year, local.month)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def korean(self) -> str:
        """'2026년 11월'."""
        return f"{self.year}년 {self.month}월"

    @property
    def english(self) -> str:
        """'November 2026'."""
        return f"{_MONTH_NAMES_EN[self.month - 1]} {self.year}"

    @property
    def first(self) -> bool:
        """The earliest month that can be reported (its previous one cannot)."""
        return (self.year, self.month) <= (MIN_YEAR, 1)

    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def start(self, tz: ZoneInfo) -> datetime:
        """Local midnight of the first day (e.g. 15:00 UTC the day before, in Seoul)."""
        return datetime(self.year, self.month, 1, tzinfo=tz)


def _unreadable() -> InvalidMonth:
    return InvalidMonth(
        "format",
        "월을 읽을 수 없습니다. YYYY-MM 형식으로 입력해 주세요 (예: 2026-11).",
        "The month could not be read; give it as YYYY-MM (e.g. 2026-11).",
    )


def last_full_month(now: datetime, tz: ZoneInfo) -> Month:
    """The month before the one `now` falls in, locally."""
    return Month.of(now, tz).previous()


def reportable(month: Month, now: datetime, tz: ZoneInfo) -> Month:
    """`month`, when it has begun by `now`; InvalidMonth for a month still ahead."""
    if month.start(tz) > now:
        raise InvalidMonth(
            "future",
            f"{month.korean}은 아직 시작되지 않았습니다. 이번 달이나 그 이전 달을 골라 주세요.",
            f"{month.english} has not begun yet; choose this month or an earlier one.",
        )
    return month


@dataclass(frozen=True, slots=True)
class Figures:
    """One dong's month, or the district's (dong_code None)."""

    dong_code: str | None
    dong_name: str
    residents_at_end: int = 0  # served at the month's end (paused ones included)
    residents_new: int = 0  # enrolled in the month
    residents_ended: int = 0  # service ended in the month
    ended_by_reason: dict[str, int] = field(default_factory=dict)
    gateways: int = 0  # of residents served at the month's end
    gateways_heard: int = 0  # of which heard in the month's last 24 hours
    alerts: int = 0  # opened in the month
    alerts_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> severity
    acknowledged: int = 0  # of the month's alerts, acknowledged (by now)
    ack_median_s: float | None = None
    ack_p90_s: float | None = None
    resolved: int = 0  # resolved in the month
    resolved_by_outcome: dict[str, int] = field(default_factory=dict)
    calls_placed: int = 0  # check-in calls to residents that rang
    calls_answered: int = 0
    residents_called: int = 0  # with a check-in round or an alert call in the month
    residents_not_reached: int = 0  # of which no answer settled any

    @property
    def answered_share(self) -> float | None:
        """Answered of placed (0.75), None when no call was placed."""
        return self.calls_answered / self.calls_placed if self.calls_placed else None


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    """The month [since, until) of the dongs in view; `partial` while the month still runs
    (until is then the moment the report was made)."""

    month: Month
    since: datetime
    until: datetime
    partial: bool
    timezone: str
    district: str
    dongs: list[Figures]
    total: Figures
    made_at: datetime | None = None  # when it was computed


# Each resident's dongs over time, from the transfers audited in anbu.resident_changes: the
# dong `dong_code` from `since` (NULL: since enrolment) to `until` (NULL: still). A moment t
# lies in a span when (since IS NULL OR since <= t) AND (until IS NULL OR t < until).
# Only residents ever in the dongs asked for (now, or before or after a transfer) are read:
# resident_changes_dong (migration 0063) serves the transfers.
_SPANS = """
WITH ours AS (
    SELECT id AS resident_id FROM anbu.resident WHERE dong_code = ANY(%(dongs)s)
    UNION
    SELECT resident_id FROM anbu.resident_changes
     WHERE field = 'dong_code'
       AND (old_value = ANY(%(dongs)s) OR new_value = ANY(%(dongs)s))
), moves AS (
    SELECT resident_id, at, old_value,
           lag(at) OVER (PARTITION BY resident_id ORDER BY at, id) AS prev_at
      FROM anbu.resident_changes
     WHERE field = 'dong_code' AND resident_id IN (SELECT resident_id FROM ours)
), spans AS (
    SELECT r.id AS resident_id, r.dong_code, last.at AS since, NULL::timestamptz AS until
      FROM anbu.resident r
      LEFT JOIN (SELECT resident_id, max(at) AS at FROM moves GROUP BY resident_id) last
             ON last.resident_id = r.id
     WHERE r.id IN (SELECT resident_id FROM ours)
    UNION ALL
    SELECT resident_id, old_value, prev_at, at FROM moves WHERE old_value IS NOT NULL
)"""

# served at the month's end: enrolled before it, not ended by then, in the span holding it
_SERVED_AT_END = """
      r.created_at < %(until)s
  AND COALESCE(r.ended_at >= %(until)s, r.status <> 'ended')
  AND (s.since IS NULL OR s.since < %(until)s) AND (s.until IS NULL OR s.until >= %(until)s)"""

_RESIDENTS = """{spans}
SELECT GROUPING(x.dong_code) = 1, x.dong_code,
       count(*) FILTER (WHERE x.at_end), count(*) FILTER (WHERE x.new),
       count(*) FILTER (WHERE x.ended)
  FROM (SELECT s.dong_code, ({served}) AS at_end,
               (r.created_at >= %(since)s AND r.created_at < %(until)s
                AND (s.since IS NULL OR s.since <= r.created_at)
                AND (s.until IS NULL OR r.created_at < s.until)) AS new,
               (r.ended_at >= %(since)s AND r.ended_at < %(until)s
                AND (s.since IS NULL OR s.since <= r.ended_at)
                AND (s.until IS NULL OR r.ended_at < s.until)) AS ended
          FROM spans s JOIN anbu.resident r ON r.id = s.resident_id
         WHERE s.dong_code = ANY(%(dongs)s)) x
 GROUP BY GROUPING SETS ((x.dong_code), ())"""

_ENDED = """{spans}
SELECT GROUPING(x.dong_code) = 1, x.dong_code, x.reason, count(*)
  FROM (SELECT s.dong_code, COALESCE(r.end_reason, 'other') AS reason
          FROM spans s JOIN anbu.resident r ON r.id = s.resident_id
         WHERE s.dong_code = ANY(%(dongs)s)
           AND r.ended_at >= %(since)s AND r.ended_at < %(until)s
           AND (s.since IS NULL OR s.since <= r.ended_at)
           AND (s.until IS NULL OR r.ended_at < s.until)) x
 GROUP BY GROUPING SETS ((x.dong_code, x.reason), (x.reason))"""

_GATEWAYS = """{spans}
SELECT GROUPING(x.dong_code) = 1, x.dong_code, count(*), count(*) FILTER (WHERE x.heard)
  FROM (SELECT s.dong_code,
               (g.last_seen_at >= %(heard_from)s AND g.last_seen_at < %(until)s
                OR EXISTS (SELECT 1 FROM anbu.sensor n JOIN anbu.readings d ON d.sensor_id = n.id
                            WHERE n.gateway_id = g.id
                              AND d.ts >= %(ts_from)s AND d.ts < %(ts_until)s
                              AND d.received_at >= %(heard_from)s
                              AND d.received_at < %(until)s)) AS heard
          FROM anbu.gateway g
          JOIN anbu.resident r ON r.id = g.resident_id
          JOIN spans s ON s.resident_id = r.id
         WHERE s.dong_code = ANY(%(dongs)s) AND {served}
           AND (g.revoked_at IS NULL OR g.revoked_at >= %(until)s)
           AND (g.revocation_pending IS NULL OR g.revocation_pending >= %(until)s)) x
 GROUP BY GROUPING SETS ((x.dong_code), ())"""

_ALERTS = """{spans}
SELECT GROUPING(x.dong_code) = 1, x.dong_code, x.kind, x.severity, count(*)
  FROM (SELECT s.dong_code, a.kind, a.severity
          FROM anbu.alerts a JOIN spans s ON s.resident_id = a.resident_id
         WHERE s.dong_code = ANY(%(dongs)s)
           AND a.opened_at >= %(since)s AND a.opened_at < %(until)s
           AND (s.since IS NULL OR s.since <= a.opened_at)
           AND (s.until IS NULL OR a.opened_at < s.until)) x
 GROUP BY GROUPING SETS ((x.dong_code, x.kind, x.severity), (x.kind, x.severity))"""

# from an alert's opening to its first acknowledgement (the audit's, else the alert row's)
_ACKNOWLEDGED = """{spans}
SELECT GROUPING(x.dong_code) = 1, x.dong_code, count(*), count(x.waited),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY x.waited),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY x.waited)
  FROM (SELECT s.dong_code,
               extract(epoch FROM COALESCE(
                   (SELECT min(e.at) FROM anbu.alert_events e
                     WHERE e.alert_id = a.id AND e.to_state = 'acknowledged'),
                   a.acknowledged_at) - a.opened_at) AS waited
          FROM anbu.alerts a JOIN spans s ON s.resident_id = a.resident_id
         WHERE s.dong_code = ANY(%(dongs)s)
           AND a.opened_at >= %(since)s AND a.opened_at < %(until)s
           AND (s.since IS NULL OR s.since <= a.opened_at)
           AND (s.until IS NULL OR a.opened_at < s.until)) x
 GROUP BY GROUPING SETS ((x.dong_code), ())"""

_RESOLVED = """{spans}
SELECT GROUPING(x.dong_code) = 1, x.dong_code, x.outcome, count(*)
  FROM (SELECT s.dong_code, COALESCE(a.outcome, '') AS outcome
          FROM anbu.alerts a JOIN spans s ON s.resident_id = a.resident_id
         WHERE s.dong_code = ANY(%(dongs)s) AND a.state = 'resolved'
           AND a.resolved_at >= %(since)s AND a.resolved_at < %(until)s
           AND (s.since IS NULL OR s.since <= a.resolved_at)
           AND (s.until IS NULL OR a.resolved_at < s.until)) x
 GROUP BY GROUPING SETS ((x.dong_code, x.outcome), (x.outcome))"""

# a call to the resident that rang, placed (dialled) in the month; created_at bounds it for
# the BRIN index (a call is created before it is dialled, and waits minutes, not days)
_PLACED = """
      c.purpose = ANY(%(purposes)s) AND c.dial_state = 'dialled'
  AND c.status <> ALL(%(unrung)s)
  AND c.created_at >= %(created_from)s AND c.created_at < %(until)s
  AND COALESCE(c.dialled_at, c.created_at) >= %(since)s
  AND COALESCE(c.dialled_at, c.created_at) < %(until)s"""

_CALLS = """{spans}
SELECT GROUPING(x.dong_code) = 1, x.dong_code, count(*), count(*) FILTER (WHERE x.answered)
  FROM (SELECT s.dong_code,
               (c.answer = ANY(%(answered)s) OR c.outcome = ANY(%(answered)s)) AS answered
          FROM anbu.calls c JOIN spans s ON s.resident_id = c.resident_id
         WHERE s.dong_code = ANY(%(dongs)s) AND {placed}
           AND (s.since IS NULL OR s.since <= COALESCE(c.dialled_at, c.created_at))
           AND (s.until IS NULL OR COALESCE(c.dialled_at, c.created_at) < s.until)) x
 GROUP BY GROUPING SETS ((x.dong_code), ())"""

# residents with a routine round due in the month (a cancelled one excepted: the service
# ended) or an alert's check-in call placed in it, and whether any of them reached them
_NOT_REACHED = """{spans}, rounds AS (
    SELECT id, resident_id, state FROM anbu.checkin_rounds
     WHERE slot >= %(since)s AND slot < %(until)s AND state <> 'cancelled'
), tried AS (
    SELECT resident_id, state = ANY(%(reached)s) AS reached FROM rounds
    UNION ALL
    SELECT k.resident_id, (c.answer = ANY(%(reached)s) OR c.outcome = ANY(%(reached)s))
      FROM rounds k JOIN anbu.calls c ON c.round_id = k.id
    UNION ALL
    SELECT c.resident_id, (c.answer = ANY(%(reached)s) OR c.outcome = ANY(%(reached)s))
      FROM anbu.calls c
     WHERE c.alert_id IS NOT NULL AND {placed}
), tried_residents AS (
    SELECT resident_id, bool_or(COALESCE(reached, false)) AS reached
      FROM tried GROUP BY resident_id
)
SELECT GROUPING(s.dong_code) = 1, s.dong_code, count(*), count(*) FILTER (WHERE NOT t.reached)
  FROM tried_residents t
  JOIN spans s ON s.resident_id = t.resident_id
 WHERE s.dong_code = ANY(%(dongs)s)
   AND (s.since IS NULL OR s.since < %(until)s) AND (s.until IS NULL OR s.until >= %(until)s)
 GROUP BY GROUPING SETS ((s.dong_code), ())"""


def _query(template: str) -> sql.Composed:
    """A report query with its shared fragments put in (constants only, no input)."""
    return sql.SQL(template).format(
        spans=sql.SQL(_SPANS), served=sql.SQL(_SERVED_AT_END), placed=sql.SQL(_PLACED)
    )


Key = str | None  # a dong's code, or None for the district


def _rows(conn: psycopg.Connection[Any], template: str, params: dict[str, Any]) -> Iterable[Any]:
    """(key, *values) of each row: the district's row (GROUPING = 1) keyed None."""
    for whole, dong, *values in conn.execute(_query(template), params):
        yield (None if whole else str(dong), *values)


def monthly_report(
    conn: psycopg.Connection[Any],
    dongs: Dongs,
    month: Month,
    now: datetime,
    tz: ZoneInfo,
    district: str = "",
    timeout: timedelta = STATEMENT_TIMEOUT,
) -> MonthlyReport:
    """The month of `dongs` (the actor's view, dashboards.authz.visible_dongs), per dong in
    code order and for all of them together; a month still running is counted up to `now`.

    Every statement reads one snapshot (a REPEATABLE READ, READ ONLY transaction begun here on
    `conn`, which must have none open); a statement running past `timeout` (SET LOCAL
    statement_timeout) raises ReportTimeout, the transaction rolled back."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("monthly_report begins its own transaction")
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                (f"{max(1, int(timeout.total_seconds() * 1000))}ms",),
            )
            return _compute(conn, dongs, month, now, tz, district)
    except psycopg.errors.QueryCanceled as error:
        raise ReportTimeout("the monthly report ran past its statement timeout") from error


def _compute(
    conn: psycopg.Connection[Any],
    dongs: Dongs,
    month: Month,
    now: datetime,
    tz: ZoneInfo,
    district: str,
) -> MonthlyReport:
    since = month.start(tz)
    end = month.next().start(tz)
    until = min(end, now)
    codes = dong_list(dongs)
    p = {"dongs": codes, "since": since, "until": until, "heard_from": until - HEARD_WINDOW,
         "ts_from": until - HEARD_WINDOW - READING_TS_SLACK, "ts_until": until + READING_TS_SLACK,
         "created_from": since - READING_TS_SLACK, "purposes": list(RESIDENT_CALLS),
         "unrung": list(UNRUNG_STATUSES), "answered": list(ANSWERED),
         "reached": list(REACHED)}  # fmt: skip
    names = dict(
        conn.execute(
            "SELECT code, name FROM anbu.dong WHERE code = ANY(%s) ORDER BY code", (codes,)
        ).fetchall()
    )
    facts: dict[Key, dict[str, Any]] = {code: {} for code in names}
    facts[None] = {}

    def put(key: Key, **values: Any) -> None:
        facts.setdefault(key, {}).update(values)

    for key, at_end, new, ended in _rows(conn, _RESIDENTS, p):
        put(key, residents_at_end=at_end, residents_new=new, residents_ended=ended)
    for key, reason, n in _rows(conn, _ENDED, p):
        facts.setdefault(key, {}).setdefault("ended_by_reason", {})[reason] = n
    for key, total, heard in _rows(conn, _GATEWAYS, p):
        put(key, gateways=total, gateways_heard=heard)
    for key, kind, severity, n in _rows(conn, _ALERTS, p):
        by_kind = facts.setdefault(key, {}).setdefault("alerts_by_kind", {})
        by_kind.setdefault(kind, {})[severity] = n
    for key, opened, acked, median, p90 in _rows(conn, _ACKNOWLEDGED, p):
        put(key, alerts=opened, acknowledged=acked, ack_median_s=_seconds(median),
            ack_p90_s=_seconds(p90))  # fmt: skip
    for key, outcome, n in _rows(conn, _RESOLVED, p):
        facts.setdefault(key, {}).setdefault("resolved_by_outcome", {})[outcome] = n
    for key, placed, answered in _rows(conn, _CALLS, p):
        put(key, calls_placed=placed, calls_answered=answered)
    for key, called, not_reached in _rows(conn, _NOT_REACHED, p):
        put(key, residents_called=called, residents_not_reached=not_reached)

    def figures(key: Key) -> Figures:
        values = facts.get(key, {})
        resolved = sum(values.get("resolved_by_outcome", {}).values())
        name = district if key is None else names.get(key, key)
        return Figures(key, name, resolved=resolved, **values)

    return MonthlyReport(
        month, since, until, until < end, tz.key, district,
        [figures(code) for code in names], figures(None), now,
    )  # fmt: skip


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)
