"""The storing process: parses and stores batches for the consumer, in a process of its own.

paho's network thread and the storing code shared one interpreter, so they took turns under
the GIL. The consumer (ingest.consumer) now only receives and acknowledges; this child,
`python -m ingest.store_process`, gets batches of raw messages over a pipe, stores each
through `Store` in one transaction (retrying with backoff until it commits) and only then
answers with the batch's id. The consumer acknowledges a batch on that answer, never before.
A thread takes batches in as the parent sends them and parses the big ones while the
database stores the batch before (`Ahead`).

Three pipes join them: requests (batches, in order), replies (committed, failed attempt,
forwarded log record) and a stop pipe the child only watches: the parent closes it (or dies)
and the child leaves after the batch in hand, skipping any batch still queued (those are
not acknowledged: the broker keeps them). A child that dies mid-batch answers nothing, so
nothing of its batches is acknowledged; the parent starts another and sends them again.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import astuple, dataclass
from datetime import datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import psycopg

from ingest.dead_letter_limits import DeadLetterLimits
from ingest.store import (
    DEFAULT_LIMITS,
    BatchSummary,
    Message,
    Prepared,
    Store,
    insert_dead_letters,
    parse_ahead,
)

log = logging.getLogger(__name__)

# One message as it crosses the pipe: topic, payload, retain flag, time of receipt.
Item = tuple[str, bytes, bool, datetime]


@dataclass(frozen=True, slots=True)
class Config:
    """What the child needs to know, sent as its first request (not on the command line)."""

    conninfo: str
    future_tolerance_s: int
    log_level: int
    retry_max_s: float
    dead_letters: DeadLetterLimits = DEFAULT_LIMITS


# Replies, child to parent:
#   ("done", batch id, BatchSummary fields)  the batch committed
#   ("error", batch id)                      an attempt failed; it is being retried
#   ("log", LogRecord attributes)            a log record of the child's, for the parent's logging
Reply = tuple[Any, ...]


class StoreProcess:
    """The parent's handle on one storing child: send batches, read replies, stop, kill."""

    def __init__(self, config: Config) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        stop_r, stop_w = os.pipe()
        for fd in (req_w, rep_w):
            _grow_pipe(fd)
        root = str(Path(__file__).resolve().parent.parent)  # where `ingest` is importable from
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        fds = (req_r, rep_w, stop_r)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingest.store_process", *map(str, fds)],
                pass_fds=fds,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (*fds, req_w, rep_r, stop_w):
                os.close(fd)
            raise
        for fd in fds:
            os.close(fd)
        self._requests = Connection(req_w, readable=False)
        self._replies = Connection(rep_r, writable=False)
        self._stop_w: int | None = stop_w
        self._requests.send(config)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, batch_id: int, now: datetime, items: Sequence[Item]) -> None:
        """Queue a batch; raises OSError once the child is gone."""
        self._requests.send((batch_id, now, items))

    def recv(self) -> Reply:
        """The next reply; raises EOFError (or OSError) once the child is gone."""
        reply: Reply = self._replies.recv()
        return reply

    def stop(self) -> None:
        """Ask the child to leave after the batch in hand (it answers for that one)."""
        if self._stop_w is not None:
            os.close(self._stop_w)
            self._stop_w = None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        """Release the parent's ends of the pipes and reap the child (stop() or kill() first)."""
        self.stop()
        self._requests.close()
        self._replies.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _grow_pipe(fd: int) -> None:
    """A bigger pipe (Linux): a whole batch fits in it, so the parent rarely waits on a write."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass


# -- the child ------------------------------------------------------------------------------


class OneConnection:
    """One connection, opened on demand and opened again after it broke; `connection()` is
    one transaction, as `Database.connection()` is (the child stores one batch at a time)."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: psycopg.Connection[Any] | None = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._conn = None
            conn = psycopg.connect(self._conninfo, autocommit=False, connect_timeout=10)
            self._conn = conn
        try:
            yield conn
        except BaseException:
            if not conn.broken and not conn.closed:
                conn.rollback()
            raise
        conn.commit()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Replies:
    """The reply pipe, one sender at a time: the parsing thread logs too (`_ToParent`), and two
    writes at once would interleave their bytes."""

    def __init__(self, pipe: Connection) -> None:
        self._pipe = pipe
        self._lock = threading.Lock()

    def send(self, reply: Reply) -> None:
        with self._lock:
            self._pipe.send(reply)


