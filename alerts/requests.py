"""Service requests (연계 요청): needs residents state on a routine call's conversation, in
their dong's queue apart from alerts; the only writer of anbu.service_requests.

A need the resident names ("반찬 좀 갖다 줘", "병원 같이 가 줄 사람") or a wish to talk to a
person becomes one request, with the resident's own words and a category. The care manager
accepts it, links it to a provider (연계 기관) and closes it; each step is a guarded update, so
two care managers acting at once never both win, and a request is only ever seen and changed by
a care manager whose dongs hold its resident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.queries import Dongs, dong_list
from core.db import keyset_page, keyset_params

# category -> (Korean, English): the programme's words
CATEGORIES: dict[str, tuple[str, str]] = {
    "meals": ("식사·반찬 지원", "meals"),
    "escort": ("병원 동행", "hospital escort"),
    "cleaning": ("청소·집안일", "cleaning and housework"),
    "visit": ("방문·말벗", "home visit, company"),
    "talk": ("상담 통화 요청", "asked to talk to a person"),
    "other": ("기타 요청", "other"),
}
STATES: dict[str, tuple[str, str]] = {
    "open": ("접수", "new"),
    "accepted": ("담당 지정", "taken"),
    "linked": ("기관 연계", "linked to a provider"),
    "closed": ("종결", "closed"),
}
# action -> (the states it may start from, the state it leads to)
ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "accept": (frozenset({"open"}), "accepted"),
    "link": (frozenset({"open", "accepted"}), "linked"),
    "close": (frozenset({"open", "accepted", "linked"}), "closed"),
}
_ANSWERS = ("meals", "escort", "cleaning", "visit", "other", "person")


class RequestNotFound(LookupError):
    """No such request among the residents of the dongs in view."""


class RequestChanged(Exception):
    """The request is not in a state the action may start from (another care manager acted)."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    id: int
    resident_id: int
    home: str
    dong_code: str
    display_name: str  # personal data: shown to the dong's care managers, never logged
    category: str
    words: str | None
    state: str
    provider: str | None
    note: str | None
    created_at: datetime
    updated_at: datetime
    accepted_by: int | None
    closed_by: int | None


_COLUMNS = """s.id, s.resident_id, r.home, r.dong_code, r.display_name, s.category, s.words, s.state, s.provider,
              s.note, s.created_at, s.updated_at, s.accepted_by, s.closed_by"""


def take_needs(conn: psycopg.Connection[Any], now: datetime, limit: int = 200) -> int:
    """Needs stated on calls and not yet in a queue: one request each, marked taken in the same
    transaction (a need is taken once, whoever runs this)."""
    rows = conn.execute(
        """WITH claimed AS (
               SELECT call_id, question FROM anbu.call_answers
               WHERE reported_at IS NULL AND label = ANY(%(labels)s)
               ORDER BY answered_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED),
           taken AS (
               UPDATE anbu.call_answers a SET reported_at = %(now)s FROM claimed c
               WHERE a.call_id = c.call_id AND a.question = c.question
               RETURNING a.resident_id, a.call_id, a.question, a.label, a.speech, a.answered_at)
           INSERT INTO anbu.service_requests (resident_id, call_id, question, category, words,
                                              created_at, updated_at)
           SELECT resident_id, call_id, question,
                  CASE label WHEN 'person' THEN 'talk' ELSE label END, speech, answered_at,
                  %(now)s
           FROM taken
           ON CONFLICT (call_id, question) DO NOTHING RETURNING id""",
        {"labels": list(_ANSWERS), "limit": limit, "now": now},
    ).fetchall()
    return len(rows)


def act(
    conn: psycopg.Connection[Any], request_id: int, manager_id: int, dongs: Dongs, action: str,
    now: datetime, provider: str | None = None, note: str | None = None,
) -> ServiceRequest:  # fmt: skip
    """Accept, link (to `provider`) or close a request of the dongs in view; RequestNotFound
    outside them, RequestChanged when its state does not allow the action."""
    starts, to = ACTIONS[action]
    get_request(conn, request_id, dongs)  # RequestNotFound outside the dongs in view
    row = conn.execute(
        """UPDATE anbu.service_requests SET state = %(to)s, updated_at = %(now)s,
               provider = COALESCE(%(provider)s, provider),
               note = COALESCE(%(note)s, note),
               accepted_by = CASE WHEN %(to)s = 'accepted' THEN %(manager)s
                                  ELSE COALESCE(accepted_by, %(manager)s) END,
               accepted_at = COALESCE(accepted_at, %(now)s),
               linked_at = CASE WHEN %(to)s = 'linked' THEN %(now)s ELSE linked_at END,
               closed_by = CASE WHEN %(to)s = 'closed' THEN %(manager)s ELSE closed_by END,
               closed_at = CASE WHEN %(to)s = 'closed' THEN %(now)s ELSE closed_at END
           WHERE id = %(id)s AND state = ANY(%(starts)s) RETURNING id""",
        {"to": to, "now": now, "provider": provider or None, "note": note or None,
         "manager": manager_id, "id": request_id, "starts": sorted(starts)},
    ).fetchone()  # fmt: skip
    if row is None:
        raise RequestChanged(get_request(conn, request_id, dongs).state)
    return get_request(conn, request_id, dongs)


def get_request(conn: psycopg.Connection[Any], request_id: int, dongs: Dongs) -> ServiceRequest:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"""SELECT {_COLUMNS} FROM anbu.service_requests s
                JOIN anbu.resident r ON r.id = s.resident_id
                WHERE s.id = %s AND r.dong_code = ANY(%s)""",  # nosec B608  # fixed column list
            (request_id, dong_list(dongs)),
        ).fetchone()
    if row is None:
        raise RequestNotFound(request_id)
    return ServiceRequest(**row)


def page_requests(
    conn: psycopg.Connection[Any], dongs: Dongs, open_only: bool = True, limit: int = 100,
    after: tuple[Any, ...] | None = None, resident_id: int | None = None,
) -> tuple[list[ServiceRequest], tuple[Any, ...] | None]:  # fmt: skip
    """The dongs' requests, oldest first (open ones only, unless `open_only` is False: then
    newest first), a page at a time; the page and the keyset of its last row when more follow."""
    order = "ASC" if open_only else "DESC"
    seek = ""
    if after is not None:
        seek = "AND (s.created_at, s.id) > (%(k0)s, %(k1)s)" if open_only else (
            "AND (s.created_at, s.id) < (%(k0)s, %(k1)s)")  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT {_COLUMNS} FROM anbu.service_requests s
                JOIN anbu.resident r ON r.id = s.resident_id
                WHERE r.dong_code = ANY(%(dongs)s)
                  AND (NOT %(open)s OR s.state <> 'closed')
                  AND (%(resident)s::bigint IS NULL OR s.resident_id = %(resident)s)
                  {seek}
                ORDER BY s.created_at {order}, s.id {order}
                LIMIT %(n)s""",  # nosec B608  # fixed fragments, values bound
            {"dongs": dong_list(dongs), "open": open_only, "resident": resident_id,
             "n": limit + 1, **keyset_params(after)},
        ).fetchall()  # fmt: skip
    items = [ServiceRequest(**r) for r in rows]
    return keyset_page(items, limit, lambda s: (s.created_at, s.id))
