"""The daily activity rollup (anbu.activity_daily) on real PostgreSQL, both storage modes: it
equals the hours summed by local day after every kind of write to the hours, and the weekly
review read through it equals the review summed from the hours alone, as it was before it."""

from __future__ import annotations

import json
import random
import threading
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

import registry
from core.db import Database
from core.domain import SensorKind
from dashboards import review
from dashboards.residents import local_days_start
from detectors.summaries import keep_daily, summarize
from ingest.store import Message, Store

pytestmark = pytest.mark.storage_modes

DONG = "1111051500"
SEOUL = ZoneInfo("Asia/Seoul")
KOLKATA = ZoneInfo("Asia/Kolkata")  # local midnight at half past a UTC hour
# Seoul's midnight is 15:00 UTC: the hours around it belong to two local days
MIDNIGHT = datetime(2026, 11, 20, 0, 0, tzinfo=SEOUL)

_UPSERT = """
INSERT INTO anbu.activity_hourly AS h
       (resident_id, hour, activity, motion, door, power_steps, readings, rooms)
SELECT resident_id, hour, activity, activity, 0, 0, readings, '{living}'
  FROM unnest(%s::bigint[], %s::timestamptz[], %s::int[], %s::int[])
       AS k(resident_id, hour, activity, readings)
ON CONFLICT (resident_id, hour) DO UPDATE
   SET activity = excluded.activity, motion = excluded.motion, readings = excluded.readings
"""
SINCE = date(2026, 1, 1)  # before every hour written here: each day kept
# the reference: every hour of the days kept summed by local day, straight from the hourly rows
_REFERENCE_DAYS = """
SELECT resident_id, (hour AT TIME ZONE %(tz)s)::date, count(*), sum(activity),
       coalesce(sum(activity) FILTER (WHERE extract(hour FROM hour AT TIME ZONE %(tz)s)
                                            = ANY(%(night)s)), 0),
       min(hour) FILTER (WHERE readings > 0)
  FROM anbu.activity_hourly
 WHERE (hour AT TIME ZONE %(tz)s)::date >= (SELECT kept_from FROM anbu.activity_daily_zone
                                             WHERE tz = %(tz)s)
 GROUP BY 1, 2 ORDER BY 1, 2
"""
_DAYS = """
SELECT resident_id, day, hours, activity, night, first_reading FROM anbu.activity_daily
 WHERE tz = %(tz)s ORDER BY 1, 2
"""
# the review's activity as it was read before the rollup: the hours alone
_REFERENCE_REVIEW = """
SELECT a.resident_id,
       sum(a.activity) FILTER (WHERE a.hour >= %(week)s),
       sum(a.activity) FILTER (WHERE a.hour < %(week)s),
       count(DISTINCT date_trunc('day', a.hour AT TIME ZONE %(tz)s))
             FILTER (WHERE a.hour >= %(week)s AND a.readings > 0),
       sum(a.activity) FILTER (WHERE a.hour >= %(week)s
                               AND extract(hour FROM a.hour AT TIME ZONE %(tz)s) = ANY(%(night)s)),
       min(a.hour) FILTER (WHERE a.readings > 0)
  FROM anbu.activity_hourly a JOIN anbu.resident r ON r.id = a.resident_id
 WHERE r.dong_code = %(dong)s AND a.hour >= %(lo)s AND a.hour + interval '1 hour' <= %(now)s
 GROUP BY a.resident_id
"""


def _residents(database: Database, n: int) -> list[int]:
    with database.connection() as conn:
        # Seoul was listed by the migration, six weeks back from the real day; these tests'
        # hours are of November 2026 whatever the day they run
        conn.execute("UPDATE anbu.activity_daily_zone SET kept_from = %s", (SINCE,))
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        return [
            registry.add_resident(conn, f"home-{k}", DONG, f"대상자{k}", "+821012345678")
            for k in range(n)
        ]


