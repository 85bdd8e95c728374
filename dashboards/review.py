"""The dong's weekly review: each resident's last 7 days beside their usual week.

Read from the daily activity summary (`anbu.activity_daily`, kept from the hourly one by
triggers), the hours not yet over taken out of it from the hourly one (`anbu.activity_hourly`),
and from the findings, never from raw readings: a person's doings this week against
the mean of the 4 weeks before, the small hours' activity, the days with any data at all, and
the week's findings by kind (routine changes and night activity are raised for this review and
ring nobody). Residents whose week departs most come first. Always scoped to the dongs an actor
may see; no phone, no notes.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, overload
from zoneinfo import ZoneInfo

import psycopg

from alerts.queries import Dongs, dong_list
from calls.conversation import programme
from core.db import keyset_page
from dashboards import conversation_view
from dashboards.residents import local_days_start

log = logging.getLogger(__name__)

WEEKS_BEFORE = 4  # the usual week is the mean of this many weeks before the last 7 days
NIGHT_HOURS = (0, 1, 2, 3, 4, 5)  # local hours counted as the small hours (as activity_daily's)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
REVIEW_KINDS = ("routine_change", "night_activity")  # raised for this review only
_FOR_REVIEW = frozenset(REVIEW_KINDS)

_KEPT = "SELECT kept_from FROM anbu.activity_daily_zone WHERE tz = %s"
# The kept days from the daily rows, each day's hours not yet over taken out again (at most the
# hour under way, and any a wrong clock dated ahead), and a day's first reading only if it is in
# an hour that is over (the hours after it are later still); the span's days before its zone's
# first kept day (all of them, when the zone's days are not kept) from the hours that are over:
# the review's figures summed over those, one row a local day and resident (and one for each
# hour taken out).
_ACTIVITY = """
WITH days AS (
    SELECT d.resident_id, d.day, d.activity, d.night,
           CASE WHEN d.first_reading + interval '1 hour' <= %(now)s THEN d.first_reading END
             AS first_reading
      FROM anbu.activity_daily d JOIN anbu.resident r ON r.id = d.resident_id
     WHERE %(kept)s AND r.dong_code = ANY(%(dongs)s) AND d.tz = %(tz)s
       AND d.day >= %(daily_day)s
    UNION ALL
    SELECT a.resident_id, (a.hour AT TIME ZONE %(tz)s)::date, -a.activity,
           CASE WHEN extract(hour FROM a.hour AT TIME ZONE %(tz)s) = ANY(%(night)s)
                THEN -a.activity ELSE 0 END,
           NULL
      FROM anbu.activity_hourly a JOIN anbu.resident r ON r.id = a.resident_id
     WHERE %(kept)s AND r.dong_code = ANY(%(dongs)s) AND a.hour >= %(daily)s
       AND a.hour > %(now)s - interval '1 hour'
    UNION ALL
    SELECT a.resident_id, (a.hour AT TIME ZONE %(tz)s)::date, sum(a.activity),
           sum(a.activity) FILTER (WHERE extract(hour FROM a.hour AT TIME ZONE %(tz)s)
                                         = ANY(%(night)s)),
           min(a.hour) FILTER (WHERE a.readings > 0)
      FROM anbu.activity_hourly a JOIN anbu.resident r ON r.id = a.resident_id
     WHERE r.dong_code = ANY(%(dongs)s) AND a.hour >= %(lo)s AND a.hour < %(daily)s
       AND a.hour + interval '1 hour' <= %(now)s
     GROUP BY 1, 2
)
SELECT resident_id,
       sum(activity) FILTER (WHERE day >= %(week_day)s),
       sum(activity) FILTER (WHERE day < %(week_day)s),
       count(*) FILTER (WHERE day >= %(week_day)s AND first_reading IS NOT NULL),
       sum(night) FILTER (WHERE day >= %(week_day)s),
       min(first_reading)
  FROM days GROUP BY resident_id
