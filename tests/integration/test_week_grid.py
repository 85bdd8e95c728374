"""The resident card's week grid (issue 21): today's row filled up to now although the hourly
summary has not reached the hours under way, outings marked only where the home's sensors could
tell, and the small hours marked; readings stored by ingest's own store on a real PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

import registry
from core.db import Database
from core.domain import SensorKind
from detectors.summaries import live_hours, summarize
from ingest.store import Message, Store
from tests.integration.dashboard_support import (
    DONG_A,
    OPENED_AT,
    PASSWORD_A,
    Town,
    bearer,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture

SEOUL = ZoneInfo("Asia/Seoul")
NOW = OPENED_AT  # 2026-11-22 09:30 in Seoul, the town's clock
Reading = tuple[datetime, str, str, float]  # (ts, sensor, kind, value)


def kst(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=SEOUL)


def _home(
    database: Database, unique: str, name: str, sensors: tuple[tuple[str, str, str], ...]
) -> tuple[int, str]:
    """A resident of dong A and their gateway with `sensors` (vendor id, kind, room)."""
    with database.connection() as conn:
        rid = registry.add_resident(conn, f"{name}-{unique}", DONG_A, "박영희", "+821099990001")
        gw = registry.add_gateway(conn, f"{name}{unique}gw", rid)
        for vendor, kind, room in sensors:
            registry.add_sensor(conn, gw, vendor, SensorKind(kind), room)
        conn.execute("SELECT anbu.ensure_reading_partitions('2026-11-14'::date, 10)")
    return rid, gw


def _store(database: Database, gw: str, rows: list[Reading], received: datetime) -> None:
    """Readings as the gateway sends them, stored by ingest's store, received at `received`."""
    readings = [
        {"sensor": s, "kind": k, "ts": t.astimezone(UTC).isoformat(), "value": v}
        for t, s, k, v in rows
    ]
    payload = json.dumps({"readings": readings}).encode()
    Store(database).store_batch(
        [Message(f"gw/{gw}/anbu/readings", payload, False, received)], received
    )


def _cell(html: str, key: str) -> str:
    """The week grid's cell of local hour `key` (YYYY-MM-DDTHH), whole."""
    found = re.search(rf'<td class="[^"]*" data-hour="{key}".*?</td>', html, re.S)
    assert found is not None, key
    return found.group(0)


def _card(town: Town, resident_id: int, lang: str = "ko") -> str:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    page = client.get(f"/residents/{resident_id}?lang={lang}")
    assert page.status_code == 200, page.text
    return page.text


FULL = (("door1", "door", "entrance"), ("pir-living", "motion", "living"),
        ("pir-bed", "motion", "bedroom"))  # fmt: skip


def test_todays_row_shows_the_hours_up_to_now(town: Town, database: Database, unique: str) -> None:
    rid, gw = _home(database, unique, "today", FULL)
    early = [
        (kst(22, 7, 10), "pir-living", "motion", 1.0),
        (kst(22, 7, 11), "pir-living", "motion", 0.0),
        (kst(22, 8, 5), "pir-bed", "motion", 1.0),
        (kst(22, 8, 6), "pir-bed", "motion", 0.0),
    ]
    _store(database, gw, early, kst(22, 8, 10))
    with database.connection() as conn:  # the worker's pass at 08:15: the hours it saw
        summarize(conn, kst(22, 8, 15))
    late = [  # received after that pass; the next one is not due yet
        (kst(22, 8, 50), "pir-living", "motion", 1.0),
        (kst(22, 8, 51), "pir-living", "motion", 0.0),
        (kst(22, 9, 20), "pir-living", "motion", 1.0),
        (kst(22, 9, 21), "pir-living", "motion", 0.0),
        (kst(22, 9, 25), "pir-bed", "motion", 1.0),
    ]
    _store(database, gw, late, kst(22, 9, 26))

    html = _card(town, rid)
    assert 'data-hour="2026-11-22T07" data-activity="1"' in html  # stored by the pass
    assert 'data-hour="2026-11-22T08" data-activity="2"' in html  # the pass saw one of two
    assert 'data-hour="2026-11-22T09" data-activity="2"' in html  # the hour under way
    assert 'data-hour="2026-11-22T06" data-activity=""' in html  # before: no reading at all
    later = _cell(html, "2026-11-22T10")  # after now: still to come, not "no reading"
    assert 'class="later"' in later and 'data-activity=""' in later
    assert "오늘" in html  # today's row is named

    client = TestClient(town.app)
    got = client.get(
        f"/api/v1/residents/{rid}/activity?days=1",
        headers=bearer(client, town.username_a, PASSWORD_A),
    ).json()
    assert [(h["hour"][:13], h["activity"]) for h in got["hours"]] == [
        ("2026-11-22T07", 1),
        ("2026-11-22T08", 2),
        ("2026-11-22T09", 2),
    ]
    with database.connection() as conn:  # the live hours are what the next pass stores
        hour = kst(22, 8).astimezone(UTC)
        live = live_hours(conn, rid, hour, hour + timedelta(hours=2))
        summarize(conn, kst(22, 9, 35))
        stored = conn.execute(
            """SELECT hour, activity, motion, door, power_steps, readings, rooms
                 FROM anbu.activity_hourly WHERE resident_id = %s AND hour >= %s ORDER BY hour""",
            (rid, hour),
        ).fetchall()
    assert [tuple(r) for r in live] == [tuple(r) for r in stored]