def _upsert(conn: Any, rows: list[tuple[int, datetime, int, int]]) -> None:
    """Hours written as the worker's pass writes them: one INSERT .. ON CONFLICT DO UPDATE."""
    ids, hours, acts, reads = (list(c) for c in zip(*rows, strict=True))
    conn.execute(_UPSERT, (ids, hours, acts, reads))


def _same_days(conn: Any, tz: ZoneInfo) -> None:
    p = {"tz": tz.key, "night": list(review.NIGHT_HOURS)}
    want = conn.execute(_REFERENCE_DAYS, p).fetchall()
    assert conn.execute(_DAYS, p).fetchall() == want


def test_the_days_follow_every_write_to_the_hours(database: Database) -> None:
    """Batches of new and rewritten hours across Seoul's midnight, then a past hour's late
    readings, its readings gone, an hour deleted, a day emptied, an hour moved; the days of a
    zone listed later (half-hour midnights) summed from the hours there, then kept as well."""
    a, b = _residents(database, 2)
    rnd = random.Random(21)
    start = MIDNIGHT - timedelta(hours=30)
    with database.connection() as conn:
        for batch in range(4):  # each batch: 30 new hours and 10 rewritten earlier ones
            hours = [start + timedelta(hours=batch * 30 + k) for k in range(30)]
            earlier = [start + timedelta(hours=k) for k in range(batch * 30)]
            hours += rnd.sample(earlier, min(10, len(earlier)))
            rows = {(rid, h): (rnd.randint(0, 9), rnd.choice((0, 1, 5))) for rid in (a, b)
                    for h in hours}  # fmt: skip
            _upsert(conn, [(rid, h, act, n) for (rid, h), (act, n) in rows.items()])
            _same_days(conn, SEOUL)
        assert conn.execute("SELECT count(DISTINCT day) FROM anbu.activity_daily").fetchone()[0] > 5

        past = MIDNIGHT - timedelta(hours=1)  # 23:00 in Seoul, the day before
        _upsert(conn, [(a, past, 7, 3), (a, past - timedelta(hours=5), 2, 1)])  # late readings
        _same_days(conn, SEOUL)
        first = conn.execute(
            "SELECT first_reading FROM anbu.activity_daily WHERE resident_id = %s AND tz = %s "
            "AND day = %s",
            (a, SEOUL.key, past.date()),
        ).fetchone()[0]
        conn.execute(  # the day's first hour with readings rewritten to none
            "UPDATE anbu.activity_hourly SET readings = 0 WHERE resident_id = %s AND hour = %s",
            (a, first),
        )
        _same_days(conn, SEOUL)
        conn.execute(
            "DELETE FROM anbu.activity_hourly WHERE resident_id = %s AND hour = %s", (b, past)
        )
        _same_days(conn, SEOUL)
        conn.execute(  # b's whole first local day
            "DELETE FROM anbu.activity_hourly WHERE resident_id = %s AND hour < %s",
            (b, MIDNIGHT - timedelta(days=1)),
        )
        _same_days(conn, SEOUL)
        conn.execute(  # an hour moved across midnight (a correction of its time)
            "UPDATE anbu.activity_hourly SET hour = hour + interval '100 days' "
            "WHERE resident_id = %s AND hour = %s",
            (a, MIDNIGHT),
        )
        _same_days(conn, SEOUL)

        # a zone listed from a day in the middle of the hours: its days from then on, the
        # writes to older hours leaving them alone
        keep_daily(conn, KOLKATA, MIDNIGHT.date())
        keep_daily(conn, KOLKATA, SINCE)  # a second time: nothing summed twice
        _same_days(conn, KOLKATA)
        assert (
            conn.execute(
                "SELECT min(day) FROM anbu.activity_daily WHERE tz = %s", (KOLKATA.key,)
            ).fetchone()[0]
            == MIDNIGHT.date()
        )
        _upsert(conn, [(a, MIDNIGHT + timedelta(hours=k), k, 1) for k in range(-20, 20)])
        conn.execute(
            "DELETE FROM anbu.activity_hourly WHERE resident_id = %s AND hour < %s", (a, start)
        )
        for tz in (SEOUL, KOLKATA):
            _same_days(conn, tz)
        assert tuple(range(6)) == review.NIGHT_HOURS  # the triggers' small hours (< 6)

        # an operator's full recompute: the hours truncated take their days with them
        conn.execute("TRUNCATE anbu.activity_hourly")
        assert conn.execute("SELECT count(*) FROM anbu.activity_daily").fetchone()[0] == 0
        _upsert(conn, [(a, MIDNIGHT + timedelta(hours=k), 1, 1) for k in range(3)])
        for tz in (SEOUL, KOLKATA):
            _same_days(conn, tz)


