"""A background thread that applies the engine's writes to SQLite in batches.

The event loop only queues statements, so a slow disk or an operator's long query
holding the database lock never stalls signalling. Statements run in submission
order, a batch per transaction; under load at most one transaction per
``COMMIT_INTERVAL`` (group commit); ``close`` drains the queue, so a graceful stop loses
nothing.

A batch that finds the database locked by another connection (an operator's
transaction, a backup) is retried until the lock goes, however long that takes: the
lock is someone else's and temporary, and giving up would lose CDRs. Meanwhile the
queue grows by about 2 KB per call (its four or five statements). Any other error is
retried ``ATTEMPTS`` times, then the batch is dropped and counted in ``failed``.

A stop that finds the database still locked after ``close``'s wait does not lose the
queue either: the writes not committed go, in order, to a file beside the database
(``<db>.unwritten-<time>.jsonl``, one ``[sql, params]`` per line), and the next start
applies every such file before anything else touches the database (:func:`replay`).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from b2bua.storage import db

log = logging.getLogger("b2bua.storage")

BATCH = 500
# Group commit under load: after a batch of at least GROUP_MIN writes, the next
# transaction waits until COMMIT_INTERVAL has passed, so the writes of many calls share a
# commit (a commit costs more than the rows it carries). A quiet engine commits at once:
# a CDR is readable (and safe from a kill -9) as soon as the thread has written it.
COMMIT_INTERVAL = 0.02
GROUP_MIN = 16
ATTEMPTS = 5
# While the database stays locked, one warning per this many busy timeouts.
LOCKED_LOG_EVERY = 12
LOCKED_PAUSE = 0.05

Statement = tuple[str, Sequence[Any]]


class DbWriter:
    def __init__(self, db_path: Path, name: str = "db-writer") -> None:
        self._queue: queue.SimpleQueue[Statement | None] = queue.SimpleQueue()
        self._db_path = db_path
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.written = 0
        self.failed = 0
        # Set by ``close`` when the lock outlasts its wait: stop retrying, hand back.
        self._abandon = threading.Event()
        self._unwritten: list[Statement] = []

    def start(self) -> None:
        self._thread.start()

    @property
    def pending(self) -> int:
        """Writes queued and not yet applied (a backlog that grows: the disk or the
        database cannot keep up, or another connection holds the lock)."""
        return self._queue.qsize()

    def snapshot(self) -> dict[str, int]:
        return {"pending": self.pending, "written": self.written, "failed": self.failed}

    def submit(self, sql: str, params: Sequence[Any]) -> None:
        self._queue.put((sql, params))

    def close(self, timeout: float = 10.0) -> Path | None:
        """Write what is queued and stop. If the database is still locked after
        ``timeout`` seconds, what is not written goes to a file the next start applies;
        returns that file (None when everything was written)."""
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()
            # The try under way ends within SQLite's busy timeout.
            self._thread.join(db.BUSY_TIMEOUT_MS / 1000 + 1.0)
        left = list(self._unwritten)
        if self._thread.is_alive():
            # Hung in a write that may still commit: only the queue is surely unwritten.
            log.error("database writer did not stop; the batch it holds may be lost")
        left += _drain(self._queue)
        return spill(self._db_path, left) if left else None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (tests and shutdown)."""
        done = threading.Event()
        self._queue.put(("", (done,)))
        return done.wait(timeout)

    def _run(self) -> None:
        conn = db.connect(self._db_path)
        next_commit = 0.0
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                pause = next_commit - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # let more writes join this transaction
                batch = [first]
                stop = False
                while len(batch) < BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                if not self._write(conn, batch):
                    self._unwritten += [item for item in batch if item[0]]
                    self._unwritten += _drain(self._queue)
                    return
                busy = len(batch) >= GROUP_MIN
                next_commit = time.monotonic() + COMMIT_INTERVAL if busy else 0.0
                if stop:
                    return
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list[Statement]) -> bool:
        """Apply one batch in one transaction; False when abandoned unwritten (locked at
        a stop that could not wait longer)."""
        markers = [params[0] for sql, params in batch if not sql]
        statements = [(sql, params) for sql, params in batch if sql]
        failures = locked = 0
        while True:
            try:
                with db.transaction(conn):
                    for sql, params in statements:
                        conn.execute(sql, params)
                self.written += len(statements)
                if locked:
                    log.info("database lock released; %d writes applied", len(statements))
                break
            except sqlite3.Error as exc:
                # Never retry inside a transaction left open (e.g. a failed COMMIT): the
                # batch would be applied twice.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _is_locked(exc):
                    if self._abandon.is_set():
                        for marker in markers:
                            marker.set()
                        return False
                    # A try waits up to the busy timeout inside SQLite; the pause only
                    # keeps a lock that fails at once (SQLITE_LOCKED) from spinning.
                    if locked % LOCKED_LOG_EVERY == 0:
                        log.warning("database locked by another connection; %d writes "
                                    "waiting (%s)", len(statements), exc)
                    locked += 1
                    time.sleep(LOCKED_PAUSE)
                    continue
                failures += 1
                log.warning("database write failed (attempt %d): %s", failures, exc)
                if failures >= ATTEMPTS:
                    self.failed += len(statements)
                    log.error("dropped %d database writes after repeated failures",
                              len(statements))
                    break
        for marker in markers:
            marker.set()
        return True