"""
_BASE_LOCK = "SELECT pg_try_advisory_xact_lock(1919252066, 0)"  # 'revb' (migration 0079)
_BASE_LOCK_WAIT = "SELECT pg_advisory_xact_lock(1919252066, 0)"
_BASE_FILL = """
INSERT INTO anbu.review_base (tz, resident_id, as_of, week_activity, before_activity,
                              days_with_data, night, first_reading)
SELECT %(tz)s, r.id, %(as_of)s,
       coalesce(sum(d.activity) FILTER (WHERE d.day >= %(week_day)s), 0),
       coalesce(sum(d.activity) FILTER (WHERE d.day < %(week_day)s), 0),
       count(d.first_reading) FILTER (WHERE d.day >= %(week_day)s),
       coalesce(sum(d.night) FILTER (WHERE d.day >= %(week_day)s), 0),
       min(d.first_reading)
  FROM anbu.resident r
  LEFT JOIN anbu.activity_daily d ON d.resident_id = r.id AND d.tz = %(tz)s
                                 AND d.day >= %(daily_day)s AND d.day < %(as_of)s
 WHERE r.dong_code = ANY(%(dongs)s) AND r.status <> 'ended'
   AND NOT EXISTS (SELECT 1 FROM anbu.review_base b  -- only those whose sums are missing
                    WHERE b.tz = %(tz)s AND b.resident_id = r.id AND b.as_of = %(as_of)s)
 GROUP BY r.id
ON CONFLICT DO NOTHING
"""
FILL_ANALYZE = 100  # residents filled at once that refresh review_base's statistics
_BASE_PRUNE = "DELETE FROM anbu.review_base WHERE tz = %(tz)s AND as_of < %(as_of)s - 1"
# Once a local day, the same review from each resident's complete days summed once
# (anbu.review_base, migration 0079) and today's daily row, the hours not yet over taken out,
# with each resident's own columns, as ReviewRow takes them: driven by the dong's residents,
# each part an index lookup of theirs (their days themselves when their sums are missing: not
# yet filled today, or a change took them away; the last column says so, and the review fills
# them after it has read its rows). In review_place's order but for the rows for review (the
# findings and answers that raise them are read apart): the change as review_place computes it
# (the same IEEE double arithmetic), the home in code point order (its UTF-8 bytes, whatever
# the database's encoding and collation: as Python compares str), the id; sorting 5,000 rows in Python was a sixth of the page. Run
# without JIT: the per-resident lookups cost it above the JIT threshold, and compiling took
# longer than the query.
_WEEK_BASED = """
SELECT * FROM (
SELECT r.id, r.home, r.display_name, r.status,
       (coalesce(b.week_activity, m.this, 0) + coalesce(t.this, 0) - coalesce(h.this, 0))::int8
         AS activity,
       CASE WHEN least(b.first_reading, m.first_reading, t.first_reading) <= %(full_from)s
            THEN coalesce(b.before_activity, m.before, 0)::float8 / %(weeks_before)s END AS usual,
       (coalesce(b.night, m.night, 0) + coalesce(t.night, 0) - coalesce(h.night, 0))::int8,
       (coalesce(b.days_with_data, m.days, 0) + coalesce(t.days, 0))::int8,
       b.resident_id IS NULL
  FROM anbu.resident r
  LEFT JOIN anbu.review_base b
         ON b.tz = %(tz)s AND b.resident_id = r.id AND b.as_of = %(as_of)s
  LEFT JOIN LATERAL (
       SELECT sum(d.activity) FILTER (WHERE d.day >= %(week_day)s) AS this,
              sum(d.activity) FILTER (WHERE d.day < %(week_day)s) AS before,
              count(d.first_reading) FILTER (WHERE d.day >= %(week_day)s) AS days,
              sum(d.night) FILTER (WHERE d.day >= %(week_day)s) AS night,
              min(d.first_reading) AS first_reading
         FROM anbu.activity_daily d
        WHERE b.resident_id IS NULL AND d.tz = %(tz)s AND d.resident_id = r.id
          AND d.day >= %(daily_day)s AND d.day < %(as_of)s) m ON true
  LEFT JOIN LATERAL (
       SELECT sum(d.activity) AS this,
              count(*) FILTER (WHERE d.first_reading + interval '1 hour' <= %(now)s) AS days,
              sum(d.night) AS night,
              min(d.first_reading) FILTER (WHERE d.first_reading + interval '1 hour' <= %(now)s)
                AS first_reading
         FROM anbu.activity_daily d
        WHERE d.tz = %(tz)s AND d.resident_id = r.id AND d.day >= %(as_of)s) t ON true
  LEFT JOIN LATERAL (
       SELECT sum(a.activity) AS this,
              sum(a.activity) FILTER (WHERE extract(hour FROM a.hour AT TIME ZONE %(tz)s)
                                            = ANY(%(night)s)) AS night
         FROM anbu.activity_hourly a
        WHERE a.resident_id = r.id AND a.hour >= %(daily)s
          AND a.hour > %(now)s - interval '1 hour') h ON true
 WHERE r.dong_code = ANY(%(dongs)s) AND r.status <> 'ended'
) w
 ORDER BY CASE WHEN w.usual > 0 THEN w.activity / w.usual - 1.0::float8 ELSE 0.0::float8 END,
          convert_to(w.home, 'UTF8'), w.id
