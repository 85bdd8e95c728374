"""The calls jobs of a worker: the routine check-in tick, the send-queue drainer and the
lost-call reaper, on a core.ticker.Ticker (monotonic deadlines: a wall-clock step never stalls
them)."""

from __future__ import annotations

import logging

from calls.checkins import CheckinService
from calls.service import CallService
from core.clock import Clock
from core.config import Settings
from core.db import Database
from core.ticker import Ticker

log = logging.getLogger(__name__)

LOST_CALLS_EVERY_S = 30.0  # how often dialled calls that Twilio never took are looked for


def register_jobs(
    ticker: Ticker, db: Database, call_service: CallService, settings: Settings, clock: Clock
) -> CheckinService:
    """Add the check-in tick, the queue drainer and the lost-call reaper to a ticker."""
    checkins = CheckinService(db, settings, clock)

    def tick() -> None:
        checkins.schedule()
        for _ in range(100):  # bounded: each pass takes up to 1000 due rounds
            if checkins.advance() == 0:
                break

    ticker.add("checkins", tick, settings.checkin_tick_s)
    ticker.add("call-queue", call_service.drain_queue, settings.call_queue_poll_s)
    ticker.add("lost-calls", call_service.reap_lost_calls, LOST_CALLS_EVERY_S)
    return checkins
