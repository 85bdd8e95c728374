"""What every log line carries besides its message: the request it was written for.

dashboards.edge.RequestId sets `request_id` for each web request (the client's X-Request-ID
when well-formed, else a new one, and answers it in the same header); RequestIdFilter puts it
on every log record written meanwhile, threads of the request's thread pool included (they
run in a copy of its context), '-' outside any request. Ids, never personal data.
"""

from __future__ import annotations

import contextvars
import logging

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to each record (a handler's filter: every record it writes has one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or "-"
        return True


def install(handlers: list[logging.Handler] | None = None) -> None:
    """Put the filter on the root logger's handlers (or on `handlers`), once each."""
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