def test_the_workers_pass_keeps_the_days_of_late_readings(database: Database) -> None:
    """Readings summarised by the worker, then one buffered by the gateway for a day lands in its
    past hour: the pass rewrites that hour, and its local day with it."""
    (rid,) = _residents(database, 1)
    t0 = MIDNIGHT - timedelta(hours=3)
    with database.connection() as conn:
        gw = registry.add_gateway(conn, "dailygw", rid)
        registry.add_sensor(conn, gw, "pir", SensorKind.MOTION, "living")
        conn.execute("SELECT anbu.ensure_reading_partitions(%s::date, 3)", (t0.date(),))
    store = Store(database)

    def stored(at: datetime, *times: datetime) -> None:
        readings = [{"sensor": "pir", "kind": "motion", "ts": t.isoformat(), "value": 1}
                    for t in times]  # fmt: skip
        body = json.dumps({"readings": readings}).encode()
        store.store_batch([Message(f"gw/{gw}/anbu/readings", body, False, at)], at)

    stored(t0 + timedelta(hours=6), *(t0 + timedelta(minutes=20 * k) for k in range(18)))
    with database.connection() as conn:
        summarize(conn, t0 + timedelta(hours=6, minutes=1))
        _same_days(conn, SEOUL)
        before = conn.execute(
            "SELECT activity FROM anbu.activity_daily WHERE day = %s", (t0.date(),)
        ).fetchone()[0]
    late = t0 + timedelta(hours=1, minutes=7)  # 22:07 the day before, received a day on
    stored(t0 + timedelta(days=1), late)
    with database.connection() as conn:
        summarize(conn, t0 + timedelta(days=1, minutes=1))
        _same_days(conn, SEOUL)
        after = conn.execute(
            "SELECT activity FROM anbu.activity_daily WHERE day = %s", (t0.date(),)
        ).fetchone()[0]
    assert after == before + 1


def _reference(conn: Any, now: datetime, tz: ZoneInfo) -> dict[int, tuple[Any, ...]]:
    """Each resident's review figures as weekly_review made them from the hours alone."""
    week = local_days_start(now, tz, 7)
    lo = week - timedelta(weeks=review.WEEKS_BEFORE)
    p = {"dong": DONG, "week": week, "lo": lo, "now": now, "tz": tz.key,
         "night": list(review.NIGHT_HOURS)}  # fmt: skip
    acts = {int(r[0]): r[1:] for r in conn.execute(_REFERENCE_REVIEW, p)}
    got = {}
    for (rid,) in conn.execute("SELECT id FROM anbu.resident WHERE dong_code = %s", (DONG,)):
        this, before, days, night, first = acts.get(int(rid), (None, None, 0, None, None))
        full = first is not None and first <= lo + timedelta(days=1)
        got[int(rid)] = (int(this or 0), float(before or 0) / review.WEEKS_BEFORE if full else None,
                         int(night or 0), int(days or 0))  # fmt: skip
    return got


def _based(conn: Any, rid: int) -> int:
    """How many days' sums the review holds for resident `rid`."""
    row = conn.execute("SELECT count(*) FROM anbu.review_base WHERE resident_id = %s", (rid,))
    return int(row.fetchone()[0])


def _rows(conn: Any, now: datetime, tz: ZoneInfo) -> dict[int, tuple[Any, ...]]:
    week = review.weekly_review(conn, DONG, now, tz)
    assert list(week.rows) == sorted(week.rows, key=review.review_place)  # the pages' order
    return {r.resident_id: (r.activity, r.usual, r.night, r.days_with_data) for r in week.rows}


