"""Relay workers: one process per core relaying RTP, driven by the engine.

The engine's event loop carries the signalling; RTP, at 100 packets a second per call,
would soon need more than the rest of that core. So relay sessions live in worker
processes (:mod:`b2bua.media.worker`), one per core by default, and a new session goes
to the worker with the fewest sessions among those whose event loop keeps up. Each
worker owns a slice of ``--media-ports``. The engine keeps, per session, a
:class:`RemoteMediaSession`: what the call layer needs to know without asking (ports,
the last packet times for the media check, the counters for ``/calls``) arrives in the
workers' reports every half second; the first-RTP event and the final counters for the
CDR arrive as they happen.

A worker that dies takes its sessions' media with it (their calls go on, silent, and
their CDRs carry the last reported counters); it is started again, and new calls go to
the workers that are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from b2bua.media.ipc import REPORT_INTERVAL, frame, read_message, refused
from b2bua.media.plane import CipherSpec, Counters, FinalStats
from b2bua.media.relay import COUNTERS, PortAllocator, PortExhausted, check_remote, counters_dict
from b2bua.options import split_ports

log = logging.getLogger("b2bua.media.pool")

OPEN_TIMEOUT = 5.0  # a worker that cannot bind a session in this time is not relaying
FINAL_TIMEOUT = 2.0  # a CDR waits at most this long for a session's final counters
RESPAWN_DELAY = 1.0
STOP_TIMEOUT = 3.0
_ZERO = (0,) * len(COUNTERS)


class RemoteMediaSession:
    """The engine's side of one relay session in a worker."""

    def __init__(self, pool: RelayWorkerPool, worker: _Worker, sid: int, latching: bool,
                 a_nat: bool, a_cipher: CipherSpec | None,
                 on_rtp_start: Callable[[], None]) -> None:
        self.pool = pool
        self.worker: _Worker | None = worker
        self.sid = sid
        self._open_args = (latching, a_nat, a_cipher)
        self.on_rtp_start: Callable[[], None] | None = on_rtp_start
        self.ports = (0, 0)
        self._opened: asyncio.Future[None] | None = None
        self._last: dict[str, float | None] = {"a": None, "b": None}
        self._counters: tuple[tuple[int, ...], tuple[int, ...]] = (_ZERO, _ZERO)
        self._final: FinalStats | None = None
        self._final_timer: asyncio.TimerHandle | None = None
        self.closed = False

    async def start(self) -> None:
        worker = self.worker
        if worker is None or not worker.alive:
            raise PortExhausted("no relay worker running")
        self._opened = asyncio.get_running_loop().create_future()
        worker.send("open", self.sid, *self._open_args)
        try:
            await asyncio.wait_for(asyncio.shield(self._opened), OPEN_TIMEOUT)
        except TimeoutError:
            raise PortExhausted(f"relay worker {worker.index} did not open a session "
                                f"within {OPEN_TIMEOUT:.0f} s") from None

    def _send(self, *message: Any) -> None:
        worker = self.worker
        if worker is not None and not self.closed and self.ports[0]:
            worker.send(*message)

    def set_remote(self, leg: str, host: str, port: int, rtcp_port: int | None = None,
                   rtcp_host: str | None = None) -> None:
        host, rtcp_host = check_remote(self.pool.host, host, port, rtcp_host)
        self._send("remote", self.sid, leg, host, port, rtcp_port, rtcp_host)

    def set_nat(self, leg: str, nat: bool) -> None:
        self._send("nat", self.sid, leg, nat)

    def set_cipher(self, leg: str, spec: CipherSpec | None) -> None:
        self._send("cipher", self.sid, leg, spec)

    def set_rtp(self, rtp: bool) -> None:
        self._send("rtp", self.sid, rtp)

    def last_rx(self, leg: str) -> float | None:
        return self._last[leg]

    def stats(self) -> Counters:
        a, b = self._counters
        return {"a_to_b": counters_dict(a), "b_to_a": counters_dict(b)}

    def close(self, on_final: FinalStats | None = None) -> None:
        if self.closed:
            if on_final is not None:
                on_final(self.stats())
            return
        self.closed = True
        self.on_rtp_start = None
        worker = self.worker
        if worker is None or not worker.alive or not self.ports[0]:
            # Never opened (or its worker is gone): a late "opened" closes it then.
            if on_final is not None:
                on_final(self.stats())
            return
        worker.send("close", self.sid)
        worker.sessions.pop(self.sid, None)
        worker.closing[self.sid] = self
        if on_final is not None:
            self._final = on_final
            self._final_timer = asyncio.get_running_loop().call_later(
                FINAL_TIMEOUT, self._finish)

    # -- reports from the worker ---------------------------------------------------------

    def _on_opened(self, ports: tuple[int, int]) -> None:
        self.ports = (int(ports[0]), int(ports[1]))
        if self.closed and self.worker is not None:
            # Closed while the worker was still binding: release it now.
            self.closed = False
            self.close()
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)

    def _on_failed(self, reason: str) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(PortExhausted(reason))

    def _on_rtp_start(self) -> None:
        callback = self.on_rtp_start
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("on_rtp_start callback failed")

    def _update(self, a_last: float | None, b_last: float | None,
                a: tuple[int, ...], b: tuple[int, ...]) -> None:
        self._last = {"a": a_last, "b": b_last}
        self._counters = (tuple(a), tuple(b))

    def _finish(self) -> None:
        if self._final_timer is not None:
            self._final_timer.cancel()
            self._final_timer = None
        final, self._final = self._final, None
        self.worker = None
        if final is not None:
            final(self.stats())

    def _worker_lost(self) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(PortExhausted("relay worker exited"))
        self._finish()


