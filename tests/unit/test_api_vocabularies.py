"""The API's closed vocabularies (enums in /openapi.json) stay equal to what can be stored: an
answer holding a value the enum lacks would fail as a 500, an enum value never stored misleads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from alerts.course import ENDED_OUTCOME
from alerts.models import RESOLUTION_OUTCOMES
from core.domain import CallOutcome
from dashboards.authz import Role
from dashboards.i18n import SYSTEM_OUTCOMES
from dashboards.schemas import ACTIONS, AlertAction, AlertOutcome, ResidentStatus, RoleName

MIGRATIONS = Path(__file__).resolve().parents[2] / "core" / "migrations"


def _last_check(constraint_words: str) -> set[str]:
    """The values of the last migration's CHECK (... IN (...)) after `constraint_words`."""
    found: list[set[str]] = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        text = path.read_text()
        for m in re.finditer(re.escape(constraint_words) + r"[^;]*?IN \(([^)]*)\)", text, re.S):
            found.append(set(re.findall(r"'([a-z_0-9]+)'", m.group(1))))
    assert found, constraint_words
    return found[-1]


def test_roles_are_the_stored_roles() -> None:
    assert set(get_args(RoleName)) == {r.value for r in Role}
    assert set(get_args(RoleName)) == _last_check("CHECK (role")


def test_alert_outcomes_are_what_a_person_or_the_system_closes_with() -> None:
    assert set(get_args(AlertOutcome)) == set(RESOLUTION_OUTCOMES) | set(SYSTEM_OUTCOMES)
    assert ENDED_OUTCOME in get_args(AlertOutcome)


def test_actions_and_statuses() -> None:
    assert set(get_args(AlertAction)) == set(ACTIONS.values())
    registry = (MIGRATIONS / "0001_registry.sql").read_text()  # anbu.resident, never altered
    resident = registry[registry.index("CREATE TABLE anbu.resident") :]
    found = re.search(r"CHECK \(status IN \(([^)]*)\)", resident)
    assert found is not None
    assert set(get_args(ResidentStatus)) == set(re.findall(r"'([a-z_]+)'", found.group(1)))
    assert not any(
        "resident_status" in p.read_text() or "anbu.resident ALTER COLUMN status" in p.read_text()
        for p in MIGRATIONS.glob("*.sql")
    )
    assert {o.value for o in CallOutcome} == _last_check("calls_outcome_check")