Batch = tuple[int, datetime, list[Message], Prepared | None]


SWITCH_S = 0.0005
"""How long the preparing thread may hold the GIL while the storing thread waits for it
(Python's default: 5 ms). The storing thread wakes each time the database has taken a piece
of the COPY data or answered, and needs the GIL for a moment to go on: at 5 ms a wake, the
database sat idle for most of each batch's COPY while the next batch was being prepared."""


PARSE_AHEAD_BYTES = 256 * 1024
"""Batches of at least this many payload bytes are parsed in the taking-in thread."""


class Ahead:
    """The batches the parent sends, taken in by a thread as they come and prepared there.

    Parsing, resolving through the registry and making the COPY columns are most of the
    storing process's work and need no database (`Store.prepare`): a batch is prepared while
    the database stores the batch before it (the process would otherwise wait on the server,
    idle, and the server on it). The thread is the only reader of the request pipe;
    the parent sends a bounded number of batches ahead of their answers (ingest.consumer), so
    it holds at most those. A batch ready to take wakes `wait()` through `fileno()`. When the
    pipe ends (the parent is gone), `recv` raises EOFError once the batches before it are
    taken.
    """

    def __init__(self, requests: Connection, store: Store, future_tolerance_s: int) -> None:
        self._requests = requests
        self._store = store
        self._tolerance = future_tolerance_s
        self._said = False  # a failure to prepare ahead was logged
        self._ready: queue.SimpleQueue[Batch | BaseException] = queue.SimpleQueue()
        self._signal_r, self._signal_w = os.pipe()  # one byte per batch ready
        self._thread = threading.Thread(target=self._take_in, name="parse-ahead", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._signal_r

    def poll(self) -> bool:
        """Whether a parsed batch is there to take without waiting."""
        return not self._ready.empty()

    def recv(self) -> Batch:
        """The next batch, parsed (waits for it when none is ready)."""
        batch = self._ready.get()
        os.read(self._signal_r, 1)
        if isinstance(batch, BaseException):
            self._put(batch)  # every later call says so too
            if isinstance(batch, EOFError | OSError):
                raise EOFError("the request pipe ended") from batch
            raise RuntimeError("taking in a batch failed") from batch  # exits non-zero
        return batch

    def _take_in(self) -> None:
        try:
            while True:
                batch_id, now, items = self._requests.recv()
                if sum(len(payload) for _, payload, _, _ in items) >= PARSE_AHEAD_BYTES:
                    messages = self._parse(items, now)
                    try:
                        prepared: Prepared | None = self._store.prepare(messages, now)
                    except Exception:  # prepared again when stored, where it is handled
                        prepared = None
                        if not self._said:  # once: a message that fails here fails there too
                            self._said = True
                            log.warning("preparing a batch ahead failed", exc_info=True)
                    self._put((batch_id, now, messages, prepared))
                else:  # prepared when stored: a small batch's work here would only hold
                    # the GIL from the storing thread between its round trips to the database
                    messages = [Message(t, p, r, at) for t, p, r, at in items]
                    self._put((batch_id, now, messages, None))
        except (EOFError, OSError) as exc:  # the parent is gone
            self._put(exc)
        except BaseException as exc:  # said, and the process leaves: the parent starts another
            log.exception("taking in a batch failed")
            self._put(exc)

    def _put(self, batch: Batch | BaseException) -> None:
        self._ready.put(batch)
        try:
            os.write(self._signal_w, b"\0")
        except OSError:  # the batch would wait unseen: leave, and the parent starts another
            log.exception("the storing process cannot signal a batch taken in")
            os._exit(1)

    def _parse(self, items: Sequence[Item], now: datetime) -> list[Message]:
        tolerance = self._tolerance
        out = []
        for t, p, r, at in items:
            message = Message(t, p, r, at)
            # on a failure, parsed again when stored, where one message's failure is isolated
            with suppress(Exception):
                message = parse_ahead(message, now, tolerance)
            out.append(message)
        return out


class _ToParent(logging.Handler):
    """Sends each log record to the parent, which hands it to its own logging."""

    def __init__(self, replies: Replies) -> None:
        super().__init__()
        self._replies = replies

    def emit(self, record: logging.LogRecord) -> None:
        try:
            attrs = dict(record.__dict__)
            attrs["msg"] = record.getMessage()
            attrs["args"] = None
            if record.exc_info:
                attrs["exc_text"] = logging.Formatter().formatException(record.exc_info)
            attrs["exc_info"] = None
            self._replies.send(("log", attrs))
        except Exception:
            self.handleError(record)


def serve(requests: Connection, replies: Connection, stop: Connection) -> None:
    """The child's loop: a batch in, stored and committed, its id out; until told to stop."""
    try:
        config: Config = requests.recv()
    except EOFError:
        return
    out = Replies(replies)
    root = logging.getLogger()
    root.handlers[:] = [_ToParent(out)]
    root.setLevel(config.log_level)
    db = OneConnection(config.conninfo)
    store = Store(db, config.future_tolerance_s, dead_letters=config.dead_letters)
    ahead = Ahead(requests, store, config.future_tolerance_s)
    # A batch makes some ten objects a reading, all let go with the batch and none in a
    # cycle. At the default threshold (700) the collector ran every few dozen readings and
    # walked the batch's live objects each time: a third of the parsing (`anbu bench ingest`).
    # What this process set up is kept out of its walks; the rest is collected every 100,000.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    sys.setswitchinterval(SWITCH_S)
    try:
        while True:
            # stopping, or the parent is gone: batches taken in but not stored are let go
            if stop in wait([ahead.fileno(), stop]):
                return
            batch_id, now, messages, prepared = ahead.recv()
            summaries = store_isolating(
                store, db, [(batch_id, messages)], now, config.retry_max_s, stop, out, ahead,
                prepared,
            )  # fmt: skip
            if summaries is None:  # stopping (or the parent is gone): not all stored
                return
            for done_id, summary in summaries:
                out.send(("done", done_id, astuple(summary)))
    except (BrokenPipeError, EOFError):  # the parent is gone
        return
    finally:
        db.close()


SPLIT_AFTER = 3
"""Failed attempts of a whole batch before it is split to find the message that fails."""


# SQLSTATE classes in which the database judges one message's rows: a value (22), a
# constraint (23), a trigger's or function's refusal (P0, 2F, 38, 39), something it cannot do
# with these rows (0A: a compressed chunk), an internal error (XX). Every other class is about
# the database itself (down, busy, full, locked: 08, 40, 53, 55, 57) or its schema and
# permissions (42: a missing table refuses every message alike): those pass, or are fixed, and
# are retried.
MESSAGE_CLASSES = ("22", "23", "P0", "2F", "38", "39", "0A", "XX")


def refuses_data(exc: BaseException) -> bool:
    """Whether the database refused the data of the statement, not the statement itself."""
    state = getattr(exc, "sqlstate", None)
    return isinstance(exc, psycopg.Error) and bool(state) and str(state)[:2] in MESSAGE_CLASSES


def may_be_poison(exc: BaseException, db: OneConnection) -> bool:
    """Whether a failure can be one message's fault, rather than one that passes by itself or
    that every message would meet."""
    if isinstance(exc, psycopg.Error) and not refuses_data(exc):
        return False
    try:  # a refusal of this message, or is the database itself unwell?
        with db.connection() as conn:
            conn.execute("SELECT 1")
    except Exception:
        return False
    return True


def store_isolating(
    store: Store,
    db: OneConnection,
    batches: list[tuple[int, list[Message]]],
    now: datetime,
    retry_max_s: float,
    stop: Connection,
    replies: Replies,
    requests: Ahead,
    prepared: Prepared | None = None,
) -> list[tuple[int, BatchSummary]] | None:
    """Store the batches, committed, before returning what each amounted to (None: told to
    stop, and not all of them stored).

    Retries with backoff while the failure may pass. A batch that keeps failing for a reason
    that does not pass is halved until the message that fails on its own is found; that one
    goes to the dead letters with the reason, and everything else is stored. One poison
    message (a database refusal, a bug that only its payload meets) thus costs one dead
    letter, never the stream. A message is judged on its own only when other messages were
    stored meanwhile: a fault that every message meets (the database down, busy or full, its
    schema or permissions, a bad deploy, a migration that refuses every row) is retried,
    never dead-lettered. A message that fails alone, with nothing beside it, takes in the next
    batch the parent has queued and tries that first, for the evidence. `prepared` (the first
    batch's, made ahead) serves its first attempt only: any later one prepares afresh.
    """
    summaries: dict[int, list[BatchSummary]] = {bid: [] for bid, _ in batches}
    pending: list[tuple[int, list[Message]]] = list(batches)
    first_id = batches[0][0]
    stored_here = False  # some message stored since this call began
    parked = 0  # failing messages moved behind the rest while nothing has been stored
    failures = 0  # of the chunk at the head of `pending`, in a row
    delay = 0.05
    while pending:
        bid, chunk = pending[0]
        ready, prepared = prepared, None
        try:
            summaries[bid].append(store.store_batch(chunk, now, ready))
            stored_here, parked = True, 0
        except Exception as exc:
            replies.send(("error", first_id))
            failures += 1
            isolating = (
                len(pending) > 1 or len(chunk) < len(batches[0][1]) or failures >= SPLIT_AFTER
            )
            if isolating and may_be_poison(exc, db):
                if len(chunk) > 1:
                    half = len(chunk) // 2
                    pending[0:1] = [(bid, chunk[:half]), (bid, chunk[half:])]
                    log.warning(
                        "a batch keeps failing; splitting it",
                        extra={"size": len(chunk), "error": type(exc).__name__},
                    )
                    failures = 0
                    continue
                if not stored_here:  # a fault every message meets, or only this one?
                    if parked < len(pending) - 1:  # try the rest first
                        pending.append(pending.pop(0))
                        parked, failures = parked + 1, 0
                        continue
                    if requests.poll():  # take in what the parent has queued, for evidence
                        more_id, _more_now, more, _ = requests.recv()
                        summaries[more_id] = []
                        pending.insert(0, (more_id, more))
                        parked, failures = 0, 0
                        continue
                    log.exception("storing a message failed; retrying")
                    parked = 0
                    # woken early by a batch taken in meanwhile: the evidence sought above
                    if stop in wait([stop, requests.fileno()], delay):
                        return None
                    delay = min(delay * 2, retry_max_s)
                    continue
                reason = f"refused when stored on its own: {type(exc).__name__}: {exc}"[:500]
                log.error(
                    "a message fails on its own; dead-lettered",
                    extra={"topic": chunk[0].topic, "error": type(exc).__name__},
                )
                try:
                    with db.connection() as conn:
                        insert_dead_letters(conn, [(chunk[0], reason)], now, store.dead_letters)
                except Exception:
                    log.exception("storing a dead letter failed; retrying")
                else:
                    summaries[bid].append(_dead_lettered(len(chunk)))
                    pending.pop(0)
                    failures, delay = 0, 0.05
                    continue
            else:
                log.exception("storing a batch failed; retrying", extra={"size": len(chunk)})
            if wait([stop], delay):  # stopping (or the parent is gone): not stored
                return None
            delay = min(delay * 2, retry_max_s)
            continue
        pending.pop(0)
        failures, delay = 0, 0.05
    return [(bid, _sum(parts)) for bid, parts in summaries.items()]


def _dead_lettered(n: int) -> BatchSummary:
    return BatchSummary(
        messages=n, stored=0, duplicates=0, dead_lettered=n, statuses=0, homes_active=0
    )


def _sum(parts: list[BatchSummary]) -> BatchSummary:
    if not parts:
        return _dead_lettered(0)
    fields = [sum(col) for col in zip(*(astuple(p) for p in parts), strict=True)]
    return BatchSummary(*fields)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    req_fd, rep_fd, stop_fd = (int(a) for a in args[:3])
    # The parent decides when this process ends (stop pipe, or its own death): a Ctrl-C meant
    # for the process group must not cut a batch short and look like a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = Connection(req_fd, writable=False)
    replies = Connection(rep_fd, readable=False)
    stop = Connection(stop_fd, writable=False)
    serve(requests, replies, stop)


if __name__ == "__main__":
    main()