class _Worker:
    def __init__(self, pool: RelayWorkerPool, index: int, low: int, high: int) -> None:
        self.pool = pool
        self.index = index
        self.low, self.high = low, high
        self.capacity = PortAllocator(low, high).capacity
        self.proc: subprocess.Popen[bytes] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.alive = False
        self.sessions: dict[int, RemoteMediaSession] = {}
        self.closing: dict[int, RemoteMediaSession] = {}
        self.in_use = 0
        self.lag = 0.0
        self.reported_at = 0.0
        self.starts = 0

    def send(self, *message: Any) -> None:
        if self.writer is not None and self.alive:
            self.writer.write(frame(message))

    async def spawn(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            cmd = [sys.executable, "-m", "b2bua.media.worker", "--fd", str(theirs.fileno()),
                   "--host", self.pool.host, "--ports", f"{self.low}-{self.high}",
                   "--parent", str(os.getpid()), "--log-level", self.pool.log_level,
                   "--relay-ciphers", self.pool.relay_ciphers]
            self.proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        reader, self.writer = await asyncio.open_unix_connection(sock=mine)
        self.alive = True
        self.starts += 1
        self.in_use = 0
        self.lag = 0.0
        self.reported_at = time.monotonic()
        self.reader_task = asyncio.ensure_future(self._read(reader))
        log.info("relay worker %d started (pid %d, ports %d-%d)", self.index, self.proc.pid,
                 self.low, self.high)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await read_message(reader)) is not None:
                try:
                    self._dispatch(message)
                except (ValueError, TypeError, IndexError):
                    refused(message)  # the wrong shape: the worker is not ours to trust
                    break
        finally:
            self._lost()

    def _dispatch(self, message: list[Any]) -> None:
        op = message[0]
        if op == "report":
            _, self.lag, self.in_use, changes = message
            self.reported_at = time.monotonic()
            sessions = self.sessions
            for sid, a_last, b_last, a, b in changes:
                s = sessions.get(sid)
                if s is not None:
                    s._update(a_last, b_last, a, b)
            return
        sid = message[1]
        if op == "rtp_start":
            s = self.sessions.get(sid)
            if s is not None:
                s._on_rtp_start()
        elif op == "opened":
            self.in_use = message[3]
            s = self.sessions.get(sid) or self.closing.get(sid)
            if s is not None:
                s._on_opened(message[2])
        elif op == "failed":
            self.in_use = message[3]
            s = self.sessions.pop(sid, None)
            if s is not None:
                s._on_failed(message[2])
        elif op == "closed":
            self.in_use = message[4]
            s = self.closing.pop(sid, None)
            if s is not None:
                s._update(s._last["a"], s._last["b"], message[2], message[3])
                s._finish()

    def _lost(self) -> None:
        if not self.alive:
            return
        self.alive = False
        lost = list(self.sessions.values()) + list(self.closing.values())
        self.sessions.clear()
        self.closing.clear()
        self.in_use = 0
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        for s in lost:
            s._worker_lost()
        if not self.pool.closing:
            code = self.proc.returncode if self.proc is not None else None
            log.error("relay worker %d exited (code %s) with %d sessions; starting it again",
                      self.index, code, len(lost))
            self.pool.respawn(self)

    def current_lag(self, now: float) -> float:
        """The reported lag, or, when reports are overdue (a worker stopped or stuck),
        how overdue: a worker that does not report is not keeping up."""
        overdue = now - self.reported_at - REPORT_INTERVAL
        return max(self.lag, overdue)

    def snapshot(self) -> dict[str, object]:
        return {
            "index": self.index,
            "pid": self.proc.pid if self.proc is not None else None,
            "alive": self.alive,
            "ports": f"{self.low}-{self.high}",
            "sessions": len(self.sessions),
            "ports_in_use": self.in_use,
            "loop_lag_ms": round(self.current_lag(time.monotonic()) * 1000, 1),
            "starts": self.starts,
        }


