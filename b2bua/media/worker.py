"""A relay worker process: relay sessions in its own event loop, on its own core.

Started by :class:`b2bua.media.pool.RelayWorkerPool` as
``python -m b2bua.media.worker --fd N --host H --ports LOW-HIGH --parent PID``; talks to
the engine over the inherited socket ``N`` (:mod:`b2bua.media.ipc`). It owns the port
range it is given (the engine splits its ``--media-ports`` between workers), so no two
workers ever race for a port.

Requests (engine -> worker): ``("open", sid, latching, a_nat, a_cipher)``,
``("remote", sid, leg, host, port, rtcp_port, rtcp_host)``, ``("nat", sid, leg, nat)``,
``("cipher", sid, leg, spec)``, ``("close", sid)``.
Reports (worker -> engine): ``("opened", sid, ports, in_use)``,
``("failed", sid, reason, in_use)``, ``("rtp_start", sid)``,
``("closed", sid, a_counters, b_counters, in_use)`` once the session's ports are free, and
every :data:`REPORT_INTERVAL` ``("report", lag, in_use, changes)`` where ``changes`` lists
``(sid, a_last_rx, b_last_rx, a_counters, b_counters)`` of the sessions whose counters
moved. Times are ``time.monotonic()``, one clock for all processes of the machine.

The worker ends when the engine's end of the socket closes (the engine stopped or
died) and, as a second guard, by ``PR_SET_PDEATHSIG`` when its parent dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from typing import Any

import uvloop

from b2bua.collector import FullCollections
from b2bua.lifeline import die_with_parent
from b2bua.looplag import LoopLag
from b2bua.media.ipc import REPORT_INTERVAL, frame, read_message, refused
from b2bua.media.plane import build_cipher
from b2bua.media.relay import PortAllocator, RelaySession

log = logging.getLogger("b2bua.media.worker")



class RelayWorker:
    def __init__(self, writer: asyncio.StreamWriter, host: str, allocator: PortAllocator,
                 *, ciphers_in_c: bool = True) -> None:
        self.writer = writer
        self.host = host
        self.allocator = allocator
        self.ciphers_in_c = ciphers_in_c
        self.sessions: dict[int, RelaySession] = {}
        self._signatures: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.lag = LoopLag()

    def send(self, *message: Any) -> None:
        self.writer.write(frame(message))

    async def handle(self, message: list[Any]) -> None:
        op, sid = message[0], message[1]
        if op == "open":
            try:
                latching, a_nat, a_cipher = message[2:]
            except ValueError:
                refused(message)
                return
            await self._open(sid, latching, a_nat, a_cipher)
            return
        session = self.sessions.get(sid)
        if session is None:
            return  # closed already (a late update): nothing to do
        try:
            if op == "remote":
                leg = session.a if message[2] == "a" else session.b
                leg.set_remote(*message[3:])
            elif op == "nat":
                (session.a if message[2] == "a" else session.b).nat = bool(message[3])
            elif op == "cipher":
                (session.a if message[2] == "a" else session.b).set_cipher(
                    build_cipher(message[3]))
            elif op == "rtp":
                session.rtp = bool(message[2])
            elif op == "close":
                del self.sessions[sid]
                self._signatures.pop(sid, None)
                await session.wait_closed()
                self.send("closed", sid, session.a.counter_values(),
                          session.b.counter_values(), self.allocator.in_use)
        except Exception:
            # Checked in the engine before sending; a failure here is a bug, not input.
            log.exception("relay worker: %s for session %d failed", op, sid)

    async def _open(self, sid: int, latching: bool, a_nat: bool, a_cipher: Any) -> None:
        session = RelaySession(self.allocator, self.host, latching=latching, a_nat=a_nat,
                               a_cipher=build_cipher(a_cipher),
                               on_rtp_start=lambda: self.send("rtp_start", sid),
                               ciphers_in_c=self.ciphers_in_c)
        try:
            await session.start()
        except Exception as exc:
            self.send("failed", sid, str(exc), self.allocator.in_use)
            return
        self.sessions[sid] = session
        self.send("opened", sid, session.ports, self.allocator.in_use)

    def report(self) -> None:
        changes = []
        for sid, s in self.sessions.items():
            a, b = s.a, s.b
            s.sync()  # C's counts, of both legs before either is read
            av, bv = a.counter_values(), b.counter_values()
            sig = sum(av) + sum(bv)
            if self._signatures.get(sid) != sig:
                self._signatures[sid] = sig
                changes.append((sid, a.last_rx, b.last_rx, av, bv))
        self.send("report", round(self.lag.mean, 4), self.allocator.in_use, changes)

    async def reporter(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            self.report()

    async def serve(self, reader: asyncio.StreamReader) -> None:
        reporter = asyncio.ensure_future(self.reporter())
        lag = asyncio.ensure_future(self.lag.run())
        try:
            while (message := await read_message(reader)) is not None:
                if message[0] == "stop":
                    break
                if message[0] in ("open", "close"):
                    # These await socket work; run them beside the reading so one slow
                    # bind does not hold up the other sessions' updates.
                    task = asyncio.ensure_future(self.handle(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    await self.handle(message)
        finally:
            reporter.cancel()
            lag.cancel()
            for session in self.sessions.values():
                session.close()


async def _main(args: argparse.Namespace) -> None:
    sock = socket.socket(fileno=args.fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    worker = RelayWorker(writer, args.host, PortAllocator(args.low, args.high),
                         ciphers_in_c=args.relay_ciphers == "c")
    # Relay sessions hold no reference cycles: full collections, whose pauses would
    # delay every packet, run only if memory doubles (b2bua/collector.py).
    collector = FullCollections()
    collector.install()
    pacing = asyncio.ensure_future(collector.run())
    await worker.serve(reader)
    pacing.cancel()
    with contextlib.suppress(ConnectionError):
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="b2bua.media.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--ports", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--relay-ciphers", choices=("c", "python"), default="c")
    args = parser.parse_args(argv)
    low, _, high = args.ports.partition("-")
    args.low, args.high = int(low), int(high)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s relay-worker %(message)s")
    die_with_parent(args.parent)
    # Ctrl-C reaches the whole process group; the engine decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    uvloop.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