def test_the_review_reads_the_same_through_the_days(database: Database) -> None:
    """Residents of six weeks, of exactly four weeks and a day, of less, with silent hours and
    hours with readings but no activity, read at moments around local midnight and mid-day: the
    review through the daily rows is the review from the hours, in Seoul and in a zone whose
    days are kept only later (the hours alone until then)."""
    rids = _residents(database, 6)
    rnd = random.Random(5)
    now0 = datetime(2026, 11, 22, 9, 30, tzinfo=SEOUL)
    lo = local_days_start(now0, SEOUL, 7) - timedelta(weeks=review.WEEKS_BEFORE)
    begins = [lo - timedelta(days=7), lo, lo + timedelta(days=1), lo + timedelta(days=1, hours=1),
              now0 - timedelta(days=3), now0 - timedelta(hours=5)]  # fmt: skip
    rows = []
    for rid, begin in zip(rids, begins, strict=True):
        h = begin
        while h < now0 + timedelta(days=1):
            if rnd.random() < 0.8:  # some hours have no row at all
                n = rnd.choice((0, 0, 1, 4))
                rows.append((rid, h, rnd.randint(1, 6) if n else 0, n))
            h += timedelta(hours=1)
    with database.connection() as conn:
        _upsert(conn, rows)
        moments = [now0, now0.replace(hour=0, minute=0), now0.replace(hour=0, minute=30),
                   now0.replace(hour=1, minute=0), now0.replace(hour=23, minute=59),
                   now0 - timedelta(days=1, minutes=1),
                   # Kolkata's midnight falls inside an hour: the hour from 23:30 is not over
                   datetime(2026, 11, 22, 0, 10, tzinfo=KOLKATA)]  # fmt: skip
        for now in moments:
            assert _rows(conn, now, SEOUL) == _reference(conn, now, SEOUL), now
        assert any(v[1] is not None for v in _reference(conn, now0, SEOUL).values())
        assert any(v[1] is None for v in _reference(conn, now0, SEOUL).values())
        assert _rows(conn, now0, KOLKATA) == _reference(conn, now0, KOLKATA)
        # listed from a day inside the span: the days before it read from the hours
        keep_daily(conn, KOLKATA, (lo + timedelta(days=9)).date())
        for now in moments:
            now_k = now.astimezone(KOLKATA)
            assert _rows(conn, now_k, KOLKATA) == _reference(conn, now_k, KOLKATA), now_k


