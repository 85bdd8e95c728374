"""The Grafana dashboards in dashboards/grafana: well-formed, on metrics that exist, and every
SQL query runs, after Grafana's macros are expanded, against the migrated database as the
read-only role Grafana is given (which cannot read residents' names or phone numbers), and
returns data. tests/integration/test_prometheus.py asks a real Prometheus the PromQL ones."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

import registry
from dashboards.metrics import DB_METRICS
from ingest.consumer import IngestStats

GRAFANA = Path(__file__).resolve().parents[2] / "dashboards" / "grafana"
BOARDS = sorted(GRAFANA.glob("*.json"))
DATASOURCES = {"anbu-prometheus": "prometheus", "anbu-postgres": "grafana-postgresql-datasource"}
TO = datetime.now(UTC).replace(microsecond=0)
FROM = TO - timedelta(days=7)
VARIABLES = {"dong": "'1111051500'", "home": "'home-grafana-1'"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def _seconds(interval: str) -> int:
    found = re.fullmatch(r"'?(\d+)([smhd])'?", interval.strip())
    assert found, f"unsupported interval {interval!r}"
    return int(found.group(1)) * _UNITS[found.group(2)]


def expand(sql: str) -> str:
    """Grafana's PostgreSQL macros and this board's variables, as the datasource expands them."""

    def macro(m: re.Match[str]) -> str:
        name, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        if name == "timeFilter":
            return f"{args[0]} BETWEEN '{FROM.isoformat()}' AND '{TO.isoformat()}'"
        if name == "timeFrom":
            return f"'{FROM.isoformat()}'"
        if name == "timeTo":
            return f"'{TO.isoformat()}'"
        if name in ("timeGroup", "timeGroupAlias"):
            step = _seconds(args[1])
            group = f"floor(extract(epoch from {args[0]})/{step})*{step}"
            return group + (' AS "time"' if name == "timeGroupAlias" else "")
        raise AssertionError(f"macro $__{name} is not expanded by this test")

    sql = re.sub(r"\$__(\w+)\(([^)]*)\)", macro, sql)
    sql = re.sub(r"\$(\w+)", lambda m: VARIABLES[m.group(1)], sql)
    assert "$" not in sql, sql
    return sql


def _sql_queries() -> list[tuple[str, str]]:
    out = []
    for path in BOARDS:
        board = _load(path)
        for panel in _panels(board):
            for target in panel.get("targets", []):
                if "rawSql" in target:
                    out.append((f"{path.stem}: {panel['title']}", target["rawSql"]))
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("datasource", {}).get("uid") == "anbu-postgres":
                out.append((f"{path.stem}: ${variable['name']}", variable["query"]))
    return out


def test_there_are_the_two_dashboards() -> None:
    assert {p.name for p in BOARDS} == {"anbu-operations.json", "anbu-care.json"}


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_dashboard_is_well_formed(path: Path) -> None:
    board = _load(path)
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    panels = list(_panels(board))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    names = [v["name"] for v in board["templating"]["list"]]
    assert len(names) == len(set(names))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            ds = target["datasource"]
            assert DATASOURCES.get(ds["uid"]) == ds["type"], (panel["title"], ds)
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_uids_are_unique() -> None:
    uids = [_load(p)["uid"] for p in BOARDS]
    assert len(uids) == len(set(uids))


def test_promql_reads_only_metrics_anbu_exposes() -> None:
    exposed = {m.name + ("_total" if m.counter else "") for m in DB_METRICS}
    exposed |= {f"anbu_ingest_{f.name}_total" for f in fields(IngestStats)}
    exposed |= {"anbu_metrics_database_up", "anbu_metrics_collect_seconds"}
    used = set()
    for path in BOARDS:
        for panel in _panels(_load(path)):
            for target in panel.get("targets", []):
                used |= set(re.findall(r"\banbu_\w+", target.get("expr", "")))
    assert used, "the operations dashboard reads anbu's metrics"
    assert used <= exposed, used - exposed


def test_provisioning_files_name_the_dashboards_datasources() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/anbu.yaml").read_text())
    assert {d["uid"]: d["type"] for d in sources["datasources"]} == DATASOURCES
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/anbu.yaml").read_text())
    assert [p["type"] for p in providers["providers"]] == ["file"]


@pytest.fixture
def grafana_role(db_url: str) -> Iterator[str]:
    """grafana_reader.sql applied under a name of its own (roles are cluster-wide)."""
    role = f"anbu_grafana_{uuid.uuid4().hex[:8]}"
    script = (GRAFANA / "grafana_reader.sql").read_text().replace("anbu_grafana", role)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(script.encode())
    yield role
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}".encode())
        conn.execute(f"DROP ROLE {role}".encode())


def _seed(db_url: str) -> None:
    hour = TO.replace(minute=0, second=0) - timedelta(hours=3)
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        resident = registry.add_resident(
            conn, "home-grafana-1", "1111051500", "김순자", "+821012345678"
        )
        conn.execute(
            """INSERT INTO anbu.activity_hourly
                   (resident_id, hour, activity, motion, door, power_steps, readings, rooms)
               VALUES (%s, %s, 4, 3, 1, 0, 9, ARRAY['living'])""",
            (resident, hour),
        )
        # something for every other panel: an open alert, a finding, a home silent for 8 h
        conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at)
               VALUES (%s, 'inactivity', 'warning', 'open', %s, %s)""",
            (resident, hour, hour),
        )
        conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                          reason_en)
               VALUES (%s, 'inactivity', 'warning', %s, '사유', 'reason')""",
            (resident, hour),
        )
        conn.execute(
            "INSERT INTO anbu.home_activity (resident_id, last_activity_at) VALUES (%s, %s)",
            (resident, datetime.now(UTC) - timedelta(hours=8)),
        )


@pytest.mark.parametrize(("where", "sql"), _sql_queries(), ids=lambda v: str(v)[:60])
def test_every_sql_query_runs_as_grafanas_role(
    db_url: str, grafana_role: str, where: str, sql: str
) -> None:
    _seed(db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute(f"SET ROLE {grafana_role}".encode())
        rows = conn.execute(expand(sql).encode()).fetchall()
    assert rows, f"{where}: no data"  # each panel shows what the seed put there
    if "Per-home" in where:
        assert any(r[1] == "home-grafana-1" and r[2] == 4 for r in rows), rows
        assert any(r[2] is None for r in rows)  # hours without readings: no data, not zero


def test_grafanas_role_cannot_read_names_or_phones(db_url: str, grafana_role: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(f"SET ROLE {grafana_role}".encode())
        for column in ("display_name", "phone", "notes"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(f"SELECT {column} FROM anbu.resident".encode())
            conn.rollback()
            conn.execute(f"SET ROLE {grafana_role}".encode())
