"""Which door-closed silences the week grid marks as outings, and the grid's cells from them."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dashboards.activity_grid import week_grid
from dashboards.outings import Outing, Silence, outings_of
from dashboards.residents import ActivityHour, ResidentView, Week

SEOUL = ZoneInfo("Asia/Seoul")
T = datetime(2026, 11, 21, 10, 0, tzinfo=SEOUL)


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def test_a_quiet_covered_silence_of_a_quarter_hour_is_an_outing() -> None:
    assert outings_of([Silence(at(0), at(15), quiet=True, covered=True)]) == [Outing(at(0), at(15))]
    assert outings_of([Silence(at(0), at(14.9), quiet=True, covered=True)]) == []  # the bins
    assert outings_of([Silence(at(0), at(90), quiet=False, covered=True)]) == []  # someone in
    assert outings_of([Silence(at(0), at(90), quiet=True, covered=False)]) == []  # a sensor out


def test_the_silence_after_coming_back_is_at_home() -> None:
    """Out, back through the door, then unseen until the door again, and again: home, not out
    again, until someone has been seen moving inside; a door opened twice on the way out is
    still leaving; a silence not framed by someone moving (a door that opened with nobody
    after it) or doubted by a finding is no outing."""
    got = outings_of(
        [
            Silence(at(0), at(3), quiet=True, covered=True),  # the door opened twice ...
            Silence(at(4), at(120), quiet=True, covered=True),  # ... then out
            Silence(at(121), at(300), quiet=True, covered=True),  # back, unseen
            Silence(at(301), at(420), quiet=True, covered=True),  # the door again: still home
            Silence(at(421), at(430), quiet=False, covered=True),  # seen moving inside
            Silence(at(431), at(600), quiet=True, covered=True),  # out again
        ]
    )
    assert got == [Outing(at(4), at(120)), Outing(at(431), at(600))]
    assert outings_of([Silence(at(0), at(90), True, True, framed=False)]) == []
    assert outings_of([Silence(at(0), at(90), True, True, undoubted=False)]) == []


def _week(outings: list[Outing], hours: list[ActivityHour]) -> Week:
    resident = ResidentView(1, "h", "김순자", "1111051500", "active", None, None, None,
                            None, None, None)  # fmt: skip
    since = datetime(2026, 11, 21, tzinfo=SEOUL)
    return Week(resident, since, at(150), hours, [], outings)


def test_cells_carry_minutes_out_the_small_hours_and_what_is_still_to_come() -> None:
    night = ActivityHour(datetime(2026, 11, 21, 3, tzinfo=SEOUL), 4, 4, 0, 0, 8, ("bathroom",))
    grid = week_grid(_week([Outing(at(50), at(130))], [night]))
    assert [label for label, _ in grid] == ["2026-11-21"]
    cells = grid[0][1]
    assert [(c.key[11:], c.out_minutes, c.out) for c in cells[10:13]] == [
        ("10", 10, False),  # ten minutes of the hour: not marked
        ("11", 60, True),
        ("12", 10, False),
    ]
    assert [c.night for c in cells] == [k < 6 for k in range(24)]
    assert cells[3].night_active and cells[3].level == 1
    assert not cells[4].night_active  # night, but no reading
    assert not cells[12].later and cells[13].later  # now is 12:30