def test_the_days_summed_once_a_day_follow_a_late_change_to_a_past_day(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review sums each resident's complete days once a local day (anbu.review_base); a late
    reading that changes a past day, a rebuilt hour and a deleted one each take those sums away
    in their own transaction, and the next review equals the hours-only one again."""
    rids = _residents(database, 3)
    now = datetime(2026, 11, 22, 14, 0, tzinfo=SEOUL)
    start = now - timedelta(days=40)
    rows = [(rid, start + timedelta(hours=k), (k + rid) % 5, 1) for rid in rids
            for k in range(40 * 24)]  # fmt: skip
    with database.connection() as conn:
        _upsert(conn, rows)
        assert _rows(conn, now, SEOUL) == _reference(conn, now, SEOUL)
        summed = conn.execute("SELECT count(*) FROM anbu.review_base").fetchone()[0]
        assert summed == len(rids)  # the review filled them
        yesterday = now - timedelta(days=1)
        _upsert(conn, [(rids[0], yesterday, 40, 3)])  # a late reading rewrites a past hour
        assert (
            conn.execute(
                "SELECT count(*) FROM anbu.review_base WHERE resident_id = %s", (rids[0],)
            ).fetchone()[0]
            == 0
        )
        with monkeypatch.context() as m:  # its sums missing and not filled: its own days
            m.setattr(review, "_fill", lambda _c, _p: False)
            assert _rows(conn, now, SEOUL) == _reference(conn, now, SEOUL)
        assert _based(conn, rids[0]) == 0
        assert _rows(conn, now, SEOUL) == _reference(conn, now, SEOUL)
        assert _based(conn, rids[0]) == 1  # read from its days, then filled again
        conn.execute(
            "DELETE FROM anbu.activity_hourly WHERE resident_id = %s AND hour = %s",
            (rids[1], now - timedelta(days=3)),
        )
        assert _rows(conn, now, SEOUL) == _reference(conn, now, SEOUL)
        _upsert(conn, [(rids[2], now + timedelta(minutes=10), 9, 1)])  # today: sums kept
        assert (
            conn.execute(
                "SELECT count(*) FROM anbu.review_base WHERE resident_id = %s", (rids[2],)
            ).fetchone()[0]
            == 1
        )
        assert _rows(conn, now + timedelta(hours=2), SEOUL) == _reference(
            conn, now + timedelta(hours=2), SEOUL
        )


def test_a_review_while_a_past_day_changes_reads_the_days_as_they_are(
    database: Database, db_url: str
) -> None:
    """A change to a past day holds its side of the lock until it commits: a review meanwhile
    does not wait for it and does not fill (it reads the days as they are); once the change
    is in, the next review fills and reads it."""
    rids = _residents(database, 2)
    now = datetime(2026, 11, 22, 14, 0, tzinfo=SEOUL)
    start = now - timedelta(days=40)
    with database.connection() as conn:
        _upsert(conn, [(rid, start + timedelta(hours=k), 2, 1) for rid in rids
                       for k in range(40 * 24)])  # fmt: skip
    with psycopg.connect(db_url) as change:  # a late reading for yesterday, not yet committed
        _upsert(change, [(rids[0], now - timedelta(days=1), 50, 4)])
        with database.connection() as conn:
            assert _rows(conn, now, SEOUL) == _reference(conn, now, SEOUL)
            assert conn.execute("SELECT count(*) FROM anbu.review_base").fetchone()[0] == 0
        change.commit()
    with database.connection() as conn:
        got = _rows(conn, now, SEOUL)
        assert got == _reference(conn, now, SEOUL)
        assert conn.execute("SELECT count(*) FROM anbu.review_base").fetchone()[0] == len(rids)
    assert got[rids[0]][0] == got[rids[1]][0] + 48  # the late reading counted


def test_the_review_comes_in_the_order_its_pages_follow(database: Database) -> None:
    """The summed days' query sorts the rows itself (the change as review_place computes it,
    then the home in code point order by its UTF-8 bytes, then the id) and the rows raised for
    review come first:
    the same order as sorting by review_place, with homes whose ids run against their names,
    Korean and upper- and lower-case, ties in the change, and a resident for review."""
    homes = ["나-2", "Z-1", "a-3", "가-1", "home-10", "home-9", "z-0", "A-0"]
    with database.connection() as conn:
        conn.execute("UPDATE anbu.activity_daily_zone SET kept_from = %s", (SINCE,))
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rids = [registry.add_resident(conn, h, DONG, f"대상자{k}", "+821012345678")
                for k, h in enumerate(homes)]  # fmt: skip
        now = datetime(2026, 11, 22, 14, 0, tzinfo=SEOUL)
        start = now - timedelta(days=40)
        week = start + timedelta(days=33)
        # the first five with 40 days of hours, their last week busier or quieter than usual
        # (two of them alike: a tie in the change); the others nothing at all (no change)
        ups = [1, 3, 0, 3, 2]
        _upsert(conn, [(rid, start + timedelta(hours=k),
                        1 + k % 3 + (ups[i] if start + timedelta(hours=k) >= week else 0), 1)
                       for i, rid in enumerate(rids[:5]) for k in range(40 * 24)])  # fmt: skip
        conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                   reason_en) VALUES (%s, 'routine_change', 'watch', %s, '생활 변화', 'change')""",
            (rids[6], now - timedelta(days=1)),
        )
        assert review.activity_params(conn, DONG, now, SEOUL)["based"]
        for _ in range(2):  # the sums read from the days, then from the sums stored
            got = review.weekly_review(conn, DONG, now, SEOUL).rows
            assert [r.resident_id for r in got] == [
                r.resident_id for r in sorted(got, key=review.review_place)
            ]
            assert got[0].resident_id == rids[6] and got[0].for_review
            changes = [r.change for r in got]
            assert len({c for c in changes if c is not None}) < 5  # a tie among the five
            assert [r.home for r in got if r.change is None] != sorted(
                (r.home for r in got if r.change is None), key=str.lower
            )  # code point order, not a case-blind one


