"""Signalling on several cores: worker 0 runs the dispatcher and supervises workers 1..N-1.

With ``--signalling-workers N`` (N > 1), the ``softswitch run`` process is worker 0: it
binds the SIP socket, starts the dispatcher thread (:mod:`b2bua.sip._dispatch`), which
passes each datagram to worker ``hash(Call-ID) mod N``, and starts the other workers
as ``python -m b2bua.signalling_worker``. Every worker is a whole engine (``Engine``):
parse, policy, transactions, calls, routing, CDRs, its own relay workers on its own
slice of the media ports. Worker 0 alone holds the TCP listener, the registrar (the
dispatcher sends every REGISTER there), the upstream registrations and the API's
control socket, where it merges the other workers' calls and counters.

A worker that exits is started again after a second; the calls it held are lost to it
(the next full start marks them interrupted, as after ``kill -9``). Workers die with
worker 0 (``PR_SET_PDEATHSIG``, SIGKILL), as a single engine would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from b2bua import ipc
from b2bua.aio.dispatched import DispatchedSip, channel_pair
from b2bua.calls.counts import SLOTS
from b2bua.control import ControlError, ask
from b2bua.options import EngineOptions, HostPort, PortRange
from b2bua.security.digest import NONCE_SLOTS
from b2bua.security.state import SECURITY_SLOTS
from b2bua.shared_tables import shared_memory, table_size
from b2bua.sip._dispatch import Dispatcher
from b2bua.storage import is_postgres

log = logging.getLogger("b2bua.signalling")

RESPAWN_DELAY = 1.0
READY_TIMEOUT = 15.0  # a worker's start: imports, database, relay workers
STOP_TIMEOUT = 6.0  # a worker's calls hung up while the dispatcher still runs
# ... and then its CDRs written: a writer waits up to 10 s for a locked database, then
# SQLite's 5 s busy timeout, before saving what is left to a file (b2bua/storage/writer.py).
CLOSE_TIMEOUT = 20.0
ASK_TIMEOUT = 1.0  # under the API's own 2 s wait for worker 0
MAX_OPTIONS = 1 << 20


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


def encode_options(options: EngineOptions) -> bytes:
    """A worker's options as one frame of :mod:`b2bua.ipc`."""
    fields = asdict(options)
    fields.update(database=str(options.database), control_path=str(options.control_path),
                  var_dir=str(options.var_dir),
                  sip_listen=str(options.sip_listen),
                  media_ports=f"{options.media_ports.low}-{options.media_ports.high}",
                  dns_server=str(options.dns_server) if options.dns_server else None)
    return ipc.encode(fields)


def decode_options(data: bytes) -> EngineOptions:
    fields = ipc.decode(data, MAX_OPTIONS)
    database = fields["database"]
    fields.update(database=database if is_postgres(database) else Path(database),
                  control_path=Path(fields["control_path"]), var_dir=Path(fields["var_dir"]),
                  sip_listen=HostPort.parse(fields["sip_listen"]),
                  media_ports=PortRange.parse(fields["media_ports"]),
                  dns_server=HostPort.parse(fields["dns_server"]) if fields.get("dns_server")
                  else None)
    return EngineOptions(**fields)


def options_fd(options: EngineOptions) -> int:
    """A worker's options in a memfd it inherits and closes once read: not on its command
    line, which every user may read (the database URL may hold a password), nor in its
    environment, which every process it starts would inherit."""
    fd = os.memfd_create("softswitch-options", 0)  # not CLOEXEC: passed to the worker
    os.write(fd, encode_options(options))
    return fd


def read_options_fd(fd: int) -> EngineOptions:
    try:
        return decode_options(os.pread(fd, MAX_OPTIONS + ipc.HEADER.size, 0))
    finally:
        os.close(fd)


