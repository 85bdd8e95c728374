"""Webhook subscriptions under /api/v1/webhooks (issue 22): a district admin subscribes the
city's system to the event feed, pauses, resumes and deletes, and reads each delivery attempt.

Only admins (Action.WEBHOOKS) reach these; everything is scoped to the admin's district (another
district's subscription answers 404). The secret is answered once, at creation. Refusals say
why in Korean first (dashboards.i18n `webhook_*`), with a machine-readable `code`.
"""

# No `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime.
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

from alerts import webhooks
from alerts.webhook_targets import URL_MAX, TargetRefused
from core.crypto import DataKeyError
from dashboards import idempotency, paging
from dashboards.auth import CareManager
from dashboards.authz import Action, api_actor
from dashboards.deps import Deps, get_deps
from dashboards.enrolment_access import keyring_of
from dashboards.paging import PageCursor, PageLimit
from dashboards.problems import REFUSAL, refused

log = logging.getLogger(__name__)

AppDeps = Annotated[Deps, Depends(get_deps)]
Admin = Annotated[CareManager, Depends(api_actor(Action.WEBHOOKS))]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not a district admin", **REFUSAL},
    404: {"description": "No such subscription in your district", **REFUSAL},
}


class WebhookIn(BaseModel):
    url: str = Field(
        max_length=URL_MAX,
        description="https URL receiving the POSTs; private, internal and loopback addresses "
        "are refused (422 webhook_url_invalid / webhook_https_required / "
        "webhook_address_refused / webhook_address_unresolved)",
    )
    dongs: list[str] | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Dong codes of your district it covers; null: the whole district, dongs "
        "added later included (422 webhook_dongs otherwise)",
    )
    description: str = Field("", max_length=200)


class WebhookOut(BaseModel):
    id: int
    url: str
    description: str
    district: str
    dongs: list[str] | None = Field(description="null: every dong of the district")
    state: Literal["active", "paused"]
    paused_reason: Literal["admin", "failing"] | None = Field(
        description="failing: the worker paused it after failing too long (resume to retry)"
    )
    state_changed_at: datetime = Field(description="UTC")
    state_changed_by: str = Field(description="care_manager:<id> or system")
    created_by: int
    created_at: datetime = Field(description="UTC")
    failing_since: datetime | None = Field(description="First failure since the last success")
    last_success_at: datetime | None
    pending: int = Field(description="Events waiting to be delivered")
    last_error: str | None = Field(description="The latest attempt's failure, if it failed")

    @classmethod
    def of(cls, s: webhooks.Subscription) -> "WebhookOut":
        return cls(
            id=s.id, url=s.url, description=s.description, district=s.district,
            dongs=list(s.dongs) if s.dongs is not None else None,
            state=s.state, paused_reason=s.paused_reason,  # type: ignore[arg-type]
            state_changed_at=s.state_changed_at, state_changed_by=s.state_changed_by,
            created_by=s.created_by, created_at=s.created_at, failing_since=s.failing_since,
            last_success_at=s.last_success_at, pending=s.pending, last_error=s.last_error,
        )  # fmt: skip


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(
        description="Signs every delivery (Anbu-Signature: v1=HMAC-SHA256 of "
        "'<Anbu-Timestamp>.<body>'); shown this once only"
    )


class DeliveryAttemptOut(BaseModel):
    """One POST of one event; never its body."""

    id: int
    event_seq: int = Field(description="The event's feed seq, sent as Anbu-Event-Id")
    attempt: int = Field(description="1 for the first try of this event")
    at: datetime = Field(description="UTC")
    duration_ms: int
    ok: bool = Field(description="The receiver answered 2xx")
    http_status: int | None
    error: str | None = Field(
        description="The failure's class: http_status, timeout, connect, address_refused, "
        "address_unresolved, data_key..."
    )
    next_attempt_at: datetime | None = Field(description="When it is tried again (UTC)")

    @classmethod
    def of(cls, a: webhooks.Attempt) -> "DeliveryAttemptOut":
        return cls(
            id=a.id, event_seq=a.seq, attempt=a.attempt, at=a.at, duration_ms=a.duration_ms,
            ok=a.ok, http_status=a.http_status, error=a.error, next_attempt_at=a.next_attempt_at,
        )  # fmt: skip


def _not_found() -> JSONResponse:
    return refused(404, "webhook_not_found")