def test_a_review_whose_fill_fails_stands_and_a_later_page_does_not_fill(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summed days are a cache: a fill that fails (here a statement that cannot run)
    leaves the review read from the days, as it would be otherwise, and the next first page
    fills; a later page, whose cursor may be of another day, never does."""
    rids = _residents(database, 3)
    now = datetime(2026, 11, 22, 14, 0, tzinfo=SEOUL)
    start = now - timedelta(days=40)
    with database.connection() as conn:
        _upsert(conn, [(rid, start + timedelta(hours=k), (k + rid) % 4, 1) for rid in rids
                       for k in range(40 * 24)])  # fmt: skip
        with monkeypatch.context() as m:
            m.setattr(review, "_BASE_FILL", "SELECT 1 / 0")
            assert _rows(conn, now, SEOUL) == _reference(conn, now, SEOUL)
        assert conn.execute("SELECT count(*) FROM anbu.review_base").fetchone() == (0,)
        cursor = (now, 0, float("-inf"), "", 0)  # a later page's, placed before every row
        _, shown, _ = review.review_page(conn, DONG, now, SEOUL, None, cursor, 2)
        assert len(shown) == 2
        assert conn.execute("SELECT count(*) FROM anbu.review_base").fetchone() == (0,)
        assert _rows(conn, now, SEOUL) == _reference(conn, now, SEOUL)  # a first page fills
        assert conn.execute("SELECT count(*) FROM anbu.review_base").fetchone() == (3,)


def test_the_worker_fills_every_dongs_sums_before_the_first_review(
    database: Database, db_url: str
) -> None:
    """The nightly job sums each dong's residents' complete days for the local day, so the
    day's first review reads them by key; before an hour past local midnight it fills nothing
    (the sums do not serve yet); a change under way (ingest's side of the lock) is waited for
    rather than skipped; and the review it prepared reads as the hours do."""
    rids = _residents(database, 3)
    other = "1111051600"
    now = datetime(2026, 11, 22, 5, 30, tzinfo=SEOUL)
    start = now - timedelta(days=40)
    with database.connection() as conn:
        registry.add_dong(conn, other, "사직동", "종로구")
        rids.append(registry.add_resident(conn, "home-x", other, "대상자x", "+821012345678"))
        _upsert(conn, [(rid, start + timedelta(hours=k), (k * rid) % 6, 1) for rid in rids
                       for k in range(40 * 24)])  # fmt: skip
        assert review.fill_sums(conn, datetime(2026, 11, 22, 0, 30, tzinfo=SEOUL), SEOUL) == 0
        assert conn.execute("SELECT count(*) FROM anbu.review_base").fetchone() == (0,)
    with psycopg.connect(db_url) as change:  # a change to a day under way for half a second
        change.execute("SELECT pg_advisory_xact_lock_shared(1919252066, 0)")
        threading.Timer(0.5, change.commit).start()
        with database.connection() as conn:
            assert review.fill_sums(conn, now, SEOUL) == 2
    with database.connection() as conn:
        got = conn.execute(
            "SELECT resident_id, as_of FROM anbu.review_base ORDER BY resident_id"
        ).fetchall()
        assert got == [(rid, now.date()) for rid in sorted(rids)]
        p = review.activity_params(conn, DONG, now, SEOUL)
        assert not any(r[-1] for r in conn.execute(review._WEEK_BASED, p).fetchall())
        assert _rows(conn, now, SEOUL) == _reference(conn, now, SEOUL)