class SignallingWorkers:
    """Worker 0's side: the SIP socket, the dispatcher, and workers 1..N-1."""

    def __init__(self, options: EngineOptions, nonce_key: bytes | None = None) -> None:
        """``nonce_key``: the cluster's (docs/cluster.md); None: one drawn here."""
        self.options = options
        self.count = options.signalling_workers
        self.sip_socket = bind_sip_socket(options.sip_listen)
        self.channels = [channel_pair() for _ in range(self.count)]
        self.dispatcher = Dispatcher(self.sip_socket.fileno(),
                                     [ours.fileno() for ours, _ in self.channels])
        self.counts_fd = shared_memory(table_size(self.count, SLOTS))
        self.security_fd = shared_memory(table_size(self.count, SECURITY_SLOTS))
        self.nonces_fd = shared_memory(table_size(self.count, NONCE_SLOTS))
        # A nonce any worker issued is good on all (a phone may reuse it for a call that
        # lands elsewhere); the key reaches them in memory, never in a command line.
        self.nonce_key = nonce_key or secrets.token_bytes(32)
        self.key_fd = shared_memory(len(self.nonce_key))
        os.pwrite(self.key_fd, self.nonce_key, 0)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts = dict.fromkeys(range(1, self.count), 0)
        # What a worker counted in the shared tables dies with it (b2bua/calls/counts.py).
        self.on_worker_down: Callable[[int], None] = lambda index: None
        self._supervisor: asyncio.Task[None] | None = None
        self._sip_port = options.sip_listen.port

    def own(self) -> DispatchedSip:
        """Worker 0's SIP: the shared socket to send on, channel 0 to read."""
        return DispatchedSip(self.sip_socket, self.channels[0][1],
                             tcp_for=[ours for ours, _ in self.channels],
                             counts_fd=self.counts_fd, security_fd=self.security_fd,
                             nonces_fd=self.nonces_fd, nonce_key=self.nonce_key)

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
        cmd = [sys.executable, "-m", "b2bua.signalling_worker", "--index", str(index),
               "--sip-fd", str(self.sip_socket.fileno()), "--channel-fd", str(theirs.fileno()),
               "--counts-fd", str(self.counts_fd), "--security-fd", str(self.security_fd),
               "--nonces-fd", str(self.nonces_fd), "--key-fd", str(self.key_fd),
               "--parent", str(os.getpid()),
               "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel())]
        fd = options_fd(options)
        try:
            cmd += ["--options-fd", str(fd)]
            proc = subprocess.Popen(cmd,
                                    pass_fds=(self.sip_socket.fileno(), theirs.fileno(),
                                              self.counts_fd, self.security_fd,
                                              self.nonces_fd, self.key_fd, fd))
        finally:
            os.close(fd)
        self.procs[index] = proc
        log.info("signalling worker %d started (pid %d)", index, proc.pid)

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        """Until every other worker answers on its control socket (so the API, which
        calls the engine up once worker 0 answers, never shows half the switch)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(await self.ask("status")) == self.count - 1:
                return True
            await asyncio.sleep(0.05)
        log.warning("not every signalling worker was up within %.0f s", timeout)
        return False

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
        the dispatcher still brings their answers. A worker still writing CDRs when this
        returns is waited for in :meth:`close`."""
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
                break
            await asyncio.sleep(0.05)

    def close(self) -> None:
        """The end of worker 0's stop: wait for the other workers (killed only past
        ``CLOSE_TIMEOUT``), then stop the dispatcher and close what they shared."""
        deadline = time.monotonic() + CLOSE_TIMEOUT
        for proc in self.procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("signalling worker pid %d did not stop; killed", proc.pid)
                proc.kill()
                proc.wait()
        self.dispatcher.stop()  # before its descriptors close; a no-op when stopped
        for ours, theirs in self.channels:
            ours.close()
            theirs.close()
        self.sip_socket.close()
        for fd in (self.counts_fd, self.security_fd, self.nonces_fd, self.key_fd):
            os.close(fd)

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
