"""A background thread that applies the engine's writes to the database in batches.

The event loop only queues statements, so a slow disk or an operator's long query
holding the database lock never stalls signalling. Statements run in submission
order, a batch per transaction; under load at most one transaction per
``COMMIT_INTERVAL`` (group commit); ``close`` drains the queue, so a graceful stop loses
nothing.

A batch that finds the database locked by another connection (an operator's
transaction, a backup; ``BusyError``) or out of reach (a database server restarting;
``UnavailableError``) is retried until that ends, however long it takes: the cause is
outside the engine and temporary, and giving up would lose CDRs. Meanwhile the queue
grows by about 2 KB per call (its four or five statements), up to ``MAX_PENDING``
statements; past that, the waiting writes go, in order, to a file (as at a locked stop,
below) and memory stays bounded. Once the database is back, the batch in hand is
written first, then those files, oldest first, then the queue: the order in which the
calls submitted them. Every statement the engine submits can be applied twice with
the effect of once (CDRs by their ``cdr_uuid``, notes and bindings by upsert), so a
batch whose commit outcome was unknown is simply applied again. Any other error is
retried ``ATTEMPTS`` times, then the batch is dropped and counted in ``failed``.

A stop that finds the database still locked after ``close``'s wait does not lose the
queue either: the writes not committed go, in order, to a file (``<base>.unwritten-
<time>.jsonl``, one ``[sql, params]`` per line; :func:`spill_base` says where), and the
next start applies every such file before anything else touches the database
(:func:`replay`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from b2bua.storage import db, is_postgres, open_database, sqlite_path
from b2bua.storage.backend import BusyError, Database, StorageError, UnavailableError

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
# A database server out of reach fails each try at once: retried at this pace instead.
UNAVAILABLE_PAUSE = 1.0
# Statements kept in memory while the database cannot take them (about 2 KB per call of
# four or five statements: some 80 MB); the rest waits in files.
MAX_PENDING = 200_000

Statement = tuple[str, Sequence[Any]]
# Errors that pass by themselves: waited out, never counted against ATTEMPTS.
_WAIT = (BusyError, UnavailableError)


def spill_base(target: str | Path, var_dir: Path) -> Path:
    """What the files of writes saved at a locked stop are named after: a SQLite file
    (they lie beside it), else ``database`` in the engine's folder ``var_dir``."""
    return var_dir / "database" if is_postgres(target) else sqlite_path(target)


