"""Every stored finding ends in an alert (issue 13), on the real PostgreSQL: a crash between a
finding's commit and its alert's is made good by the worker's next poll (a detector's finding
and a 돌봄콜 help request alike), one finding whose alert step fails stops no other, two
reconciling passes never hand a finding over twice, deploying the column opens no old alerts,
and an open alert resolved between the insert that conflicts with it and the lookup does not
drop the new finding."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService, IncomingFinding, retry_after
from anbu.service import Runtime, build
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database, migrate
from core.domain import Finding, Severity
from simulators import personas
from simulators.phone import PhoneNetwork
from tests.integration.dashboard_support import RecordingTelephony, seed_alert

DONG = "1111051500"
RESIDENT_PHONE = "+821077700031"
MANAGER_PHONE = "+821088800031"
START = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # 12:00 in Seoul
PAUSE_LOCK = 7_470_913  # the advisory lock the race test holds the service's transaction on


class Crash(Exception):
    """The process died here (a deploy, an OOM kill): nothing after it ran."""


def wait_for(check: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def rows(db_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, args).fetchall()


def _waited(db_url: str) -> None:
    """Every finding stored so far waited past the reconciler's RECONCILE_AFTER (it leaves one
    stored just now to the listener handing it over)."""
    rows(
        db_url, "UPDATE anbu.findings SET stored_at = stored_at - interval '1 minute' RETURNING id"
    )


# -- the worker heals a crash -------------------------------------------------------------------


@pytest.fixture
def phone() -> Iterator[PhoneNetwork]:
    network = PhoneNetwork(Settings().twilio_account_sid, Settings().twilio_auth_token)
    network.start()
    yield network
    network.stop()


@pytest.fixture
def runtime(db_url: str, phone: PhoneNetwork, unique: str) -> Iterator[Runtime]:
    """The real composition root on a virtual clock that stands still; the worker is started by
    each test after its crash, with a fast due-work poll and no sweeps of its own."""
    settings = Settings(
        database_url=db_url,
        twilio_api_base_url=phone.base_url,
        public_base_url="http://127.0.0.1:9",
        due_poll_s=0.1,
        sweep_interval_s=3600.0,
        call_queue_poll_s=0.1,
    )
    rt = build(settings, VirtualClock(START, speed=0.0), run_migrations=False)
    with rt.db.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        registry.add_resident(conn, f"home-{unique}", DONG, "김순자", RESIDENT_PHONE)
        registry.add_care_manager(conn, f"cm-{unique}", DONG, "박담당", MANAGER_PHONE, "pw")
    phone.set_persona(RESIDENT_PHONE, personas.PRESS_1)
    try:
        yield rt
    finally:
        rt.stop()


def _crash_once(monkeypatch: pytest.MonkeyPatch, alerts: AlertService) -> list[int]:
    """The first hand-over of findings to alerts dies before it starts; the returned list
    counts the crashes."""
    crashes: list[int] = []
    real = alerts.on_findings

    def on_findings(findings: list[IncomingFinding]) -> list[int]:
        if not crashes:
            crashes.append(len(findings))
            raise Crash("killed between the finding's commit and its alert's")
        return real(findings)

    monkeypatch.setattr(alerts, "on_findings", on_findings)
    return crashes


def test_a_sweep_finding_committed_before_a_crash_opens_its_alert_on_the_next_poll(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, clock = runtime, runtime.clock
    assert isinstance(clock, VirtualClock)
    with rt.db.connection() as conn:
        conn.execute(
            """INSERT INTO anbu.home_activity (resident_id, last_activity_at)
               SELECT id, %s FROM anbu.resident""",
            (clock.now(),),
        )
    clock.advance(timedelta(hours=7))  # a watch level of silence
    crashes = _crash_once(monkeypatch, rt.alerts)
    with pytest.raises(Crash, match="killed between the finding's commit"):
        rt.sweep_once()
    assert crashes == [1]
    url = rt.settings.database_url
    [(finding_id, kind)] = rows(url, "SELECT id, kind FROM anbu.findings")
    assert rows(url, "SELECT count(*) FROM anbu.alerts") == [(0,)]
    assert rt.sweep_once() == 0  # the sweep counts the finding as raised: it never comes again

    rt.start_worker()  # the next worker's due-work poll
    wait_for(lambda: rows(url, "SELECT count(*) FROM anbu.alerts") == [(1,)], what="the alert")
    [(alert_kind, severity, alert_finding)] = rows(
        url, "SELECT kind, severity, finding_id FROM anbu.alerts"
    )
    assert (alert_kind, severity, alert_finding) == (kind, "watch", finding_id)
    assert rows(url, "SELECT alerted_at IS NOT NULL FROM anbu.findings") == [(True,)]
    [(reason,)] = rows(url, "SELECT reason FROM anbu.alert_events ORDER BY id LIMIT 1")
    assert reason.endswith("(발견 11-24 19:00, 누락 복구로 열림)")  # says how, and found when


def test_a_line_help_request_reported_before_a_crash_still_reaches_the_care_manager(
    runtime: Runtime, phone: PhoneNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """돌봄콜: the resident pressed 1; intake stored the finding and marked the call reported,
    then died before the alert. The running worker opens it and tells the care manager."""
    rt = runtime
    url = rt.settings.database_url
    with rt.db.connection() as conn:
        conn.execute(
            """INSERT INTO anbu.incoming_calls (twilio_sid, resident_id, received_at, choice,
                                                updated_at)
               SELECT 'CAline0001', id, %s, 'help', %s FROM anbu.resident""",
            (rt.clock.now(), rt.clock.now()),
        )
    crashes = _crash_once(monkeypatch, rt.alerts)

    rt.start_worker()  # its intake takes the call and crashes; its reconciler makes it good
    wait_for(lambda: crashes == [1], what="the intake's crash")
    assert rows(url, "SELECT reported_at IS NOT NULL FROM anbu.incoming_calls") == [(True,)]
    wait_for(
        lambda: rows(url, "SELECT state FROM anbu.alerts") == [("escalated",)],
        what="the help request's alert, escalated",
    )
    assert rows(url, "SELECT kind, severity FROM anbu.alerts") == [("help_request", "critical")]
    assert rows(url, "SELECT alerted_at IS NOT NULL FROM anbu.findings") == [(True,)]
    wait_for(lambda: MANAGER_PHONE in [m.to for m in phone.messages], what="the care manager's SMS")


# -- the reconciler, directly ---------------------------------------------------------------------


@dataclass
class Rig:
    database: Database
    db_url: str
    alerts: AlertService
    clock: VirtualClock
    residents: list[int]
    manager_id: int

    def store(self, resident_id: int, kind: str = "inactivity",
              severity: Severity = Severity.WARNING) -> IncomingFinding:  # fmt: skip
        """A finding stored and committed as a detector does; nothing handed to alerts yet."""
        now = self.clock.now()
        with self.database.connection() as conn:
            row = conn.execute(
                """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                              reason_en)
                   VALUES (%s, %s, %s, %s, '움직임 없음', 'no movement') RETURNING id""",
                (resident_id, kind, severity.label, now),
            ).fetchone()
        assert row is not None
        finding = Finding(f"h{resident_id}", kind, severity, now, "움직임 없음", "no movement")
        return IncomingFinding(int(row[0]), resident_id, finding)

    def open_alerts(self) -> dict[int, tuple[int, str]]:
        """finding id -> (alert id, state) of every alert."""
        found = rows(self.db_url, "SELECT finding_id, id, state FROM anbu.alerts")
        return {int(f): (int(a), str(s)) for f, a, s in found}

    def waiting(self) -> list[int]:
        found = rows(self.db_url, "SELECT id FROM anbu.findings WHERE alerted_at IS NULL")
        return sorted(int(r[0]) for r in found)


@pytest.fixture
def rig(database: Database, db_url: str, unique: str) -> Rig:
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        residents = [
            registry.add_resident(conn, f"h{n}-{unique}", DONG, f"주민{n}", f"+8210555000{n:02d}")
            for n in range(3)
        ]
        manager = registry.add_care_manager(conn, f"cm-{unique}", DONG, "박담당", MANAGER_PHONE,
                                            "pw")  # fmt: skip
    clock = VirtualClock(START, speed=0.0)
    alerts = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), clock, "http://dashboard.test"
    )
    return Rig(database, db_url, alerts, clock, residents, manager)


def _failing_for(monkeypatch: pytest.MonkeyPatch, alerts: AlertService, bad: set[int]) -> None:
    """The alert step raises for the findings in `bad` (a bug, a constraint, a lost lock)."""
    real = alerts._open_or_raise

    def open_or_raise(conn: Any, item: IncomingFinding, *args: Any) -> int | None:
        if item.finding_id in bad:
            raise RuntimeError("the alert step failed")
        return real(conn, item, *args)

    monkeypatch.setattr(alerts, "_open_or_raise", open_or_raise)


def test_one_finding_whose_alert_fails_does_not_stop_the_others(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = [rig.store(rid) for rid in rig.residents]
    first = found[0].finding_id
    _failing_for(monkeypatch, rig.alerts, {first})

    touched = rig.alerts.on_findings(found)  # the first fails; the ones after it still open

    assert len(touched) == 2
    assert set(rig.open_alerts()) == {f.finding_id for f in found[1:]}
    assert rig.waiting() == [first]
    [(tries, retry_at)] = rows(
        rig.db_url, "SELECT alert_tries, alert_retry_at FROM anbu.findings WHERE id = %s", first
    )
    assert (tries, retry_at) == (1, rig.clock.now() + retry_after(1))

    monkeypatch.undo()  # fixed; the reconciler waits out the back-off, then opens it
    assert rig.alerts.reconcile_findings() == 0
    rig.clock.advance(retry_after(1))
    assert rig.alerts.reconcile_findings() == 1
    assert set(rig.open_alerts()) == {f.finding_id for f in found}
    assert rig.waiting() == []


def test_a_reconcile_pass_goes_on_past_a_finding_that_keeps_failing(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = [rig.store(rid) for rid in rig.residents]  # stored, then the process died
    _waited(rig.db_url)
    bad = found[1].finding_id
    _failing_for(monkeypatch, rig.alerts, {bad})

    assert rig.alerts.reconcile_findings() == 2
    assert set(rig.open_alerts()) == {found[0].finding_id, found[2].finding_id}
    assert rig.alerts.reconcile_findings() == 0  # backing off: not retried at every poll
    rig.clock.advance(retry_after(1))
    assert rig.alerts.reconcile_findings() == 0  # tried again, failed again: waits longer
    [(tries, retry_at)] = rows(
        rig.db_url, "SELECT alert_tries, alert_retry_at FROM anbu.findings WHERE id = %s", bad
    )
    assert (tries, retry_at) == (2, rig.clock.now() + retry_after(2))
    assert retry_after(2) > retry_after(1)

    monkeypatch.undo()
    rig.clock.advance(retry_after(2))
    assert rig.alerts.reconcile_findings() == 1
    assert set(rig.open_alerts()) == {f.finding_id for f in found}


def test_findings_already_handed_over_are_left_alone(rig: Rig) -> None:
    rid = rig.residents[0]
    watch = rig.store(rid, severity=Severity.WATCH)
    assert len(rig.alerts.on_findings([watch])) == 1
    rig.clock.advance(timedelta(minutes=1))
    again = rig.store(rid, severity=Severity.WATCH)  # as severe as the open alert: joins it
    assert rig.alerts.on_findings([again]) == []
    assert rig.alerts.on_findings([watch, again]) == []  # handed over once only
    assert rig.waiting() == []
    assert rig.alerts.reconcile_findings() == 0
    assert rows(rig.db_url, "SELECT count(*) FROM anbu.alert_events") == [(1,)]


def test_two_reconcilers_at_once_hand_each_finding_over_once(rig: Rig) -> None:
    with rig.database.connection() as conn:
        for n in range(20):
            rig.residents.append(registry.add_resident(conn, f"x{n}", DONG, f"주민x{n}",
                                                       f"+8210666000{n:02d}"))  # fmt: skip
    found = [rig.store(rid) for rid in rig.residents]
    _waited(rig.db_url)
    other = AlertService(
        rig.database, RecordingTelephony(), EscalationPolicy(), rig.clock, "http://dashboard.test"
    )
    counts: list[int] = []
    errors: list[BaseException] = []

    def reconcile(service: AlertService) -> None:
        try:
            counts.append(service.reconcile_findings())
        except BaseException as exc:  # a thread's crash is only a warning: report it here
            errors.append(exc)
            raise

    threads = [threading.Thread(target=reconcile, args=(s,)) for s in (rig.alerts, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [t.is_alive() for t in threads] == [False, False]
    assert errors == [] and len(counts) == 2, errors  # both finished
    assert sum(counts) == len(found)
    assert set(rig.open_alerts()) == {f.finding_id for f in found}
    assert rows(rig.db_url, "SELECT count(*) FROM anbu.alert_events") == [(len(found),)]
    assert rig.waiting() == []


def test_deploying_the_column_opens_no_old_alerts(rig: Rig) -> None:
    """Findings stored before migration 0044 count as handed over."""
    with psycopg.connect(rig.db_url, autocommit=True) as conn:  # back to the schema before 0044
        conn.execute("DROP INDEX anbu.findings_not_alerted")
        conn.execute(
            """ALTER TABLE anbu.findings DROP COLUMN alerted_at, DROP COLUMN alert_tries,
                                         DROP COLUMN alert_retry_at"""
        )
        conn.execute("DELETE FROM anbu.schema_migrations WHERE version = 44")
        conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                          reason_en)
               VALUES (%s, 'inactivity', 'warning', %s, '옛 발견', 'old finding')""",
            (rig.residents[0], rig.clock.now() - timedelta(days=30)),
        )
    assert migrate(rig.db_url) == [44]
    assert rig.waiting() == []
    assert rig.alerts.reconcile_findings() == 0
    assert rig.open_alerts() == {}


