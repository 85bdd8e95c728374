"""The calls jobs of a worker: the routine check-in tick, the send-queue drainer and the
lost-call reaper."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from calls.checkins import CheckinService
from calls.service import CallService
from core.clock import Clock
from core.config import Settings
from core.db import Database

log = logging.getLogger(__name__)

LOST_CALLS_EVERY_S = 30.0  # how often dialled calls that Twilio never took are looked for


def _guarded(name: str, job: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:  # the rows are the truth: the next tick retries
            log.exception("calls job failed", extra={"job": name})

    return run


def register_jobs(
    scheduler: Any, db: Database, call_service: CallService, settings: Settings, clock: Clock
) -> CheckinService:
    """Add the check-in tick, the queue drainer and the lost-call reaper to a scheduler."""
    checkins = CheckinService(db, settings, clock)

    def tick() -> None:
        checkins.schedule()
        for _ in range(100):  # bounded: each pass takes up to 1000 due rounds
            if checkins.advance() == 0:
                break

    scheduler.add_job(_guarded("checkins", tick), "interval", seconds=settings.checkin_tick_s,
                      id="checkins", max_instances=1, coalesce=True)  # fmt: skip
    scheduler.add_job(_guarded("call-queue", call_service.drain_queue), "interval",
                      seconds=settings.call_queue_poll_s, id="call-queue", max_instances=1,
                      coalesce=True)  # fmt: skip
    scheduler.add_job(_guarded("lost-calls", call_service.reap_lost_calls), "interval",
                      seconds=LOST_CALLS_EVERY_S, id="lost-calls", max_instances=1,
                      coalesce=True)  # fmt: skip
    return checkins
