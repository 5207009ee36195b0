"""Signalling on several cores: worker 0 runs the dispatcher and supervises workers 1..N-1.

With ``--signalling-workers N`` (N > 1), the ``softswitch run`` process is worker 0: it
binds the SIP socket, starts the dispatcher thread (:mod:`b2bua.sip._dispatch`), which
passes each datagram to worker ``hash(Call-ID) mod N``, and starts the other workers
as ``python -m b2bua.signalling``. Every worker is a whole engine (:class:`Engine`):
parse, policy, transactions, calls, routing, CDRs, its own relay workers on its own
slice of the media ports. Worker 0 alone holds the TCP listener, the registrar (the
dispatcher sends every REGISTER there), the upstream registrations and the API's
control socket, where it merges the other workers' calls and counters.

A worker that exits is started again after a second; the calls it held are lost to it
(the next full start marks them interrupted, as after ``kill -9``). Workers die with
worker 0 (``PR_SET_PDEATHSIG``, SIGKILL), as a single engine would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import uvloop

from b2bua import logs
from b2bua.calls.counts import SLOTS
from b2bua.control import ControlError, ask
from b2bua.options import EngineOptions, HostPort, PortRange
from b2bua.security.state import SECURITY_SLOTS
from b2bua.shared_tables import shared_memory, table_size
from b2bua.sip._dispatch import Dispatcher
from b2bua.sip.dispatched import DispatchedSip, channel_pair

log = logging.getLogger("b2bua.signalling")

RESPAWN_DELAY = 1.0
STOP_TIMEOUT = 6.0  # a worker's graceful stop: hang up its calls, flush its CDRs
ASK_TIMEOUT = 1.0  # under the API's own 2 s wait for worker 0
PR_SET_PDEATHSIG = 1


def bind_sip_socket(listen: HostPort) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((listen.host, listen.port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def encode_options(options: EngineOptions) -> str:
    fields = asdict(options)
    fields.update(db_path=str(options.db_path), control_path=str(options.control_path),
                  sip_listen=str(options.sip_listen),
                  media_ports=f"{options.media_ports.low}-{options.media_ports.high}")
    return json.dumps(fields)


def decode_options(text: str) -> EngineOptions:
    fields = json.loads(text)
    fields.update(db_path=Path(fields["db_path"]), control_path=Path(fields["control_path"]),
                  sip_listen=HostPort.parse(fields["sip_listen"]),
                  media_ports=PortRange.parse(fields["media_ports"]))
    return EngineOptions(**fields)


class SignallingWorkers:
    """Worker 0's side: the SIP socket, the dispatcher, and workers 1..N-1."""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.count = options.signalling_workers
        self.sip_socket = bind_sip_socket(options.sip_listen)
        self.channels = [channel_pair() for _ in range(self.count)]
        self.dispatcher = Dispatcher(self.sip_socket.fileno(),
                                     [ours.fileno() for ours, _ in self.channels])
        self.counts_fd = shared_memory(table_size(self.count, SLOTS))
        self.security_fd = shared_memory(table_size(self.count, SECURITY_SLOTS))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts = dict.fromkeys(range(1, self.count), 0)
        # What a worker counted in the shared tables dies with it (b2bua/calls/counts.py).
        self.on_worker_down: Callable[[int], None] = lambda index: None
        self._supervisor: asyncio.Task[None] | None = None
        self._sip_port = options.sip_listen.port

    def own(self) -> DispatchedSip:
        """Worker 0's SIP: the shared socket to send on, channel 0 to read."""
        return DispatchedSip(self.sip_socket, self.channels[0][1], listen_tcp=True,
                             tcp_for=[ours for ours, _ in self.channels],
                             counts_fd=self.counts_fd, security_fd=self.security_fd)

    def start(self, sip_port: int) -> None:
        """Once worker 0's stack is up (``sip_port``: the bound port, when 0 was asked)."""
        self._sip_port = sip_port
        self.dispatcher.start()
        for index in range(1, self.count):
            self._spawn(index)
        self._supervisor = asyncio.ensure_future(self._supervise())

    def _spawn(self, index: int) -> None:
        theirs = self.channels[index][1]
        options = self.options
        if options.sip_listen.port == 0:
            options = _with_port(options, self._sip_port)
        cmd = [sys.executable, "-m", "b2bua.signalling", "--index", str(index),
               "--sip-fd", str(self.sip_socket.fileno()), "--channel-fd", str(theirs.fileno()),
               "--counts-fd", str(self.counts_fd), "--security-fd", str(self.security_fd),
               "--parent", str(os.getpid()), "--options", encode_options(options),
               "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel())]
        proc = subprocess.Popen(cmd, pass_fds=(self.sip_socket.fileno(), theirs.fileno(),
                                               self.counts_fd, self.security_fd))
        self.procs[index] = proc
        log.info("signalling worker %d started (pid %d)", index, proc.pid)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for index, proc in list(self.procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                log.error("signalling worker %d (pid %d) exited with %s; starting it again",
                          index, proc.pid, code)
                self.on_worker_down(index)
                await asyncio.sleep(RESPAWN_DELAY)
                self.restarts[index] += 1
                self._spawn(index)

    async def stop(self) -> None:
        """Each worker stops as an engine does (its calls hung up, its CDRs written) while
        the dispatcher still brings their answers; then the dispatcher stops."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(p.poll() is None for p in self.procs.values()):
            if time.monotonic() > deadline:
                for proc in self.procs.values():
                    if proc.poll() is None:
                        log.warning("signalling worker pid %d did not stop; killed", proc.pid)
                        proc.kill()
                        proc.wait()
                break
            await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, self.dispatcher.stop)

    def close(self) -> None:
        self.dispatcher.stop()  # before its descriptors close; a no-op when stopped
        for ours, theirs in self.channels:
            ours.close()
            theirs.close()
        self.sip_socket.close()
        os.close(self.counts_fd)
        os.close(self.security_fd)

    async def ask(self, op: str, **args: Any) -> list[Any]:
        """Every other worker's answer to a control request; a worker that does not answer
        (restarting) is left out."""
        async def one(index: int) -> Any:
            path = self.options.for_worker(index).control_path
            return await ask(path, op, ASK_TIMEOUT, **args)

        results = await asyncio.gather(*(one(i) for i in range(1, self.count)),
                                       return_exceptions=True)
        out = []
        for index, result in enumerate(results, start=1):
            if isinstance(result, ControlError | OSError | TimeoutError):
                log.debug("signalling worker %d did not answer %s: %s", index, op, result)
                continue
            if isinstance(result, BaseException):
                raise result
            out.append(result)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "workers": self.count,
            "dispatcher": self.dispatcher.stats(),
            "restarts": [self.restarts[index] for index in range(1, self.count)],
        }


def _with_port(options: EngineOptions, port: int) -> EngineOptions:
    return replace(options, sip_listen=HostPort(options.sip_listen.host, port))


def sum_counters(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Counters of several workers added key by key (nested dicts too), lists joined;
    anything else is taken from the first report."""
    out: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if key not in out:
                out[key] = (sum_counters([value]) if isinstance(value, dict)
                            else list(value) if isinstance(value, list) else value)
            elif isinstance(value, dict) and isinstance(out[key], dict):
                out[key] = sum_counters([out[key], value])
            elif isinstance(value, list) and isinstance(out[key], list):
                out[key].extend(value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[key] += value
    return out


# ---------------------------------------------------------------- a worker's process


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # worker 0 died before the prctl took effect
        sys.exit(0)


async def _serve(options: EngineOptions, dispatched: DispatchedSip) -> None:
    from b2bua.engine import Engine

    engine = Engine(options, dispatched)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, engine.request_stop)
    await engine.start()
    engine.collector.install()
    engine.spawn(engine.collector.run())
    await engine.wait_and_stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="b2bua.signalling")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--sip-fd", type=int, required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--counts-fd", type=int, required=True)
    parser.add_argument("--security-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--options", required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logs.setup(args.log_level, worker=args.index)
    _die_with_parent(args.parent)
    # Ctrl-C reaches the whole process group; worker 0 decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    options = replace(decode_options(args.options), worker_index=args.index)
    dispatched = DispatchedSip(socket.socket(fileno=args.sip_fd),
                               socket.socket(fileno=args.channel_fd), listen_tcp=False,
                               tcp_for=None,
                               counts_fd=args.counts_fd, security_fd=args.security_fd)
    uvloop.run(_serve(options, dispatched))
    return 0


if __name__ == "__main__":
    sys.exit(main())