def webhooks_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
    scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)
    secured = [Security(scheme)]

    @router.post(
        "",
        status_code=201,
        response_model=WebhookCreatedOut,
        dependencies=secured,
        openapi_extra=idempotency.WITHHELD,  # the signing secret is shown once
        responses={
            403: _NOT_FOUND[403],
            422: {"description": "The URL or the dongs refused (`code` says why)", **REFUSAL},
            503: {"description": "The secret cannot be sealed (data key)", **REFUSAL},
        },
    )
    def create_webhook(body: WebhookIn, admin: Admin, deps: AppDeps) -> Any:
        """Subscribe a URL to the events of the district (or some of its dongs) from now on:
        each POSTed in the feed's order, signed, retried until it succeeds."""
        s = deps.settings
        try:
            keyring = keyring_of(deps)
            with deps.db.connection() as conn:
                made, secret = webhooks.create(
                    conn, keyring, district=admin.district,
                    district_dongs=admin.district_dongs or (admin.dong_code,),
                    dongs=body.dongs, url=body.url, description=body.description, by=admin.id,
                    now=deps.clock.now(), allow_loopback=s.event_webhooks_allow_loopback,
                )  # fmt: skip
        except TargetRefused as exc:
            return refused(422, f"webhook_{exc.code}")
        except webhooks.DongsRefused:
            return refused(422, "webhook_dongs")
        except DataKeyError:
            log.error("webhook secret could not be sealed")
            return refused(503, "data_key")
        log.info("webhook subscription created", extra={"subscription_id": made.id})
        return WebhookCreatedOut(**WebhookOut.of(made).model_dump(), secret=secret)

    @router.get(
        "",
        response_model=paging.Page[WebhookOut],
        dependencies=secured,
        responses={403: _NOT_FOUND[403]},
    )
    def list_webhooks(
        admin: Admin, deps: AppDeps, limit: PageLimit = paging.LIMIT_DEFAULT,
        cursor: PageCursor = None,
    ) -> Any:  # fmt: skip
        """The district's subscriptions (paused ones with why), a page at a time."""
        after = paging.place_or_400("webhooks", cursor)
        with deps.db.connection() as conn:
            found, place = webhooks.page(conn, admin.district, limit, after)
        return paging.page("webhooks", [WebhookOut.of(s) for s in found], place)

    @router.get(
        "/{webhook_id}", response_model=WebhookOut, dependencies=secured, responses=_NOT_FOUND
    )
    def get_webhook(webhook_id: int, admin: Admin, deps: AppDeps) -> Any:
        try:
            with deps.db.connection() as conn:
                return WebhookOut.of(webhooks.get(conn, admin.district, webhook_id))
        except webhooks.SubscriptionNotFound:
            return _not_found()

    @router.post(
        "/{webhook_id}/pause",
        response_model=WebhookOut,
        dependencies=secured,
        responses=_NOT_FOUND,
    )
    def pause_webhook(webhook_id: int, admin: Admin, deps: AppDeps) -> Any:
        """Stop deliveries; events keep being queued for it, delivered when resumed."""
        try:
            with deps.db.connection() as conn:
                done = webhooks.pause(conn, admin.district, webhook_id, admin.id, deps.clock.now())
        except webhooks.SubscriptionNotFound:
            return _not_found()
        return WebhookOut.of(done)

    @router.post(
        "/{webhook_id}/resume",
        response_model=WebhookOut,
        dependencies=secured,
        responses=_NOT_FOUND,
    )
    def resume_webhook(webhook_id: int, admin: Admin, deps: AppDeps) -> Any:
        """Deliver again, what waited first and in order (a subscription paused for failing
        is resumed the same way)."""
        try:
            with deps.db.connection() as conn:
                done = webhooks.resume(conn, admin.district, webhook_id, admin.id, deps.clock.now())
        except webhooks.SubscriptionNotFound:
            return _not_found()
        return WebhookOut.of(done)

    @router.delete("/{webhook_id}", status_code=204, dependencies=secured, responses=_NOT_FOUND)
    def delete_webhook(webhook_id: int, admin: Admin, deps: AppDeps) -> Response:
        """No more deliveries; its secret is dropped, its delivery log kept."""
        try:
            with deps.db.connection() as conn:
                webhooks.delete(conn, admin.district, webhook_id, admin.id, deps.clock.now())
        except webhooks.SubscriptionNotFound:
            return _not_found()
        log.info("webhook subscription deleted", extra={"subscription_id": webhook_id})
        return Response(status_code=204)

    @router.get(
        "/{webhook_id}/deliveries",
        response_model=paging.Page[DeliveryAttemptOut],
        dependencies=secured,
        responses=_NOT_FOUND,
    )
    def webhook_deliveries(
        webhook_id: int, admin: Admin, deps: AppDeps, limit: PageLimit = paging.LIMIT_DEFAULT,
        cursor: PageCursor = None,
    ) -> Any:  # fmt: skip
        """Every delivery attempt, newest first: when, the receiver's HTTP status or the
        failure's class, how long it took; never the event's body."""
        after = paging.place_or_400("webhook-attempts", cursor)
        try:
            with deps.db.connection() as conn:
                found, place = webhooks.attempts_page(
                    conn, admin.district, webhook_id, limit, after
                )
        except webhooks.SubscriptionNotFound:
            return _not_found()
        return paging.page("webhook-attempts", [DeliveryAttemptOut.of(a) for a in found], place)

    return router