"""
_FINDINGS = """
SELECT f.resident_id, f.kind, count(*)
  FROM anbu.findings f JOIN anbu.resident r ON r.id = f.resident_id
 WHERE r.dong_code = ANY(%(dongs)s) AND f.raised_at >= %(week)s AND f.raised_at <= %(now)s
 GROUP BY f.resident_id, f.kind
"""
_RESIDENTS = """
SELECT id, home, display_name, status FROM anbu.resident
 WHERE dong_code = ANY(%(dongs)s) AND status <> 'ended' ORDER BY dong_code, home
"""


class ReviewRow(NamedTuple):
    """One resident's week (a named tuple: a dong's 5,000 are made for each first page, and a
    frozen dataclass's __init__ was a sixth of the page's time)."""

    resident_id: int
    home: str
    display_name: str
    status: str
    activity: int  # a person's doings in the last 7 days
    usual: float | None  # the mean week before (None: no full history yet)
    night: int  # of which in the small hours
    days_with_data: int  # of 7
    findings: dict[str, int]  # kind -> how many this week
    talk: dict[str, str]  # conversation question -> why raised

    @property
    def change(self) -> float | None:
        """This week against the usual one (-0.4: 40 % less); None without a usual week."""
        return _change(self.activity, self.usual)

    @property
    def for_review(self) -> bool:
        """Raised something meant for this review (a routine change, night activity, a run of
        answers on the routine conversation)."""
        return bool(self.talk) or not _FOR_REVIEW.isdisjoint(self.findings)


class Rows(Sequence[ReviewRow]):
    """A review's rows in its order, each made when it is read: a page shows 100 of a dong's
    5,000, and making all of them was a fifth of the page's time. Kept as the query gave them
    (id, home, name, status, activity, usual, night, days), with the findings and the answers'
    concerns by resident."""

    __slots__ = ("_found", "_raw", "_talk")

    def __init__(self, raw: list[tuple[Any, ...]], found: dict[int, dict[str, int]],
                 talk: dict[int, dict[str, str]]) -> None:  # fmt: skip
        self._raw, self._found, self._talk = raw, found, talk

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, i: int) -> ReviewRow: ...
    @overload
    def __getitem__(self, i: slice) -> list[ReviewRow]: ...
    def __getitem__(self, i: int | slice) -> ReviewRow | list[ReviewRow]:
        if isinstance(i, slice):
            return [self._row(r) for r in self._raw[i]]
        return self._row(self._raw[i])

    def __iter__(self) -> Iterator[ReviewRow]:
        return (self._row(r) for r in self._raw)

    def _row(self, r: tuple[Any, ...]) -> ReviewRow:
        rid = r[0]
        return ReviewRow(rid, r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                         self._found.get(rid, {}), self._talk.get(rid, {}))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Review:
    """The dong's week, from `since` (local midnight, 7 days ago) to `until`."""

    since: datetime
    until: datetime
    rows: Sequence[ReviewRow]