def _outing_day(with_bedroom: bool = True) -> list[Reading]:
    """Yesterday: about, then out through the door at 10:08 and back at 12:40 (door, then
    motion), the door opened for someone at 15:00 while at home; the bedroom sensor heard
    before and after unless it is missing."""
    rows: list[Reading] = [
        (kst(21, 10, 5), "pir-living", "motion", 1.0),
        (kst(21, 10, 6), "pir-living", "motion", 0.0),
        (kst(21, 10, 8), "door1", "door", 1.0),
        (kst(21, 10, 8, 20), "door1", "door", 0.0),  # closed behind the resident
        (kst(21, 12, 40), "door1", "door", 1.0),  # back
        (kst(21, 12, 40, 15), "door1", "door", 0.0),
        (kst(21, 12, 41), "pir-living", "motion", 1.0),
        (kst(21, 12, 42), "pir-living", "motion", 0.0),
        (kst(21, 15, 0), "door1", "door", 1.0),  # a visitor at the door ...
        (kst(21, 15, 1), "door1", "door", 0.0),
        (kst(21, 15, 30), "pir-living", "motion", 1.0),  # ... the resident still in
        (kst(21, 15, 31), "pir-living", "motion", 0.0),
        (kst(21, 19, 0), "door1", "door", 1.0),  # and again at 19:00
        (kst(21, 19, 0, 10), "door1", "door", 0.0),
    ]
    if with_bedroom:
        rows += [
            (kst(21, 7, 0), "pir-bed", "motion", 1.0),
            (kst(21, 7, 1), "pir-bed", "motion", 0.0),
            (kst(21, 21, 0), "pir-bed", "motion", 1.0),
            (kst(21, 21, 1), "pir-bed", "motion", 0.0),
        ]
    return rows


def _without(rows: list[Reading], sensor: str) -> list[Reading]:
    return [r for r in rows if r[1] != sensor]


