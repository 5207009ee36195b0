"""The webhooks' I/O: events handed over by the engine's event loop, delivered by threads
of their own (HTTP/1.1 over kept-alive connections, ``b2bua/webhooks/client.py``), signed
with HMAC-SHA256, and what is given up written to the dead-letter file.

The event loop's part of an event is one ``deque.append`` (and waking the delivery thread
when it sleeps): the body is built, encoded and signed, and the request sent, off the
loop. With no webhook configured, the call path pays one attribute check per hook
(``CdrWriter.events``, ``BindingStore.on_change`` are None).

Threads (daemons, so a receiver that never answers cannot hold the process at exit) share
the rules of ``b2bua/webhooks/outbox.py`` under one lock:

- the delivery thread wakes when the loop hands over events, the configuration changes or
  a lane's wait ends: it takes what came in and hands each due delivery to a sender;
- sender threads, as many as deliveries are in flight (at most 64), each send one POST at
  a time; a sender that has its answer takes what came in meanwhile itself and sends the
  next due delivery, so under load a delivery costs no thread switch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from b2bua.config.live import Params
from b2bua.webhooks import payloads
from b2bua.webhooks.client import Connection, HttpError, Target
from b2bua.webhooks.outbox import (
    CALL_EVENTS,
    DeadLetter,
    Delivery,
    Event,
    Outbox,
    Receiver,
    Settings,
)

if TYPE_CHECKING:
    from b2bua.calls.call import Call
    from b2bua.calls.cdr import CdrRecord, CdrWriter
    from b2bua.registrar.bindings import Binding, BindingStore

log = logging.getLogger("b2bua.webhooks")

SIGNATURE = "X-Softswitch-Signature"
MAX_SENDERS = 64
# Items taken from the loop per round, so the lock the API's snapshot waits for is short.
ROUND = 2000
# Events the loop may hand over before the delivery thread takes them: only a thread that
# no longer runs lets it fill (then events are counted and dropped, logged once).
INBOX_MAX = 200_000
USER_AGENT = "softswitch-webhooks/1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Softswitch-Signature`` header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def dead_letter_path(var_dir: Path, worker: int) -> Path:
    """The dead-letter file of signalling worker ``worker`` (0: the only one, by default)."""
    return var_dir / ("webhooks-dead.jsonl" if worker == 0 else f"webhooks-dead-{worker}.jsonl")


class DeadLetterFile:
    """JSON lines appended to one file, never beyond ``cap()`` bytes: past it a dead letter
    is counted and dropped (logged once, until a write fits again)."""

    def __init__(self, path: Path, cap: Callable[[], int]) -> None:
        self.path = path
        self.cap = cap
        self.dropped: Counter[int] = Counter()  # by receiver
        self._full = False
        self._lock = threading.Lock()  # the delivery thread and the senders write

    def write(self, letters: Sequence[DeadLetter]) -> None:
        if letters:
            with self._lock:
                self._write(letters)

    def _write(self, letters: Sequence[DeadLetter]) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        lines: list[bytes] = []
        kept: list[DeadLetter] = []
        for letter in letters:
            line = _dead_line(letter)
            if size + len(line) > self.cap():
                self.dropped[letter.receiver.id] += 1
                if not self._full:
                    self._full = True
                    log.error("webhooks: the dead-letter file %s is full (SS_WEBHOOK_DEAD_"
                              "LETTER_MB); dead letters are dropped, and counted, until it "
                              "is moved away or the cap raised", self.path)
                continue
            size += len(line)
            lines.append(line)
            kept.append(letter)
        if not lines:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as out:
                out.write(b"".join(lines))
        except OSError as exc:
            for letter in kept:
                self.dropped[letter.receiver.id] += 1
            log.error("webhooks: cannot write the dead-letter file %s: %s", self.path, exc)
            return
        if self._full:
            self._full = False
        log.warning("webhooks: %d event(s) given up, in %s (%s)", len(lines), self.path,
                    ", ".join(sorted({letter.reason for letter in kept})))


def _dead_line(letter: DeadLetter) -> bytes:
    delivery, receiver = letter.delivery, letter.receiver
    head = json.dumps({
        "dead_at": letter.at, "reason": letter.reason, "webhook_id": receiver.id,
        "webhook": receiver.name, "url": receiver.url, "delivery": delivery.id,
        "type": delivery.event.type, "attempts": delivery.attempts,
        "last_error": delivery.last_error or None,
    }, separators=(",", ":"))
    return head[:-1].encode() + b',"event":' + delivery.event.body + b"}\n"


class _Connections:
    """Each lane's kept-alive connection: a lane sends one request at a time, so each
    connection is used by one sender at a time."""

    def __init__(self) -> None:
        self._open: dict[tuple[int, int], Connection] = {}
        self._tls: ssl.SSLContext | None = None

    def take(self, receiver: Receiver, lane: int) -> Connection:
        """The lane's connection to the receiver's URL (its own until given back)."""
        conn = self._open.pop((receiver.id, lane), None)
        if conn is not None and conn.target.url == receiver.url:
            return conn
        if conn is not None:
            conn.close()
        target = Target(receiver.url)
        if target.tls and self._tls is None:
            self._tls = ssl.create_default_context()
        return Connection(target, self._tls)

    def give_back(self, receiver: Receiver, lane: int, conn: Connection) -> None:
        if conn.open:
            self._open[(receiver.id, lane)] = conn

    def forget(self, keep: set[int]) -> None:
        """Close the connections of receivers no longer configured."""
        for key in [k for k in list(self._open) if k[0] not in keep]:  # senders add
            conn = self._open.pop(key, None)
            if conn is not None:
                conn.close()


class WebhookService:
    """One engine's (one signalling worker's) webhooks."""

    def __init__(self, params: Params, dead_letters: Path, node: str = "") -> None:
        self.params = params
        self.node = node or None
        self.dead_letters = DeadLetterFile(
            dead_letters, lambda: params.integer("SS_WEBHOOK_DEAD_LETTER_MB") << 20)
        self._outbox = Outbox(self._settings())
        self._lock = threading.Lock()
        self._inbox: deque[tuple[Any, ...]] = deque()
        self._wake = threading.Event()
        self._jobs: queue.SimpleQueue[tuple[Delivery, Receiver] | None] = queue.SimpleQueue()
        self._senders: list[threading.Thread] = []
        self._connections = _Connections()
        self._thread: threading.Thread | None = None
        self._closing_at: float | None = None
        self._done = False
        self._dropped = 0  # handed over while the inbox was full
        self._cdrs: CdrWriter | None = None
        self._bindings: BindingStore | None = None

    # -- the event loop's side ---------------------------------------------------------------

    def attach(self, cdrs: CdrWriter, bindings: BindingStore | None) -> None:
        """Where the hooks go: the CDR writer (call events) and, on the engine that takes
        REGISTERs, the bindings (registration events). Set only while a webhook wants them."""
        self._cdrs, self._bindings = cdrs, bindings

    def configure(self, receivers: list[Receiver]) -> None:
        """The webhooks as now configured (the config watcher, on the loop)."""
        self._put(("config", receivers))
        wants = {kind for r in receivers for kind in (*CALL_EVENTS, "registration")
                 if r.wants(kind)}
        if self._cdrs is not None:
            self._cdrs.events = self if wants & set(CALL_EVENTS) else None
        if self._bindings is not None:
            self._bindings.on_change = self.registration if "registration" in wants else None

    def call_started(self, record: CdrRecord) -> None:
        self._put(("call.start", record))

    def call_answered(self, call: Call, at: float) -> None:
        gateway, outbound = call.gateway, call.outbound
        self._put(("call.answer", (
            call.invite.call_id, call.cdr_uuid, call.caller, call.callee, call.start_at, at,
            outbound.call_id if outbound is not None else None,
            gateway.id if gateway is not None else None,
            gateway.name if gateway is not None else None)))

    def call_ended(self, record: CdrRecord, attempts: Sequence[dict[str, Any]]) -> None:
        self._put(("call.end", record, attempts))

    def registration(self, change: str, binding: Binding, at: float) -> None:
        self._put(("registration", change, binding, at))

    def _put(self, item: tuple[Any, ...]) -> None:
        inbox = self._inbox
        if len(inbox) >= INBOX_MAX:
            self._dropped += 1
            if self._dropped == 1:
                log.error("webhooks: the delivery thread does not take events; dropping")
            return
        inbox.append(item)
        if not self._wake.is_set():
            self._wake.set()

    def snapshot(self) -> list[dict[str, Any]]:
        """Each webhook's delivery state in this engine (the control socket's
        ``webhooks``)."""
        with self._lock:
            report = self._outbox.snapshot(time.time())
        for item in report:
            item["dead_letters_dropped"] = self.dead_letters.dropped[item["id"]]
        return report

    # -- the delivery thread -----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
            self._thread.start()

    def close(self, budget: float = 2.0) -> None:
        """Deliver what is queued for at most ``budget`` seconds; what is left is written
        to the dead-letter file (``shutdown``)."""
        thread = self._thread
        if thread is None:
            return
        self._closing_at = time.time() + budget
        self._wake.set()
        thread.join(budget + 2.0)
        for _ in self._senders:
            self._jobs.put(None)

    def _settings(self) -> Settings:
        params = self.params
        return Settings(queue_size=params.integer("SS_WEBHOOK_QUEUE_SIZE"),
                        retry_seconds=float(params.integer("SS_WEBHOOK_RETRY_SECONDS")),
                        backoff_max=float(params.integer("SS_WEBHOOK_BACKOFF_MAX")),
                        lanes=params.integer("SS_WEBHOOK_CONNECTIONS"))

    def _run(self) -> None:
        timeout: float | None = None
        while not self._done:
            self._wake.wait(timeout)
            self._wake.clear()
            try:
                sends, wake = self._advance((), finish=True)
            except Exception:
                log.exception("webhooks: delivery round failed")
                sends, wake = [], time.time() + 1.0
            for send in sends:
                self._jobs.put(send)
            now = time.time()
            if self._inbox or self._done:
                timeout = 0.0
            elif self._closing_at is not None:
                timeout = 0.05
            else:
                timeout = None if wake is None else max(0.001, wake - now)

    def _advance(self, results: Sequence[tuple[Delivery, int | None, str, float]],
                 finish: bool = False
                 ) -> tuple[list[tuple[Delivery, Receiver]], float | None]:
        """Take what came in and the answers ``results``; the deliveries to send now, and
        when a lane's wait ends next (None: none waits). ``finish``: the delivery thread,
        which ends the service once it is closing (and writes what is left itself, before
        ``close`` returns)."""
        now = time.time()
        dead: list[DeadLetter] = []
        with self._lock:
            outbox = self._outbox
            outbox.settings = self._settings()
            for _ in range(ROUND):
                try:
                    item = self._inbox.popleft()
                except IndexError:
                    break
                dead += self._take(item, now)
            for delivery, status, error, at in results:
                if status is not None and 200 <= status < 300:
                    outbox.succeeded(delivery, status, at)
                else:
                    dead += outbox.failed(delivery, error, status, at)
            closing_at = self._closing_at
            if finish and closing_at is not None and not self._done and (
                    now >= closing_at or (not self._inbox and not outbox.pending())):
                dead += outbox.drain("shutdown", now)
                self._done = True
            sends = [] if self._done else outbox.due(now)
            wake = outbox.wake_at()
            self._grow_senders(outbox.in_flight())
        self.dead_letters.write(dead)
        return sends, wake

    def _take(self, item: tuple[Any, ...], now: float) -> list[DeadLetter]:
        kind = item[0]
        outbox = self._outbox
        if kind == "config":
            receivers: list[Receiver] = item[1]
            self._connections.forget({r.id for r in receivers})
            return outbox.configure(receivers, now)
        if not outbox.wants(kind):
            return []
        section = "call"
        if kind == "call.start":
            record: CdrRecord = item[1]
            key, at, content = record.call_id_in, record.start_at, payloads.call_start(record)
        elif kind == "call.answer":
            content = payloads.call_answer(item[1])
            key, at = content["call_id_in"], content["answer_at"]
        elif kind == "call.end":
            record = item[1]
            key, at, content = record.call_id_in, record.end_at, payloads.call_end(record,
                                                                                  item[2])
        else:
            change, binding, at = item[1], item[2], item[3]
            key, section = binding.username, "registration"
            content = payloads.registration(change, binding)
        event_id = payloads.new_id()
        body = payloads.body(event_id, kind, at, self.node, section, content)
        return outbox.add(Event(event_id, kind, key, at, body), now)

    def _grow_senders(self, wanted: int) -> None:
        while len(self._senders) < min(wanted, MAX_SENDERS):
            thread = threading.Thread(target=self._send_loop, daemon=True,
                                      name=f"webhook-send-{len(self._senders)}")
            self._senders.append(thread)
            thread.start()

    # -- the senders -------------------------------------------------------------------------

    def _send_loop(self) -> None:
        job = self._jobs.get()
        while job is not None:
            delivery, receiver = job
            try:
                status, error = self._post(delivery, receiver)
            except Exception as exc:  # a bug must not stop the lane for good
                log.exception("webhooks: sending %s failed", delivery.id)
                status, error = None, f"{type(exc).__name__}: {exc}"
            try:
                sends, wake = self._advance([(delivery, status, error, time.time())])
            except Exception:
                log.exception("webhooks: delivery round failed")
                sends, wake = [], None
            if sends:  # the next one here, without a thread switch; the others queued
                job = sends[0]
                for other in sends[1:]:
                    self._jobs.put(other)
                continue
            if wake is not None or self._closing_at is not None:
                self._wake.set()  # the delivery thread's next wake-up may come sooner
            job = self._jobs.get()

    def _post(self, delivery: Delivery, receiver: Receiver) -> tuple[int | None, str]:
        """One attempt: the status (None: no answer) and what went wrong ("" for 2xx)."""
        timeout = float(self.params.integer("SS_WEBHOOK_TIMEOUT"))
        event = delivery.event
        for _ in range(2):
            conn = self._connections.take(receiver, delivery.lane)
            reused = conn.open
            headers = {
                "Content-Type": "application/json", "User-Agent": USER_AGENT,
                "X-Softswitch-Event": event.type, "X-Softswitch-Delivery": delivery.id,
                SIGNATURE: sign(receiver.secret, int(time.time()), event.body),
            }
            try:
                status = conn.post(event.body, headers, timeout)
            except (ConnectionResetError, BrokenPipeError, HttpError) as exc:
                if reused:  # a kept-alive connection the receiver had closed: again
                    continue
                return None, _error_text(exc)
            except (OSError, ValueError) as exc:
                return None, _error_text(exc)
            self._connections.give_back(receiver, delivery.lane, conn)
            return status, "" if 200 <= status < 300 else f"HTTP {status}"
        return None, "connection closed"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:200]
    return (str(exc) or type(exc).__name__)[:200]
