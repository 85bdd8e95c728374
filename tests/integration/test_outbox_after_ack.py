"""A care manager who has taken an alert is not texted or rung for it afterwards."""

from __future__ import annotations

from tests.integration.test_sms_outbox import DONG, Rig, _escalate, rig

__all__ = ["rig"]  # the fixture, shared with the outbox's other tests


def test_nothing_pending_is_sent_once_the_alert_is_acknowledged(rig: Rig) -> None:
    alert_id = rig.alert()
    with rig.calls.database.connection() as conn:
        _escalate(rig, conn, alert_id)  # the step writes its SMS; nobody has sent them yet
    pending = rig.query(
        "SELECT count(*) FROM anbu.notifications WHERE alert_id = %s AND status = 'pending'"
        " AND channel IN ('sms', 'voice')",
        alert_id,
    )
    assert pending[0][0] > 0
    rig.alerts.acknowledge(alert_id, rig.managers["manager"], DONG)
    assert rig.alerts.outbox.send_due().sent == 0
    assert rig.calls.network.messages == []
    assert rig.calls.network.calls == []  # nor rung