def test_an_outing_is_marked_only_where_the_homes_sensors_could_tell(
    town: Town, database: Database, unique: str
) -> None:
    full, gw = _home(database, unique, "full", FULL)
    _store(database, gw, _outing_day(), kst(21, 22))
    door_only, gw = _home(database, unique, "dooronly", (FULL[0],))
    _store(database, gw, _without(_without(_outing_day(), "pir-living"), "pir-bed"), kst(21, 22))
    missing, gw = _home(database, unique, "missing", FULL)  # the bedroom's sensor never heard
    _store(database, gw, _outing_day(with_bedroom=False), kst(21, 22))

    html = _card(town, full)
    assert 'data-out="51"' in _cell(html, "2026-11-21T10")  # from 10:08:20
    assert 'data-out="60"' in _cell(html, "2026-11-21T11")
    assert 'data-out="40"' in _cell(html, "2026-11-21T12")  # back at 12:40
    for key in ("2026-11-21T09", "2026-11-21T13", "2026-11-21T15", "2026-11-21T16"):
        assert "data-out" not in _cell(html, key), key  # the visitor: the resident stayed in
    assert '<span class="sr-only"> 외출 추정 60분</span>' in _cell(html, "2026-11-21T11")
    assert "외출 추정 (현관문이 닫힌 뒤" in html  # the key
    assert "집에 계셨을 수도 있습니다" in html  # a guess, said as one
    assert 'class="none out"' in _cell(html, "2026-11-21T11")  # no reading, but out
    english = _card(town, full, "en")
    assert '<span class="sr-only"> probably out 60 min</span>' in english
    client = TestClient(town.app)
    got = client.get(
        f"/api/v1/residents/{full}/activity",
        headers=bearer(client, town.username_a, PASSWORD_A),
    ).json()
    assert [(o["start"], o["end"]) for o in got["outings"]] == [
        ("2026-11-21T10:08:20+09:00", "2026-11-21T12:40:00+09:00")
    ]
    # the 19:00 door with no motion after it: not back in sight, so never an outing (the
    # sweep's "not back"), and the evening's silence at home is no outing either
    assert "data-out" not in _cell(html, "2026-11-21T20")

    for other in (door_only, missing):
        assert "data-out" not in _card(town, other), other


def test_the_small_hours_are_marked_and_activity_in_them_stands_out(
    town: Town, database: Database, unique: str
) -> None:
    rid, gw = _home(database, unique, "night", FULL)
    _store(
        database, gw,
        [(kst(21, 2, 10), "pir-living", "motion", 1.0), (kst(21, 2, 11), "pir-living", "motion", 0.0),
         (kst(21, 14, 0), "pir-living", "motion", 1.0), (kst(21, 14, 1), "pir-living", "motion", 0.0)],
        kst(21, 15),
    )  # fmt: skip
    with database.connection() as conn:
        summarize(conn, kst(21, 15))
    html = _card(town, rid)
    for k in range(6):
        assert (
            f'<th scope="col" class="night">{k:02d}<span class="sr-only"> 새벽</span></th>' in html
        )
    assert '<th scope="col">06</th>' in html
    night = _cell(html, "2026-11-21T02")
    assert 'class="a0 night night-active"' in night and 'data-night="1"' in night
    assert '<span class="sr-only"> 새벽 활동</span>' in night
    quiet = _cell(html, "2026-11-21T03")  # a night hour, no reading: shaded, not "active"
    assert 'class="none night"' in quiet
    day = _cell(html, "2026-11-21T14")
    assert 'class="a0"' in day and "data-night" not in day
    assert "새벽 (0시~6시)" in html  # the key
    assert "Activity in the small hours" in _card(town, rid, "en")


def test_no_outing_is_shown_where_the_evidence_for_it_is_not_whole(
    town: Town, database: Database, unique: str
) -> None:
    """The same morning, but: nobody moving inside after the door's change (a neighbour at
    the door, the wind, a flapping sensor: no return); two door sensors, or the door sensor
    in another room (which door is the way out is not known); an inactivity finding raised
    while the door was shut (the system's own doubt); a gateway offline before it (a sensor
    may have been blind): none of them is marked out."""
    no_return = [r for r in _outing_day() if not (r[1] == "pir-living" and r[0] == kst(21, 12, 41))]
    homes = {
        "noreturn": (FULL, no_return),
        "twodoors": ((*FULL, ("door2", "door", "kitchen")), _outing_day()),
        "livingdoor": ((("door1", "door", "living"), *FULL[1:]), _outing_day()),
        "doubted": (FULL, _outing_day()),
        "blind": (FULL, _outing_day()),
    }
    ids = {}
    for name, (sensors, rows) in homes.items():
        rid, gw = _home(database, unique, name, sensors)
        _store(database, gw, rows, kst(21, 22))
        ids[name] = rid
    with database.connection() as conn:
        for name, kind, at in (("doubted", "inactivity", kst(21, 11, 30)),
                               ("blind", "gateway_offline", kst(21, 2, 0))):  # fmt: skip
            conn.execute(
                """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                              reason_en)
                   VALUES (%s, %s, 'watch', %s, '테스트', 'test')""",
                (ids[name], kind, at),
            )
    for name, rid in ids.items():
        assert "data-out" not in _card(town, rid), name