class RelayWorkerPool:
    """``workers`` relay processes sharing the port range ``[low, high]``."""

    def __init__(self, host: str, advertised_host: str, low: int, high: int, workers: int,
                 *, max_lag: Callable[[], float] = lambda: 0.0,
                 log_level: str = "WARNING", relay_ciphers: str = "c") -> None:
        self.host = host
        self.advertised_host = advertised_host
        self.max_lag = max_lag  # seconds; 0 = no limit
        self.log_level = log_level
        self.relay_ciphers = relay_ciphers  # "c" or "python": where ciphers are applied
        self.workers = [_Worker(self, i, lo, hi)
                        for i, (lo, hi) in enumerate(split_ports(low, high, workers))]
        self.closing = False
        self._next_sid = 0
        self._respawns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for w in self.workers:
            await w.spawn()

    def _pick(self) -> _Worker | None:
        alive = [w for w in self.workers if w.alive]
        if not alive:
            return None
        limit = self.max_lag()
        if limit > 0:
            now = time.monotonic()
            keeping_up = [w for w in alive if w.current_lag(now) < limit]
            if not keeping_up:
                return None
            alive = keeping_up
        return min(alive, key=lambda w: (len(w.sessions), w.in_use))

    def overloaded(self) -> bool:
        """Every running worker's loop is behind by the limit: no room for a new call."""
        return any(w.alive for w in self.workers) and self._pick() is None

    def new_session(self, *, latching: bool, a_nat: bool, a_cipher: CipherSpec | None,
                    on_rtp_start: Callable[[], None]) -> RemoteMediaSession:
        self._next_sid += 1
        worker = self._pick()
        session = RemoteMediaSession(self, worker or self.workers[0], self._next_sid,
                                     latching, a_nat, a_cipher, on_rtp_start)
        if worker is not None:
            worker.sessions[session.sid] = session
        else:
            session.worker = None
        return session

    @property
    def in_use(self) -> int:
        return sum(w.in_use for w in self.workers if w.alive)

    @property
    def available(self) -> int:
        return sum(w.capacity - w.in_use for w in self.workers if w.alive)

    @property
    def lag(self) -> float:
        """The worst relay worker's event-loop lag, seconds."""
        now = time.monotonic()
        return max((w.current_lag(now) for w in self.workers if w.alive), default=0.0)

    def snapshot(self) -> dict[str, object]:
        return {"workers": [w.snapshot() for w in self.workers],
                "ports_in_use": self.in_use, "ports_free": self.available}

    def respawn(self, worker: _Worker) -> None:
        async def later() -> None:
            await asyncio.sleep(RESPAWN_DELAY)
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.kill()  # its socket closed but it lingers: make room
                await asyncio.sleep(0.1)
            if worker.proc is not None:
                worker.proc.poll()  # reap
            if not self.closing:
                try:
                    await worker.spawn()
                except OSError:
                    log.exception("relay worker %d could not be started", worker.index)

        task = asyncio.ensure_future(later())
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def close(self) -> None:
        """Stop the workers, once the sessions being closed have their final counters
        (bounded: their CDRs are written either way)."""
        deadline = time.monotonic() + FINAL_TIMEOUT
        while any(w.closing for w in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.closing = True
        for task in list(self._respawns):
            task.cancel()
        for w in self.workers:
            w.send("stop", 0)
            if w.writer is not None:
                w.writer.close()
        deadline = time.monotonic() + STOP_TIMEOUT
        for w in self.workers:
            proc = w.proc
            while proc is not None and proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if w.reader_task is not None:
                w.reader_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await w.reader_task
