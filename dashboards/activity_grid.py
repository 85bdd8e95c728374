"""The resident card's week grid: local days as rows (oldest first, today last), 24 hour cells
each, every cell with its activity, the minutes the resident was out in it, whether it is in the
small hours and whether it is still to come."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from dashboards.outings import OUT_MIN
from dashboards.residents import ActivityHour, Week
from dashboards.review import NIGHT_HOURS

# an hour is marked out when outings take this many minutes of it (as long as the shortest)
OUT_IN_HOUR_MIN = int(OUT_MIN.total_seconds() // 60)
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class GridCell:
    """One local hour of the grid."""

    key: str  # YYYY-MM-DDTHH, local
    hour: ActivityHour | None  # None: no reading at all (or still to come)
    night: bool  # the small hours, as the weekly review counts them
    out_minutes: int  # minutes of this hour the resident was out
    later: bool  # after now: nothing to show yet

    @property
    def out(self) -> bool:
        return self.out_minutes >= OUT_IN_HOUR_MIN

    @property
    def night_active(self) -> bool:
        """A person's doings in the small hours."""
        return self.night and self.hour is not None and self.hour.activity > 0

    @property
    def level(self) -> int:
        """Shade of the activity, 0 (none) to 4 (12 doings or more)."""
        return 0 if self.hour is None else min(self.hour.activity, 12) // 3


def week_grid(week: Week) -> list[tuple[str, list[GridCell]]]:
    """The week as rows of local days, each (YYYY-MM-DD, 24 cells). Hours after `until` are
    `later` and empty."""
    by_hour = {h.hour.strftime("%Y-%m-%dT%H"): h for h in week.hours}
    rows = []
    day = week.since
    while day.date() <= week.until.date():
        label = day.strftime("%Y-%m-%d")
        cells = []
        for k in range(24):
            start = day.replace(hour=k)
            key = f"{label}T{k:02d}"
            out = sum(o.minutes_in(start, start + HOUR) for o in week.outings)
            later = start > week.until
            cells.append(
                GridCell(key, None if later else by_hour.get(key), k in NIGHT_HOURS, out, later)
            )
        rows.append((label, cells))
        day = (day + timedelta(days=1, hours=2)).replace(hour=0)
    return rows