def weekly_review(
    conn: psycopg.Connection[Any], dongs: Dongs, now: datetime, tz: ZoneInfo,
    script: str | None = None, fill: bool = True,
) -> Review:  # fmt: skip
    """Every resident of `dongs` (not ended): the last 7 local days beside the 4 before, and
    the runs in their routine conversations' answers (the concerns of the conversation
    `script`, a path; empty: the shipped one); those with something for review, then the
    largest drops, first. `fill`: store the sums of those who lacked them (a first page; a
    later page's review may be of another day, as its cursor says)."""
    p = activity_params(conn, dongs, now, tz)
    week, lo = p["week"], p["lo"]
    # rows fetched whole (iterating a cursor row by row cost a third of the Python here)
    # Each query planned for its own values (prepare=False): a prepared statement's generic
    # plan, chosen after five runs, read the week's findings in 20 ms instead of 4, and the
    # residents' weeks in 48 instead of 35 (100,000 residents, anbu bench dashboard).
    if p["based"]:  # the residents with their weeks, in one query
        conn.execute("SET LOCAL jit = off")  # this request's transaction only
        people = conn.execute(_WEEK_BASED, p, prepare=False).fetchall()
        missing = any(r[-1] for r in people)
    else:
        people = _from_hours(conn, p)
        missing = False
    found: dict[int, dict[str, int]] = {}
    for rid, kind, n in conn.execute(_FINDINGS, p, prepare=False).fetchall():
        found.setdefault(int(rid), {})[str(kind)] = int(n)
    talked = conversation_view.answers_since(conn, dongs, lo, until=now)
    asked = programme(script)
    talk = {rid: c for rid, said in talked.items()
            if (c := conversation_view.concerns(said, asked, week))}  # fmt: skip
    first = set(talk).union(r for r, kinds in found.items()
                            if not _FOR_REVIEW.isdisjoint(kinds))  # fmt: skip

    def place(r: tuple[Any, ...]) -> tuple[int, float, str, int]:  # review_place, unmade
        return _place(r[0] in first, r[4], r[5], r[1], r[0])

    if not p["based"]:
        people.sort(key=place)
    elif first:  # in order but for the rows for review, which come first
        ahead = sorted((r for r in people if r[0] in first), key=place)
        people = ahead + [r for r in people if r[0] not in first]
    if missing and fill:  # the sums read from the days this time: stored for the next review
        _fill(conn, p)
    return Review(week, now.astimezone(tz), Rows(people, found, talk))