# -- resolved between the conflicting insert and the lookup ---------------------------------------


def test_an_alert_resolved_between_the_conflict_and_the_lookup_does_not_drop_the_finding(
    rig: Rig,
) -> None:
    """A care manager resolves the open alert after the new finding's insert conflicted with it
    and before the lookup that would raise it: a new alert opens for the finding."""
    rid = rig.residents[0]
    old = seed_alert(rig.database, rig.clock, rid, "inactivity")
    rig.alerts.acknowledge(old, rig.manager_id, DONG)
    rig.clock.advance(timedelta(minutes=5))
    item = rig.store(rid)
    with rig.database.connection() as conn:  # after every insert into alerts, wait for the test
        conn.execute(
            f"""CREATE FUNCTION anbu.test_pause_after_alert_insert() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_advisory_xact_lock({PAUSE_LOCK}); RETURN NULL; END $$"""
        )
        conn.execute(
            """CREATE TRIGGER test_pause AFTER INSERT ON anbu.alerts FOR EACH STATEMENT
               EXECUTE FUNCTION anbu.test_pause_after_alert_insert()"""
        )
    result: list[list[int]] = []
    with psycopg.connect(rig.db_url, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (PAUSE_LOCK,))
        worker = threading.Thread(target=lambda: result.append(rig.alerts.on_findings([item])))
        worker.start()

        def paused() -> bool:
            found = gate.execute(
                """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                     AND objid = %s""",
                (PAUSE_LOCK,),
            ).fetchone()
            return found is not None and found[0] == 1

        wait_for(paused, what="the insert that conflicts with the open alert")
        assert rows(rig.db_url, "SELECT state FROM anbu.alerts WHERE id = %s", old) == [
            ("acknowledged",)
        ]
        rig.alerts.resolve(old, rig.manager_id, DONG, "visited_ok")  # the manager, meanwhile
        gate.execute("SELECT pg_advisory_unlock(%s)", (PAUSE_LOCK,))
        worker.join(30)
    assert not worker.is_alive()

    [touched] = result
    assert len(touched) == 1 and touched[0] != old
    assert rig.open_alerts()[item.finding_id] == (touched[0], "open")
    assert rows(rig.db_url, "SELECT state FROM anbu.alerts WHERE id = %s", old) == [("resolved",)]
    assert rig.waiting() == []