def _drain(q: queue.SimpleQueue[Statement | None]) -> list[Statement]:
    out: list[Statement] = []
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return out
        if item is not None and item[0]:  # not the stop mark nor a flush marker
            out.append(item)


def spill(db_path: Path, statements: list[Statement]) -> Path | None:
    """Save statements not written (in order) for :func:`replay` at the next start;
    None when the file cannot be written (they are lost: logged)."""
    path = db_path.with_name(f"{db_path.name}.unwritten-{time.time():.6f}.jsonl")
    kept = 0
    try:
        with open(path, "w", encoding="utf-8") as out:
            for sql, params in statements:
                try:
                    line = json.dumps([sql, list(params)])
                except (TypeError, ValueError):
                    log.error("database write not saved (parameters not serialisable): %s",
                              sql)
                    continue
                out.write(line + "\n")
                kept += 1
    except OSError as exc:
        log.error("database still locked at stop and %s not writable (%s): %d writes lost",
                  path, exc, len(statements))
        return None
    log.error("database still locked at stop: %d writes saved to %s; the next start "
              "applies them", kept, path)
    return path


def replay(conn: sqlite3.Connection, db_path: Path) -> int:
    """Apply, oldest first, the files of writes a locked stop left (one transaction per
    file, then the file is removed); returns the number of statements applied.

    A database still locked raises, as crash recovery would next: the start fails and is
    retried with the files intact. A file that cannot be applied (damaged, or refused by
    the schema) is renamed ``*.rejected`` and logged, so that a later start does not
    apply it after recovery has already turned its calls into interrupted CDRs.
    """
    applied = 0
    for path in sorted(db_path.parent.glob(f"{db_path.name}.unwritten-*.jsonl")):
        try:
            statements = [json.loads(line) for line in
                          path.read_text(encoding="utf-8").splitlines() if line.strip()]
            with db.transaction(conn):
                for sql, params in statements:
                    conn.execute(sql, params)
        except sqlite3.Error as exc:
            if _is_locked(exc):
                raise
            _reject(path, exc)
            continue
        except (OSError, ValueError, TypeError) as exc:
            _reject(path, exc)
            continue
        path.unlink()
        applied += len(statements)
        log.warning("applied %d database writes saved at a locked stop (%s)",
                    len(statements), path.name)
    return applied


def _reject(path: Path, exc: Exception) -> None:
    rejected = path.with_name(path.name + ".rejected")
    try:
        path.rename(rejected)
    except OSError:
        rejected = path
    log.error("could not apply the saved database writes in %s (%s); left as %s",
              path.name, exc, rejected)


def _is_locked(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