def _from_hours(conn: psycopg.Connection[Any], p: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The residents with their weeks as _WEEK_BASED gives them, from the days and hours as
    they are (_ACTIVITY) and the residents read apart (_RESIDENTS)."""
    acts = {int(r[0]): tuple(r[1:]) for r in conn.execute(_ACTIVITY, p, prepare=False)}
    nothing = (None, None, 0, None, None)
    people = []
    for r in conn.execute(_RESIDENTS, p, prepare=False).fetchall():
        this, before, days, night, first = acts.get(r[0], nothing)
        full = first is not None and first <= p["full_from"]
        usual = float(before or 0) / WEEKS_BEFORE if full else None
        people.append((*r, int(this or 0), usual, int(night or 0), int(days or 0), False))
    return people


def activity_params(
    conn: psycopg.Connection[Any], dongs: Dongs, now: datetime, tz: ZoneInfo
) -> dict[str, Any]:
    """The review's span as its queries read it: the week from local midnight 7 days ago, the 4
    weeks before, and where the daily rows take over from the hours (`daily`): the span's start
    or the zone's first kept day, whichever is later; when the zone's days are not kept, the
    hours alone, the whole span."""
    week = local_days_start(now, tz, 7)
    lo = week - timedelta(weeks=WEEKS_BEFORE)
    row = conn.execute(_KEPT, (tz.key,)).fetchone()
    kept = row is not None
    # not kept: past `now` (a day on), so every hour that is over is read from the hours
    daily = now + DAY if row is None else max(lo, datetime.combine(row[0], datetime.min.time(), tz))
    today = local_days_start(now, tz, 1)
    # the summed days serve once every hour before today is over and every day is kept
    based = kept and daily == lo and local_days_start(now - HOUR, tz, 1) == today
    return {"dongs": dong_list(dongs), "week": week, "lo": lo, "now": now, "tz": tz.key,
            "night": list(NIGHT_HOURS), "kept": kept, "daily": daily,
            "week_day": week.date(), "daily_day": daily.date(), "based": based,
            "as_of": today.date(), "weeks_before": WEEKS_BEFORE,
            # a first reading by then: 4 weeks of history, a usual week
            "full_from": lo + DAY}  # fmt: skip


def _fill(
    conn: psycopg.Connection[Any], p: dict[str, Any], wait: bool = False, analyze: bool = True
) -> bool:
    """Sum the missing residents' complete days in a short transaction of its own, at READ
    COMMITTED, under the fill's side of the lock a change to a day shares (0079), taken only if
    free (`wait`: waited for, 2 s at most, as the worker's nightly job does); False when it was
    not (another fill, a change under way) or the transaction may not write (a read-only
    server), or it failed (a timeout, a lock not had in time): the next review reads those
    days again. `analyze`: refresh review_base's statistics after a large fill."""
    try:
        conn.commit()  # what the request read so far: nothing of it is held across the fill
    except psycopg.ProgrammingError:  # inside a caller's transaction block: no fill here
        return False
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            # the lock is held until the commit, and a change to a past day waits for it:
            # never long, and never waiting on another lock while it is held
            conn.execute("SET LOCAL lock_timeout = '2s'")
            conn.execute("SET LOCAL statement_timeout = '10s'")
            if wait:
                conn.execute(_BASE_LOCK_WAIT)
            elif conn.execute(_BASE_LOCK).fetchone() != (True,):
                return False
            filled = conn.execute(_BASE_FILL, p).rowcount
            conn.execute(_BASE_PRUNE, p)
    except psycopg.errors.ReadOnlySqlTransaction:
        return False
    except psycopg.Error as exc:  # the sums are a cache: the review the manager asked for stands
        log.warning("weekly review sums not stored; the next review reads the days again",
                    extra={"error": type(exc).__name__})  # fmt: skip
        return False
    if analyze and filled >= FILL_ANALYZE:  # rows come a dong at a time: plan by them
        _analyze(conn)
    return True


def _analyze(conn: psycopg.Connection[Any]) -> None:
    """review_base's statistics refreshed, after the fill's lock is given back (ANALYZE may
    wait behind a VACUUM: 2 s at most); the sums stay stored if it fails."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '2s'")
            conn.execute("ANALYZE anbu.review_base")
    except psycopg.Error as exc:
        log.warning("weekly review sums' statistics not refreshed",
                    extra={"error": type(exc).__name__})  # fmt: skip


def fill_sums(conn: psycopg.Connection[Any], now: datetime, tz: ZoneInfo) -> int:
    """The worker's nightly job: each dong's residents' complete days summed for the local day
    (what the day's first review would otherwise read from their days and then fill while its
    manager waits), a dong at a time, each fill a short transaction of its own (_fill); nothing
    before an hour past local midnight, when the sums do not serve yet. Each fill waits up to
    2 s for ingest's changes under way; a dong not filled is tried once more after the others,
    and then left to its first review. The statistics are refreshed once, at the end. Returns
    the dongs filled."""
    dongs = [str(r[0]) for r in conn.execute("SELECT code FROM anbu.dong ORDER BY code")]
    span = activity_params(conn, dongs, now, tz)  # the same span for every dong
    if dongs and not span["based"]:
        log.warning("weekly review sums not filled: they serve from an hour past local "
                    "midnight, over days kept for the whole span", extra={"tz": tz.key})  # fmt: skip
        return 0
    left: list[dict[str, Any]] = []
    for dong in dongs:
        p = {**span, "dongs": dong_list([dong])}
        if not _fill(conn, p, wait=True, analyze=False):
            left.append(p)
    left = [p for p in left if not _fill(conn, p, wait=True, analyze=False)]
    filled = len(dongs) - len(left)
    if filled:
        _analyze(conn)
    log.info("weekly review sums filled",
             extra={"dongs": len(dongs), "filled": filled, "not_filled": len(left)})  # fmt: skip
    return filled


CURSOR_LIFE = timedelta(days=1)  # a review's pages are of one week
SNAPSHOT_S = 600.0  # a review's later pages read the first page's snapshot this long
SNAPSHOTS = 4  # per web process (a district-wide review of 100,000 residents is ≈ 50 MB)


class _Snapshots:
    """The reviews whose first pages were read lately: a later page reads the same rows in the
    same order (nobody skipped or shown twice when answers or late readings change a row's
    place meanwhile), and does not compute a district's whole review again for each page."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[Any, ...], tuple[float, Review]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Review | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or time.monotonic() - hit[0] > SNAPSHOT_S:
                return None
            self._items.move_to_end(key)
            return hit[1]

    def put(self, key: tuple[Any, ...], review: Review) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), review)
            self._items.move_to_end(key)
            while len(self._items) > SNAPSHOTS:
                self._items.popitem(last=False)


