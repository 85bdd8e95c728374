"""`anbu bench import`: enrol N residents from a CP949 file, as a district's first import.

The file is generated (names, addresses, mobiles and landlines, two emergency contacts, a
consent record and notes for each resident, over 20 dongs). Printed beside the same run's
baseline, a bare COPY of the same decoded rows into a scratch table of text columns (the least
any import of them costs): the first import (all created), the same file again without its
notes columns (all unchanged: a file that carries notes seals them again, never comparing
them) and that file with one resident in ten changed (updated), each one transaction with its
audit rows. The goal: 10,000 rows in under 30 s.
"""

from __future__ import annotations

import csv
import io
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from registry.residents_text import COLUMNS

DONGS = tuple((f"11{i:08d}", f"벤치{i}동", "벤치구") for i in range(1, 21))
_SURNAMES = "김이박최정강조윤장임한오서신권황안송류전"
_GIVEN = "민서준우지현수영하은도윤예진성호경미정숙자옥순"
_STREETS = ("자하문로", "사직로", "효자로", "필운대로", "인왕산로")
_RELATIONS = ("딸", "아들", "며느리", "조카", "이웃", "형제")
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def synthetic_file(rows: int, seed: int = 7, changed_every: int = 0, notes: bool = True) -> bytes:
    """A CP949 enrolment file of `rows` residents (every `changed_every`-th one edited; without
    the notes columns unless `notes`)."""
    rnd = random.Random(seed)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    columns = [c for c in COLUMNS if notes or not c.field.endswith("_notes")]
    writer.writerow([c.ko for c in columns])
    for i in range(rows):
        edit = changed_every and i % changed_every == 0
        name = rnd.choice(_SURNAMES) + rnd.choice(_GIVEN) + rnd.choice(_GIVEN)
        dong = DONGS[i % len(DONGS)]
        values = {
            "external_id": f"2026-{i:06d}",
            "display_name": name,
            "birth_year": str(rnd.randint(1930, 1965)),
            "address": f"서울특별시 벤치구 {rnd.choice(_STREETS)} {rnd.randint(1, 300)}"
            + ("-1" if edit else ""),
            "dong_code": dong[0] if i % 2 else dong[1],
            "mobile_phone": f"010-{rnd.randint(1000, 9999)}-{rnd.randint(1000, 9999)}",
            "landline_phone": f"02-{rnd.randint(200, 999)}-{rnd.randint(1000, 9999)}",
            "consent_date": "2026-11-02",
            "consent_recorded_by": "벤치 담당",
            "consent_sensors": "예",
            "consent_calls": "예",
            "consent_family": "아니오" if i % 3 else "예",
            "health_notes": "고혈압 약 복용",
            "access_notes": "현관 비밀번호는 담당자에게",
        }
        for n in (1, 2):
            values |= {
                f"contact{n}_name": rnd.choice(_SURNAMES) + rnd.choice(_GIVEN) * 2,
                f"contact{n}_relationship": rnd.choice(_RELATIONS),
                f"contact{n}_phone": f"010{rnd.randint(10_000_000, 99_999_999)}",
                f"contact{n}_may_call": "Y" if n == 1 else "N",
            }
        writer.writerow([values.get(c.field, "") for c in columns])
    return out.getvalue().encode("cp949")


@dataclass(frozen=True, slots=True)
class ImportFigures:
    rows: int
    copy_s: float
    first_s: float
    again_s: float
    changed_s: float
    counts: tuple[tuple[int, int, int], ...]  # (created, updated, unchanged) per run

    def line(self) -> str:
        return (
            f"import: rows={self.rows} first_s={self.first_s:.2f} "
            f"rows_per_s={self.rows / self.first_s:,.0f} again_s={self.again_s:.2f} "
            f"changed_s={self.changed_s:.2f} bare_copy_s={self.copy_s:.3f} "
            f"ratio_vs_copy={self.first_s / self.copy_s:.1f} goal_s=30 "
            f"{'ok' if self.first_s < 30 else 'MISSED'}"
        )


def measure(dsn: str, rows: int, echo: Callable[[str], None] = print) -> ImportFigures:
    """The bench on a migrated database at `dsn` (it adds 20 dongs and N residents)."""
    import psycopg

    from core.crypto import Keyring, new_key
    from registry.residents_import import import_residents

    keyring = Keyring.of(new_key())  # notes are sealed at rest, as in production
    first_file = synthetic_file(rows)
    again_file = synthetic_file(rows, notes=False)  # notes sent would be sealed again
    changed_file = synthetic_file(rows, changed_every=10, notes=False)
    with psycopg.connect(dsn) as conn:
        conn.cursor().executemany(
            "INSERT INTO anbu.dong (code, name, district) VALUES (%s, %s, %s)"
            " ON CONFLICT (code) DO NOTHING",
            DONGS,
        )
        conn.commit()
        copy_s = _bare_copy(conn, first_file)
        counts, seconds = [], []
        for data in (first_file, again_file, changed_file):
            began = time.perf_counter()
            report = import_residents(conn, data, actor="bench", now=NOW, keyring=keyring)
            seconds.append(time.perf_counter() - began)
            if report.errors:
                raise RuntimeError(f"the bench file has bad rows: {report.errors[:3]}")
            counts.append((report.created, report.updated, report.unchanged))
            echo(f"  run {len(counts)}: {seconds[-1]:.2f} s created/updated/unchanged={counts[-1]}")
    figures = ImportFigures(rows, copy_s, seconds[0], seconds[1], seconds[2], tuple(counts))
    echo(figures.line())
    return figures


def _bare_copy(conn: Any, data: bytes) -> float:
    """Seconds to decode the same file and COPY its rows into a scratch table of text."""
    began = time.perf_counter()
    reader = csv.reader(io.StringIO(data.decode("cp949"), newline=""))
    header = next(reader)
    cols = ", ".join(f"c{i} text" for i in range(len(header)))
    conn.execute(f"CREATE TEMP TABLE bench_bare ({cols})")
    with conn.cursor() as cur, cur.copy("COPY bench_bare FROM STDIN") as copy:
        for row in reader:
            copy.write_row(row)
    conn.commit()
    return time.perf_counter() - began


def run(rows: int, echo: Callable[[str], None] = print) -> ImportFigures:
    """The bench on a throwaway PostgreSQL (the embedded one the demo uses)."""
    from core.db import migrate
    from simulators.servers import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="anbu-bench-", ignore_cleanup_errors=True) as work:
        pg = EmbeddedPostgres(Path(work))
        pg.init()
        pg.start()
        try:
            migrate(pg.dsn)
            return measure(pg.dsn, rows, echo)
        finally:
            pg.stop()