class DbWriter:
    def __init__(self, target: str | Path, spill_to: Path | None = None,
                 name: str = "db-writer") -> None:
        """Writes to the database at ``target``; what a locked stop leaves is saved
        under ``spill_to`` (default: beside a SQLite file)."""
        self._queue: queue.SimpleQueue[Statement | None] = queue.SimpleQueue()
        self._target = target
        if spill_to is None and is_postgres(target):
            raise ValueError("a database server's writer needs a folder to save writes in")
        self._spill_to = spill_to if spill_to is not None else sqlite_path(target)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.written = 0
        self.failed = 0
        # Set by ``close`` when the lock outlasts its wait: stop retrying, hand back.
        self._abandon = threading.Event()
        self._unwritten: list[Statement] = []
        # While the database is away: files of writes moved out of the queue (oldest
        # first), and the flush markers behind them, set once those files are applied.
        self._overflow: list[Path] = []
        self._held: list[threading.Event] = []
        self._front: list[Statement] = []  # writes a full disk kept from their file
        self.spilled = 0
        self.waiting = False  # the database refuses writes now (locked or unreachable)

    def start(self) -> None:
        self._thread.start()

    @property
    def pending(self) -> int:
        """Writes queued and not yet applied (a backlog that grows: the disk or the
        database cannot keep up, or another connection holds the lock)."""
        return self._queue.qsize()

    def snapshot(self) -> dict[str, int | bool]:
        return {"pending": self.pending, "written": self.written, "failed": self.failed,
                "spilled": self.spilled, "waiting": self.waiting,
                "spill_files": len(self._overflow)}

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
            # The try under way ends within the database's busy timeout.
            self._thread.join(db.BUSY_TIMEOUT_MS / 1000 + 1.0)
        left = list(self._unwritten)
        if self._thread.is_alive():
            # Hung in a write that may still commit: only the queue is surely unwritten.
            log.error("database writer did not stop; the batch it holds may be lost")
        left += _drain(self._queue)
        return spill(self._spill_to, left) if left else None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (tests and shutdown)."""
        done = threading.Event()
        self._queue.put(("", (done,)))
        return done.wait(timeout)

    def _run(self) -> None:
        database = self._open()
        if database is None:
            self._unwritten += _drain(self._queue)
            return
        next_commit = 0.0
        try:
            while True:
                first = self._front.pop(0) if self._front else self._queue.get()
                if first is None:
                    return
                pause = next_commit - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # let more writes join this transaction
                batch = [first]
                stop = False
                while len(batch) < BATCH:
                    try:
                        item = self._front.pop(0) if self._front else self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                if not self._write(database, batch) or not self._catch_up(database):
                    self._unwritten += [item for item in batch if item[0]]
                    self._unwritten += self._front + _drain(self._queue)
                    return
                busy = len(batch) >= GROUP_MIN
                next_commit = time.monotonic() + COMMIT_INTERVAL if busy else 0.0
                if stop:
                    return
        finally:
            database.close()

    def _catch_up(self, database: Database) -> bool:
        """After the database came back: the files the queue's overflow went to, oldest
        first, before anything newer; False when a stop came while they waited."""
        while self._overflow:
            path = self._overflow[0]
            try:
                applied = _apply_file(database, path)
            except _WAIT:
                if self._abandon.is_set():
                    return False  # the files stay for the next start's replay
                time.sleep(UNAVAILABLE_PAUSE)
                continue
            except (StorageError, OSError, ValueError, TypeError) as exc:
                _reject(path, exc)
                applied = 0
            self._overflow.pop(0)
            self.written += applied
            log.warning("applied %d database writes kept in %s while the database was "
                        "away", applied, path.name)
        for marker in self._held:
            marker.set()
        self._held.clear()
        return True

    def _relieve(self) -> None:
        """While the database refuses writes: past MAX_PENDING queued, move the queue to a
        file (memory stays bounded; nothing is dropped)."""
        if self._queue.qsize() <= MAX_PENDING:
            return
        moved: list[Statement] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # a stop: keep its mark for the run loop
                break
            if item[0]:
                moved.append(item)
            else:
                self._held.append(item[1][0])  # a flush waits for the file too
        path = spill(self._spill_to, moved, suffix=f"-{os.getpid()}", at_stop=False)
        if path is None:
            self._front += moved  # the disk is full too: kept in memory, not lost
            return
        self._overflow.append(path)
        self.spilled += len(moved)

    def _open(self) -> Database | None:
        """The thread's own connection, waited for while the database is out of reach;
        None when a stop came first."""
        tries = 0
        while True:
            try:
                return open_database(self._target)
            except _WAIT as exc:
                if self._abandon.is_set():
                    return None
                if tries % LOCKED_LOG_EVERY == 0:
                    log.warning("database unavailable; writes waiting (%s)", exc)
                tries += 1
                time.sleep(UNAVAILABLE_PAUSE)

    def _write(self, database: Database, batch: list[Statement]) -> bool:
        """Apply one batch in one transaction; False when abandoned unwritten (locked at
        a stop that could not wait longer)."""
        markers = [params[0] for sql, params in batch if not sql]
        statements = [(sql, params) for sql, params in batch if sql]
        failures = locked = 0
        while True:
            try:
                # Several engines may share the database: their CDR ids must commit in
                # increasing order for the billing cursor (storage/cdrs.py).
                database.commit_batch(statements, "writer")
                self.written += len(statements)
                self.waiting = False
                if locked:
                    log.info("database free again; %d writes applied", len(statements))
                break
            except StorageError as exc:
                # Never retry inside a transaction left open (e.g. a failed COMMIT): the
                # batch would be applied twice.
                if database.in_transaction:
                    database.execute("ROLLBACK")
                if isinstance(exc, _WAIT):
                    self.waiting = True
                    if self._abandon.is_set():
                        for marker in markers:
                            marker.set()
                        return False
                    self._relieve()
                    # A try waits up to the busy timeout inside SQLite; the pause only
                    # keeps a lock that fails at once (SQLITE_LOCKED) from spinning.
                    if locked % LOCKED_LOG_EVERY == 0:
                        log.warning("database %s; %d writes waiting (%s)",
                                    "locked by another connection"
                                    if isinstance(exc, BusyError) else "unavailable",
                                    len(statements), exc)
                    locked += 1
                    time.sleep(LOCKED_PAUSE if isinstance(exc, BusyError)
                               else UNAVAILABLE_PAUSE)
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


def spill(base: Path, statements: list[Statement], suffix: str = "",
          at_stop: bool = True) -> Path | None:
    """Save statements not written (in order) for :func:`replay` at the next start, in
    a file named after ``base``; None when the file cannot be written (logged).
    ``at_stop`` False: the queue's overflow while the database is away, which the
    writer applies itself once it is back (or the next start does)."""
    path = base.with_name(f"{base.name}.unwritten-{time.time():.6f}{suffix}.jsonl")
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
        log.error("database writes could not be saved to %s (%s): %d writes %s", path, exc,
                  len(statements), "lost" if at_stop else "kept in memory")
        return None
    if at_stop:
        log.error("database still locked at stop: %d writes saved to %s; the next start "
                  "applies them", kept, path)
    else:
        log.error("database away: %d queued writes moved to %s, applied once it is back",
                  kept, path)
    return path


def replay(database: Database, base: Path) -> int:
    """Apply to ``database``, oldest first, the files of writes a locked stop left under
    ``base`` (one transaction per file, then the file is removed); returns the number of
    statements applied.

    A database still locked (or out of reach) raises, as crash recovery would next: the
    start fails and is retried with the files intact. A file that cannot be applied
    (damaged, or refused by the schema) is renamed ``*.rejected`` and logged, so that a
    later start does not apply it after recovery has already turned its calls into
    interrupted CDRs.
    """
    applied = 0
    for path in sorted(base.parent.glob(f"{base.name}.unwritten-*.jsonl")):
        try:
            count = _apply_file(database, path)
        except _WAIT:
            raise
        except StorageError as exc:
            _reject(path, exc)
            continue
        except (OSError, ValueError, TypeError) as exc:
            _reject(path, exc)
            continue
        applied += count
        log.warning("applied %d database writes saved at a locked stop (%s)",
                    count, path.name)
    return applied


def _apply_file(database: Database, path: Path) -> int:
    """One file of saved writes in one transaction, then the file removed."""
    statements = [tuple(json.loads(line)) for line in
                  path.read_text(encoding="utf-8").splitlines() if line.strip()]
    database.commit_batch(statements, "writer")
    path.unlink()
    return len(statements)


def _reject(path: Path, exc: Exception) -> None:
    rejected = path.with_name(path.name + ".rejected")
    try:
        path.rename(rejected)
    except OSError:
        rejected = path
    log.error("could not apply the saved database writes in %s (%s); left as %s",
              path.name, exc, rejected)