_SNAPSHOTS = _Snapshots()


class CursorExpired(ValueError):
    """A review page's cursor older than CURSOR_LIFE (or from the future): start again."""


def review_page(
    conn: psycopg.Connection[Any], dongs: Dongs, now: datetime, tz: ZoneInfo,
    script: str | None, after: tuple[Any, ...] | None, limit: int,
) -> tuple[Review, list[ReviewRow], tuple[Any, ...] | None]:  # fmt: skip
    """One page of the review, the API's and the page's alike: the review as of the cursor's
    moment (`after`: (moment, *review_place) of the last row shown, or None), its rows after
    that place, `limit` of them, and the next page's cursor values (None: the last page)."""
    if after is not None:
        if not now - CURSOR_LIFE <= after[0] <= now:
            raise CursorExpired(after[0])
        now = after[0]
    key = (tuple(dong_list(dongs)), now, tz.key, script)
    week = _SNAPSHOTS.get(key) if after is not None else None
    if week is None:
        week = weekly_review(conn, dongs, now, tz, script, fill=after is None)
        if len(week.rows) > limit:  # a later page will be asked for: keep what it pages
            _SNAPSHOTS.put(key, week)
    # the rows are in review_place's order: a later page starts after the cursor's place
    start = 0 if after is None else bisect_right(week.rows, after[1:], key=review_place)
    shown, place = keyset_page(week.rows[start : start + limit + 1], limit, review_place)
    return week, shown, None if place is None else (now, *place)


def review_place(row: ReviewRow) -> tuple[int, float, str, int]:
    """A row's place in the review's order: those for review first, then the largest drops,
    then by home, the resident's id last (a keyset for the API's pages)."""
    return _place(row.for_review, row.activity, row.usual, row.home, row.resident_id)


def _place(
    for_review: bool, activity: int, usual: float | None, home: str, rid: int
) -> tuple[int, float, str, int]:
    """review_place from a row's parts (as _WEEK_BASED's ORDER BY computes it)."""
    change = _change(activity, usual)
    return int(not for_review), 0.0 if change is None else change, home, rid


def _change(activity: int, usual: float | None) -> float | None:
    """This week against the usual one; None without a usual week (ReviewRow.change)."""
    return activity / usual - 1.0 if usual is not None and usual > 0 else None
