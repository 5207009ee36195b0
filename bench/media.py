"""Media relay capacity: the softswitch relay (cipher modes 0-3) against rtpengine.

Run from the repository root::

    .venv/bin/python bench/media.py --nice -10            # full run, ~15-20 min
    .venv/bin/python bench/media.py --quick --nice -10    # 5 s steps, coarser, ~6-10 min
    # both cores: relay workers against rtpengine's one thread (and ours on one core)
    .venv/bin/python bench/media.py --quick --nice -10 --systems ours,rtpengine,ours-workers

Method (``../shared/research/anchors.md``, "Media relay"; ``docs/performance.md``):

* a *call* is two RTP streams, one each way, of G.711-sized packets (12-byte header,
  160-byte payload) at 50 packets/s per stream, so a call is 100 packets/s through the
  relay;
* a *step* is N concurrent calls for ``--step-seconds`` (10 s; 5 s with ``--quick``),
  then a 1 s drain. It passes when under 0.1% of the packets sent are lost, a packet
  arriving more than 200 ms after it was sent counting as lost;
* the number of calls climbs a ladder until a step fails, then is bisected between the
  last passing and the first failing step; "repeatable" is 90% of that ceiling passing
  twice (80%, 70% ... 50% are tried, and reported, when 90% does not);
* the system under test is pinned to core 0 (``taskset -c 0``), the load generator to
  core 1 (``taskset -c 1``); CPU per packet is utime+stime of the system's process
  (``/proc/PID/stat``, all threads) over the step divided by the packets sent through it.
  The exceptions are the both-cores systems (``ours-workers``, ``rtpengine-threads``):
  they are not pinned, so they share core 1 with the generator, and their CPU is that of
  every process of the system (the relay's control process and its workers);
* after the searches, with ``--head-to-head CALLS,...``: rtpengine and every
  ``ours-workers`` mode of the run take turns at each of those loads,
  ``--head-to-head-rounds`` (3) rounds (forward, backward, forward order): which passes
  at equal load under the same background (the searches run minutes apart, and the
  background of a shared machine changes in minutes);
* after the searches, a paired comparison: every system at the same load
  (``--paired-calls``, 800) in turn, ``--paired-rounds`` (3) rounds, for CPU per packet
  measured under the same background.

Systems:

* ``rig``: the generator sending to itself (no relay): the generator's own ceiling;
* ``ours-<mode>``: N :class:`b2bua.media.relay.RelaySession` in one uvloop process (this
  file's ``_relay`` sub-command), the real classes, no SIP. For modes 1-3 leg b carries
  ``make_cipher(mode, key)``: what the relay sends out of leg b is encrypted, what it
  receives on leg b is decrypted, one cipher operation per packet in each direction,
  applied in the relay's C receive loop once the legs are latched;
* ``ours-python-<mode>``: the same with ``--relay-ciphers python``: a ciphered direction
  stays in Python, a call per packet (what every ciphered direction cost before the
  ciphers moved into C); modes 1-3 only;
* ``ours-workers-<mode>``: a :class:`b2bua.media.pool.RelayWorkerPool` of ``--workers``
  (2) relay worker processes, what the engine runs by default (``--media-workers``, one
  per core): this file's ``_relay --workers N`` is the engine's side (it opens the
  sessions through the pool, which spreads them over the workers, and sets each leg's
  remote and leg b's cipher ``(mode, key)`` as the call layer does), the workers relay.
  Not pinned: the workers may use both cores, core 1 shared with the generator. Its port
  range holds ``--workers-max-calls`` (6000) calls;
* ``rtpengine``: rtpengine userspace only (``--table=-1``), one worker thread, driven by
  its ng control protocol (bencode over UDP: ``offer``/``answer`` per call, 4 ports per
  call, ``delete`` after the step). It has no such payload ciphers: it is compared as a
  plain relay with every mode of ours;
* ``rtpengine-threads`` (not in the default set): the same with ``--num-threads`` =
  ``--workers``, not pinned: rtpengine on both cores, for the same footing as
  ``ours-workers``.

The ratios printed: every ``ours`` system against ``rtpengine`` (one thread on core 0):
for ``ours-<mode>`` one core against one core, for ``ours-workers-<mode>`` both cores
against rtpengine's one thread (the question of the issue: does the relay carry more
calls on a 2-core machine than rtpengine's single thread); and, when run, against
``rtpengine-threads`` and against ``ours-<mode>`` (what the second core adds).

The generator (this file's ``_gen`` sub-command) is one process with raw non-blocking
sockets and batched ``sendmmsg``/``recvmmsg``: its hot loop is ``bench/media/gen.c``
(built with ``cc`` into the work folder and loaded with ctypes), or the same loop in
Python with ctypes when no compiler is found (``--generator python``). Both run in
ticks of ``--gen-tick-ms`` (0.97 ms; see ``GEN_TICK_MS``): each tick sends every packet
that is due, drains every socket, then sleeps to the next tick, so the generator's CPU
is almost all the kernel's per-packet work (``rig`` here: C ~0.24 of core 1 at 300,000
packets/s each way and ~0.33 at 400,000; Python ~0.32 and ~0.40), and latencies are
measured to about one tick (the late threshold is 200 ms). The measurement data
lives in the RTP header, which the ciphers leave alone: SSRC = stream number (a fresh
range per step, so stragglers of an earlier step are recognised), SEQ = packet number,
TS = send time in microseconds. The payload is a fixed 160-byte pattern; the first
packet of every 64th receive batch is checked against it (after applying the same cipher
with ``make_cipher`` for modes 1-3: the generator's b side sends plaintext, which the
relay "decrypts", and receives what the relay encrypted; XOR keystreams being their own
inverse, applying the cipher once to what arrives gives the pattern back both ways).

On a machine shared with other work, a failed step during which other processes took
more than ``--disturbed`` (10%) of core 0 (or twice that of core 1) is run again, up to
``--retries`` (2) times; ``--nice -10`` runs the system under test and the generator at a
higher priority (the same for every system).

Only loopback addresses are used: the generator on 127.0.0.2, our relay (and workers)
on 127.0.0.3, rtpengine on 127.0.0.4. Every step is bounded in time and size; only
processes started here are stopped, by pid. Results (every step, with latency timelines,
relay counters and GC pauses) go to ``results.json`` in the work folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime as dt
import errno
import gc
import json
import os
import platform
import random
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

GEN_HOST = "127.0.0.2"
OUR_HOST = "127.0.0.3"
RTPE_HOST = "127.0.0.4"
RTPE_NG = (RTPE_HOST, 22223)
OUR_PORTS = (20000, 37999)  # 4 ports per call: 4500 calls
WORKERS_PORT_LOW = 20000  # relay workers: 4 ports per call from here (--workers-max-calls)
RTPE_PORTS = (2000, 19999)  # distinct from ours; 4 ports per call: 4500 calls

PPS_PER_STREAM = 50
STREAMS_PER_CALL = 2
PAYLOAD_LEN = 160
HEADER_LEN = 12
PACKET_LEN = HEADER_LEN + PAYLOAD_LEN
PAYLOAD = bytes((i * 7 + 3) & 0xFF for i in range(PAYLOAD_LEN))
LATE_US = 200_000  # later than this counts as lost
LOSS_LIMIT = 0.001  # a step passes under 0.1% loss
# "Repeatable": the first of these shares of the bisection ceiling to pass twice (the
# anchors' method is 90%; lower shares are tried, and reported, when 90% does not).
REPEAT_SHARES = (0.9, 0.8, 0.7, 0.6, 0.5)
CIPHER_KEYS = {1: b"VosKey-bench", 2: b"0123456789abcdef", 3: b"0123456789abcdef"}
MODE_NAMES = {0: "none", 1: "XOR", 2: "RC4", 3: "AES128"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE = 65536


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------
# sendmmsg / recvmmsg through ctypes (Linux, x86-64 layouts via ctypes alignment)
# --------------------------------------------------------------------------------------

class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", Msghdr), ("len", ctypes.c_uint)]


MSG_SIZE = ctypes.sizeof(Mmsghdr)
IOV_SIZE = ctypes.sizeof(Iovec)
MAX_VLEN = 1024  # UIO_MAXIOV
MSG_DONTWAIT = 0x40
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)

_libc = ctypes.CDLL(None, use_errno=True)
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_sendmmsg.restype = ctypes.c_int
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                      ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int


def sockaddr_in(host: str, port: int) -> bytes:
    return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            + socket.inet_aton(host) + bytes(8))


# --------------------------------------------------------------------------------------
# The load generator (runs as ``media.py _gen``, pinned to core 1)
# --------------------------------------------------------------------------------------

RX_SLOT = 176  # >= PACKET_LEN, multiple of 8
# Sent with DF (IP_PMTUDISC_DO): the kernel then sets IP ID 0 instead of hashing one per
# packet for the unconnected send sockets (__ip_select_ident); 200-byte packets on
# loopback never need fragments.
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DO = getattr(socket, "IP_PMTUDISC_DO", 2)
RX_BATCH = 256
RX_FMT = struct.Struct(">BBHII" + f"{RX_SLOT - HEADER_LEN}x")
LAT_BUCKET_SHIFT = 9  # latency histogram buckets of 512 us
# The generator's tick (--gen-tick-ms), deliberately not a divisor of the kernel's tick
# (4 ms at HZ=250 here; 1, 4 and 10 ms are the usual ones): with an exact 1 ms the
# generator's bursts, and through the relay those of the system under test, fall at the
# same phase of every scheduler tick, and the tick-sampled busy time of /proc/stat
# (core busy, "others", the disturbed test) reads all or none of them. At 0.97 ms the
# phase sweeps the whole tick every ~30 ms.
GEN_TICK_MS = 0.97


class Sender:
    """The streams one socket sends (one per call of its group), as prebuilt mmsghdrs.

    Each message has three iovecs: an 8-byte header shared by the whole batch (V/PT,
    SEQ, TS: the same for every stream in one send), the stream's SSRC, and the shared
    payload. So a batch costs one ``pack_into`` and one ``sendmmsg``, nothing per packet
    in Python.
    """

    def __init__(self, sock: socket.socket, dests: list[tuple[str, int]],
                 ssrcs: list[int], payload_buf: ctypes.Array[ctypes.c_char],
                 packets_per_stream: int) -> None:
        n = len(dests)
        self.sock = sock
        self.fd = sock.fileno()
        self.n = n
        self.total = n * packets_per_stream
        self.rate = n * PPS_PER_STREAM  # packets/s
        self.sent = 0
        self.eagain = 0
        self.errors = 0
        self.max_lag_ns = 0
        self.hdr = ctypes.create_string_buffer(8)
        self.hdr[0] = b"\x80"  # V=2
        self.hdr[1] = b"\x00"  # PT 0 (PCMU), no marker
        self.names = ctypes.create_string_buffer(b"".join(sockaddr_in(h, p) for h, p in dests),
                                                 16 * n)
        self.ssrc_buf = ctypes.create_string_buffer(b"".join(struct.pack("!I", s)
                                                             for s in ssrcs), 4 * n)
        self.iovs = (Iovec * (3 * n))()
        self.msgs = (Mmsghdr * n)()
        hdr_addr = ctypes.addressof(self.hdr)
        ssrc_addr = ctypes.addressof(self.ssrc_buf)
        names_addr = ctypes.addressof(self.names)
        iov_addr = ctypes.addressof(self.iovs)
        pay_addr = ctypes.addressof(payload_buf)
        for j in range(n):
            iv = self.iovs
            iv[3 * j].base, iv[3 * j].len = hdr_addr, 8
            iv[3 * j + 1].base, iv[3 * j + 1].len = ssrc_addr + 4 * j, 4
            iv[3 * j + 2].base, iv[3 * j + 2].len = pay_addr, PAYLOAD_LEN
            m = self.msgs[j].hdr
            m.name, m.namelen = names_addr + 16 * j, 16
            m.iov, m.iovlen = iov_addr + 3 * j * IOV_SIZE, 3
        self.msgs_addr = ctypes.addressof(self.msgs)

    def pump(self, el_ns: int, t0_ns: int) -> int:
        """Send every packet due by ``el_ns`` (ns since ``t0_ns``, the start); returns
        packets sent. TS is the send time of each ``sendmmsg`` batch (us since the start).
        """
        n = self.n
        due = min(self.total, el_ns * self.rate // 1_000_000_000)
        sent = self.sent
        if due <= sent:
            return 0
        lag = el_ns - sent * 1_000_000_000 // self.rate
        if lag > self.max_lag_ns:
            self.max_lag_ns = lag
        start = sent
        hdr = self.hdr
        mono = time.monotonic_ns
        while sent < due:
            j0 = sent % n
            m = min(n - j0, due - sent, MAX_VLEN)
            struct.pack_into("!HI", hdr, 2, (sent // n) & 0xFFFF,
                             ((mono() - t0_ns) // 1000) & 0xFFFFFFFF)
            r = _sendmmsg(self.fd, self.msgs_addr + j0 * MSG_SIZE, m, 0)
            if r <= 0:
                err = ctypes.get_errno()
                if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                    self.eagain += 1
                else:
                    self.errors += 1
                break
            sent += r
        self.sent = sent
        return sent - start


class Receiver:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = ctypes.create_string_buffer(RX_SLOT * RX_BATCH)
        self.view = memoryview(self.buf).cast("B")
        self.iovs = (Iovec * RX_BATCH)()
        self.msgs = (Mmsghdr * RX_BATCH)()
        base = ctypes.addressof(self.buf)
        iov_addr = ctypes.addressof(self.iovs)
        for i in range(RX_BATCH):
            self.iovs[i].base, self.iovs[i].len = base + RX_SLOT * i, RX_SLOT
            h = self.msgs[i].hdr
            h.iov, h.iovlen = iov_addr + i * IOV_SIZE, 1
        self.msgs_addr = ctypes.addressof(self.msgs)

    def recv(self) -> int:
        r = _recvmmsg(self.fd, self.msgs_addr, RX_BATCH, MSG_DONTWAIT, None)
        return r if r > 0 else 0


@dataclass
class RunStats:
    calls: int
    seconds: float
    scheduled: int = 0
    sent: int = 0
    on_time: int = 0
    late: int = 0
    missing: int = 0
    lost: int = 0  # missing + late
    loss: float = 0.0
    streams_with_loss: int = 0
    stale: int = 0  # packets of an earlier step, or not ours
    payload_checked: int = 0
    payload_bad: int = 0
    send_eagain: int = 0
    send_errors: int = 0
    max_send_lag_ms: float = 0.0
    send_seconds: float = 0.0
    achieved_pps: float = 0.0
    lat_p50_ms: float = 0.0
    lat_p99_ms: float = 0.0
    lat_p999_ms: float = 0.0
    lat_max_ms: float = 0.0
    gen_cpu_s: float = 0.0
    late_timeline: list[list[int]] = field(default_factory=list)  # [ms, late, max lat ms]


class _Raw:
    """What one run's hot loop measured (either implementation)."""

    def __init__(self, nsenders: int, nstreams: int) -> None:
        self.sent = [0] * nsenders
        self.counts = [0] * nstreams
        self.hist = [0] * HIST_BUCKETS
        self.late = 0
        self.stale = 0
        self.max_lat_us = 0
        self.timeline: dict[int, list[int]] = {}  # 100 ms of receive time -> [late, max us]
        self.eagain = 0
        self.errors = 0
        self.max_lag_ns = 0
        self.last_send_ns = 0
        self.samples: list[bytes] = []  # received packets whose payload is to be checked


HIST_BUCKETS = (LATE_US >> LAT_BUCKET_SHIFT) + 1
TIMELINE_SLOTS = 1200  # 100 ms slots: two minutes
MAX_SAMPLES = 4096
C_SOURCE = Path(__file__).resolve().parent / "media" / "gen.c"


def build_c_generator(out_dir: Path) -> tuple[Path | None, str]:
    """Compile bench/media/gen.c; (library, "") or (None, why not)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler: using the pure-Python generator"
    lib = out_dir / "gen.so"
    try:
        r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(C_SOURCE)],
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"compiling {C_SOURCE} failed: {exc}"
    if r.returncode != 0:
        return None, f"compiling {C_SOURCE} failed: {r.stderr.strip()[:500]}"
    return lib, ""


class Generator:
    """The load generator's sockets and hot loop (C, or Python when ``clib`` is None).

    The hot loop runs in ticks of ``tick_ns`` (``GEN_TICK_MS``, about 1 ms, by default):
    at each tick it sends every packet that is due (``sendmmsg`` batches), then drains
    every receive socket until it is empty (``recvmmsg``), then sleeps until the next
    tick; a tick that overruns is followed at once by the next. So it makes a few
    syscalls per socket per tick instead of polling, and its CPU is almost all the
    kernel's per-packet work. The cost is resolution: a packet is sent up to one tick
    after it is due (the max send lag shows it; TS carries the actual send time, so it
    does not count as latency), and waits in its socket up to one tick before it is
    read, so latencies are measured to about one tick (far below the 200 ms late
    threshold, so a step's pass or fail does not depend on it). ``tick_ns`` 0: no
    sleeping (a busy poll). The sockets send with DF set (``IP_PMTUDISC_DO``), which
    spares the kernel an IP ID hash per packet.
    """

    def __init__(self, groups: int, rcvbuf: int, clib: str | None,
                 tick_ns: int = round(GEN_TICK_MS * 1e6)) -> None:
        self.groups = groups
        self.tick_ns = tick_ns
        self.a_socks: list[socket.socket] = []
        self.b_socks: list[socket.socket] = []
        for lst in (self.a_socks, self.b_socks):
            for _ in range(groups):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
                    s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 4 << 20)
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
                s.bind((GEN_HOST, 0))
                s.setblocking(False)
                lst.append(s)
        self.receivers = [Receiver(s) for s in self.a_socks + self.b_socks]
        self.payload_buf = ctypes.create_string_buffer(PAYLOAD, PAYLOAD_LEN)
        self.c_run: Any = None
        if clib:
            fn = ctypes.CDLL(clib).gen_run
            fn.restype = ctypes.c_int
            self.c_run = fn

    def addresses(self) -> dict[str, Any]:
        return {"a": [list(s.getsockname()) for s in self.a_socks],
                "b": [list(s.getsockname()) for s in self.b_socks],
                "impl": "c" if self.c_run else "python"}

    def drain(self) -> int:
        n = 0
        for rx in self.receivers:
            for _ in range(10_000):
                got = rx.recv()
                if not got:
                    break
                n += got
        return n

    def run(self, a_dests: list[list[Any]], b_dests: list[list[Any]], seconds: float,
            drain_s: float, ssrc_base: int, mode: int, key: bytes) -> RunStats:
        """Call c (group c % groups): stream 2c goes a-socket -> a_dests[c] and arrives on
        the b-socket; stream 2c+1 goes b-socket -> b_dests[c] and arrives on the a-socket."""
        calls = len(a_dests)
        st = RunStats(calls=calls, seconds=seconds)
        st.stale = self.drain()
        per_stream = round(seconds * PPS_PER_STREAM)
        nstreams = 2 * calls
        # plan: per sender (socket, destinations, stream indexes)
        plan: list[tuple[socket.socket, list[tuple[str, int]], list[int]]] = []
        for g in range(self.groups):
            cs = list(range(g, calls, self.groups))
            if not cs:
                continue
            for sock, dests, off in ((self.a_socks[g], a_dests, 0), (self.b_socks[g], b_dests, 1)):
                plan.append((sock, [(dests[c][0], int(dests[c][1])) for c in cs],
                             [2 * c + off for c in cs]))
        st.scheduled = sum(len(p[1]) * per_stream for p in plan)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        if self.c_run is not None:
            raw = self._run_c(plan, per_stream, ssrc_base, nstreams, seconds, drain_s)
        else:
            raw = self._run_python(plan, per_stream, ssrc_base, nstreams, seconds, drain_s)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        st.gen_cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        # Payload checks: the generator's b side sends plaintext that the relay "decrypts"
        # and receives what the relay encrypted; one application of the same keystream
        # gives the pattern back either way.
        cipher = None
        if mode:
            sys.path.insert(0, str(REPO))
            from b2bua.media.cipher import make_cipher
            cipher = make_cipher(mode, key)
        for pkt in raw.samples:
            if not 0 <= struct.unpack_from("!I", pkt, 8)[0] - ssrc_base < nstreams:
                continue
            st.payload_checked += 1
            if cipher is not None:
                pkt = cipher.apply(pkt, HEADER_LEN)
            if pkt[HEADER_LEN:] != PAYLOAD:
                st.payload_bad += 1
        st.sent = sum(raw.sent)
        st.send_seconds = raw.last_send_ns / 1e9
        st.achieved_pps = st.sent / max(st.send_seconds, 1e-9)
        st.send_eagain = raw.eagain
        st.send_errors = raw.errors
        st.max_send_lag_ms = raw.max_lag_ns / 1e6
        missing_total = on_time = with_loss = 0
        for (_sock, sent_to, streams), sent in zip(plan, raw.sent, strict=True):
            q, r = divmod(sent, len(sent_to))
            for j, idx in enumerate(streams):
                sent_j = q + (1 if j < r else 0)
                got = min(raw.counts[idx], sent_j)
                on_time += got
                if got < sent_j:
                    with_loss += 1
                    missing_total += sent_j - got
        st.on_time = on_time
        st.late = raw.late
        st.lost = missing_total
        st.missing = max(0, missing_total - raw.late)
        st.loss = missing_total / st.sent if st.sent else 1.0
        st.streams_with_loss = with_loss
        st.stale += raw.stale
        st.late_timeline = [[k * 100, v[0], v[1] // 1000]
                            for k, v in sorted(raw.timeline.items())]
        hist = raw.hist
        total_h = sum(hist)
        if total_h:
            for share, attr in ((0.5, "lat_p50_ms"), (0.99, "lat_p99_ms"),
                                (0.999, "lat_p999_ms")):
                target = share * (total_h + raw.late)
                acc = 0
                value = LATE_US / 1000
                for i, c in enumerate(hist):
                    acc += c
                    if acc >= target:
                        value = ((i + 1) << LAT_BUCKET_SHIFT) / 1000
                        break
                setattr(st, attr, value)
        st.lat_max_ms = raw.max_lat_us / 1000
        return st

    def _run_c(self, plan: list[tuple[socket.socket, list[tuple[str, int]], list[int]]],
               per_stream: int, ssrc_base: int, nstreams: int, seconds: float,
               drain_s: float) -> _Raw:
        ns = len(plan)
        raw = _Raw(ns, nstreams)
        fds = (ctypes.c_int * ns)(*[p[0].fileno() for p in plan])
        ns_streams = (ctypes.c_int * ns)(*[len(p[1]) for p in plan])
        all_dests = [d for p in plan for d in p[1]]
        dests = ctypes.create_string_buffer(b"".join(sockaddr_in(h, port)
                                                     for h, port in all_dests),
                                            16 * len(all_dests))
        ssrcs = ctypes.create_string_buffer(b"".join(struct.pack("!I", ssrc_base + s)
                                                     for p in plan for s in p[2]),
                                            4 * len(all_dests))
        rfds = (ctypes.c_int * len(self.receivers))(*[r.fd for r in self.receivers])
        counts = (ctypes.c_uint32 * nstreams)()
        hist = (ctypes.c_uint64 * HIST_BUCKETS)()
        timeline = (ctypes.c_uint32 * (2 * TIMELINE_SLOTS))()
        out = (ctypes.c_int64 * 16)()
        sent = (ctypes.c_int64 * ns)()
        samples = ctypes.create_string_buffer(PACKET_LEN * MAX_SAMPLES)
        rc = self.c_run(
            ctypes.c_int(ns), fds, ns_streams, dests, ssrcs, self.payload_buf,
            ctypes.c_int(per_stream), ctypes.c_int(len(self.receivers)), rfds,
            ctypes.c_uint32(ssrc_base), ctypes.c_int(nstreams),
            ctypes.c_int64(int(seconds * 1e9)), ctypes.c_int64(int(drain_s * 1e9)),
            ctypes.c_int64(2_000_000_000), ctypes.c_int64(self.tick_ns),
            ctypes.c_uint32(LATE_US),
            counts, hist, ctypes.c_int(LAT_BUCKET_SHIFT), ctypes.c_int(HIST_BUCKETS),
            timeline, ctypes.c_int(TIMELINE_SLOTS), out, sent, samples,
            ctypes.c_int(MAX_SAMPLES))
        if rc != 0:
            raise MemoryError("C generator: out of memory")
        raw.sent = list(sent)
        raw.counts = list(counts)
        raw.hist = list(hist)
        (raw.late, raw.stale, raw.max_lat_us, raw.eagain, raw.errors, raw.max_lag_ns,
         raw.last_send_ns, _batches, nsamples) = (int(v) for v in out[:9])
        for k in range(TIMELINE_SLOTS):
            if timeline[2 * k] or timeline[2 * k + 1]:
                raw.timeline[k] = [int(timeline[2 * k]), int(timeline[2 * k + 1])]
        raw.samples = [samples.raw[i * PACKET_LEN:(i + 1) * PACKET_LEN]
                       for i in range(nsamples)]
        return raw

    def _run_python(self, plan: list[tuple[socket.socket, list[tuple[str, int]], list[int]]],
                    per_stream: int, ssrc_base: int, nstreams: int, seconds: float,
                    drain_s: float) -> _Raw:
        raw = _Raw(len(plan), nstreams)
        senders = [Sender(sock, dests, [ssrc_base + s for s in streams], self.payload_buf,
                          per_stream) for sock, dests, streams in plan]
        counts = raw.counts
        hist = raw.hist
        timeline = raw.timeline
        samples = raw.samples
        late = stale = max_lat = batches = 0
        unpack = RX_FMT.iter_unpack
        receivers = self.receivers
        mono = time.monotonic_ns
        sleep = time.sleep
        tick_ns = self.tick_ns
        t0 = mono()
        send_end = t0 + int(seconds * 1e9)
        hard_send_end = send_end + 2_000_000_000
        last_send = t0
        sending = True
        end = send_end + int(drain_s * 1e9)
        next_tick = t0
        # One tick: send what is due, drain every socket, sleep until the next tick (as
        # in gen.c).
        while True:
            now = mono()
            if sending:
                el = now - t0
                sent_now = 0
                for s in senders:
                    sent_now += s.pump(el, t0)
                if sent_now:
                    last_send = now
                if all(s.sent >= s.total for s in senders) or now >= hard_send_end:
                    sending = False
                    end = max(now, send_end) + int(drain_s * 1e9)
            for rx in receivers:
                while True:  # until empty: a failed (EAGAIN) or short batch
                    got = rx.recv()
                    if not got:
                        break
                    batches += 1
                    now_us = ((mono() - t0) // 1000) & 0xFFFFFFFF
                    view = rx.view
                    bmax = blate = 0
                    for _b0, _b1, _seq, ts, ssrc in unpack(view[:got * RX_SLOT]):
                        idx = ssrc - ssrc_base
                        if idx < 0 or idx >= nstreams:
                            stale += 1
                            continue
                        lat = (now_us - ts) & 0xFFFFFFFF
                        if lat < LATE_US:
                            counts[idx] += 1
                            hist[lat >> LAT_BUCKET_SHIFT] += 1
                            if lat > bmax:
                                bmax = lat
                        elif lat < 0x80000000:
                            blate += 1
                            if lat > bmax:
                                bmax = lat
                        else:  # sent "after" it arrived: not ours
                            stale += 1
                    key = now_us // 100_000
                    tl = timeline.get(key)
                    if tl is None:
                        tl = timeline[key] = [0, 0]
                    if blate:
                        late += blate
                        tl[0] += blate
                    if bmax > tl[1]:
                        tl[1] = bmax
                        if bmax > max_lat:
                            max_lat = bmax
                    if batches & 63 == 1 and len(samples) < MAX_SAMPLES:
                        samples.append(bytes(view[:PACKET_LEN]))
                    if got < RX_BATCH:
                        break
            if not sending and now >= end:
                break
            if tick_ns > 0:
                next_tick += tick_ns
                after = mono()
                if next_tick <= after:  # overrun: the next tick at once
                    next_tick = after
                else:
                    sleep((next_tick - after) / 1e9)
        raw.sent = [s.sent for s in senders]
        raw.late, raw.stale, raw.max_lat_us = late, stale, max_lat
        raw.eagain = sum(s.eagain for s in senders)
        raw.errors = sum(s.errors for s in senders)
        raw.max_lag_ns = max(s.max_lag_ns for s in senders)
        raw.last_send_ns = last_send - t0
        return raw


def gen_main(args: argparse.Namespace) -> int:
    gen = Generator(args.groups, args.rcvbuf, args.clib, round(args.tick_ms * 1e6))
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        if cmd == "addrs":
            reply: dict[str, Any] = gen.addresses()
        elif cmd == "run":
            st = gen.run(req["a_dests"], req["b_dests"], req["seconds"], req["drain"],
                         req["ssrc_base"], req["mode"], bytes.fromhex(req["key"]))
            reply = asdict(st)
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


# --------------------------------------------------------------------------------------
# The softswitch relay under test (runs as ``media.py _relay``, pinned to core 0)
# --------------------------------------------------------------------------------------

async def relay_serve(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    from b2bua.media.cipher import make_cipher
    from b2bua.media.relay import PortAllocator, RelaySession

    loop = asyncio.get_running_loop()
    allocator = PortAllocator(args.port_low, args.port_high)
    cipher = make_cipher(args.mode, bytes.fromhex(args.key)) if args.mode else None
    sessions: list[RelaySession] = []
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # The engine's own garbage-collector settings after start-up (b2bua/runner.py).
    try:
        from b2bua.runner import tune_gc
    except ImportError:
        tune_gc = gc.freeze
    tune_gc()
    # Collections during a step: generation -> [count, total s, longest s].
    gc_log: dict[int, list[float]] = {}
    gc_start = [0.0]

    def gc_cb(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
            return
        d = time.perf_counter() - gc_start[0]
        e = gc_log.setdefault(info["generation"], [0, 0.0, 0.0])
        e[0] += 1
        e[1] += d
        e[2] = max(e[2], d)

    gc.callbacks.append(gc_cb)

    async def close_all() -> None:
        old = sessions[:]
        sessions.clear()
        for i in range(0, len(old), 500):
            await asyncio.gather(*(s.wait_closed() for s in old[i:i + 500]))

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        req = json.loads(line)
        cmd = req["cmd"]
        if cmd == "setup":
            await close_all()
            a_rem, b_rem = req["a_remotes"], req["b_remotes"]
            new: list[RelaySession] = []
            try:
                for c in range(req["calls"]):
                    s = RelaySession(allocator, args.host, latching=True, b_cipher=cipher,
                                     ciphers_in_c=args.relay_ciphers == "c")
                    new.append(s)
                    await s.start()
                    s.a.set_remote(*a_rem[c % len(a_rem)])
                    s.b.set_remote(*b_rem[c % len(b_rem)])
            except Exception as exc:
                sessions.extend(new)
                await close_all()
                reply({"error": repr(exc)})
                continue
            sessions.extend(new)
            gc_log.clear()
            reply({"ports": [[s.a.rtp_port, s.b.rtp_port] for s in sessions]})
        elif cmd == "stats":
            tot: dict[str, int] = {}
            for s in sessions:
                for leg in (s.a, s.b):
                    for k, v in leg.counters().items():
                        tot[k] = tot.get(k, 0) + v
            out: dict[str, Any] = dict(tot)
            out["gc"] = {f"gen{g}": {"count": int(e[0]), "total_ms": round(e[1] * 1e3, 1),
                                     "max_ms": round(e[2] * 1e3, 1)}
                         for g, e in sorted(gc_log.items())}
            out["gc_tracked"] = len(gc.get_objects())
            reply(out)
        elif cmd in ("close", "quit"):
            await close_all()
            reply({"ok": True})
            if cmd == "quit":
                break
        else:
            reply({"error": f"unknown command {cmd}"})


async def relay_serve_workers(args: argparse.Namespace) -> None:
    """``_relay --workers N``: the engine's side of relay workers, as in the engine.

    The sessions are opened through a :class:`RelayWorkerPool` (which spreads them over
    its workers), each leg's remote and leg b's cipher are set as the call layer sets
    them. Replies carry the workers' pids (for the CPU of the whole system). ``stats``
    closes the step's sessions and sums their final counters (exact, as for a CDR;
    the counters mirrored every 0.5 s may lag behind an overloaded worker), so it is
    asked once per step, before ``close``, as the orchestrator does.
    """
    sys.path.insert(0, str(REPO))
    from b2bua.media.plane import CipherSpec, Counters
    from b2bua.media.pool import RelayWorkerPool, RemoteMediaSession

    loop = asyncio.get_running_loop()
    # (mode, key) as the call layer passes it: the key as text (make_cipher encodes it as
    # UTF-8, so the generator's check with the same bytes holds).
    spec: CipherSpec | None = ((args.mode, bytes.fromhex(args.key).decode("utf-8"))
                               if args.mode else None)
    pool = RelayWorkerPool(args.host, args.host, args.port_low, args.port_high, args.workers)
    sessions: list[RemoteMediaSession] = []
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        from b2bua.runner import tune_gc
    except ImportError:
        tune_gc = gc.freeze

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def worker_pids() -> list[int]:
        return [w.proc.pid for w in pool.workers if w.proc is not None and w.alive]

    async def close_all() -> dict[str, int]:
        """Close every session; the summed final counters (bounded wait)."""
        old = sessions[:]
        sessions.clear()
        tot: dict[str, int] = {}
        pending = [len(old)]
        done: asyncio.Future[None] = loop.create_future()

        def on_final(c: Counters) -> None:
            for d in c.values():
                for k, v in d.items():
                    tot[k] = tot.get(k, 0) + v
            pending[0] -= 1
            if pending[0] <= 0 and not done.done():
                done.set_result(None)

        for s in old:
            s.close(on_final=on_final)
        if pending[0] > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done, 10.0)
        tot["finals_missing"] = max(0, pending[0])
        return tot

    async def open_sessions(n: int) -> list[RemoteMediaSession]:
        new: list[RemoteMediaSession] = []
        try:
            for i in range(0, n, 500):
                batch = [pool.new_session(latching=True, a_nat=False, a_cipher=None,
                                          on_rtp_start=lambda: None)
                         for _ in range(min(500, n - i))]
                new.extend(batch)
                await asyncio.gather(*(s.start() for s in batch))
        except BaseException:
            for s in new:
                s.close()
            raise
        return new

    await pool.start()
    tune_gc()
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            req = json.loads(line)
            cmd = req["cmd"]
            if cmd == "pids":
                reply({"pids": worker_pids()})
            elif cmd == "setup":
                await close_all()
                a_rem, b_rem = req["a_remotes"], req["b_remotes"]
                try:
                    new = await open_sessions(req["calls"])
                    sessions.extend(new)
                    for c, s in enumerate(new):
                        s.set_remote("a", *a_rem[c % len(a_rem)])
                        s.set_remote("b", *b_rem[c % len(b_rem)])
                        if spec is not None:
                            s.set_cipher("b", spec)
                    # A worker handles its requests in order: once one more session per
                    # worker is open, every remote and cipher above is in place.
                    probes = await open_sessions(len(pool.workers))
                    for s in probes:
                        s.close()
                except Exception as exc:
                    await close_all()
                    reply({"error": repr(exc)})
                    continue
                per_worker = [len(w.sessions) for w in pool.workers]
                reply({"ports": [list(s.ports) for s in sessions], "pids": worker_pids(),
                       "per_worker": per_worker})
            elif cmd == "stats":
                out: dict[str, Any] = dict(await close_all())
                out["pool"] = pool.snapshot()
                out["pids"] = worker_pids()
                reply(out)
            elif cmd in ("close", "quit"):
                await close_all()
                reply({"ok": True})
                if cmd == "quit":
                    break
            else:
                reply({"error": f"unknown command {cmd}"})
    finally:
        await pool.close()


def relay_main(args: argparse.Namespace) -> int:
    import uvloop

    uvloop.run(relay_serve_workers(args) if args.workers else relay_serve(args))
    return 0


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------

def pinned(core: int, nice: int) -> list[str]:
    """Command prefix: pinned to ``core``, at ``nice`` when not 0."""
    prefix = ["nice", "-n", str(nice)] if nice else []
    return [*prefix, "taskset", "-c", str(core)]


def raise_nofile() -> None:
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


class Child:
    """A helper process spoken to in JSON lines on stdin/stdout."""

    def __init__(self, name: str, argv: list[str], work: Path) -> None:
        self.name = name
        self.err_path = work / f"{name}.stderr"
        self.err = self.err_path.open("ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, preexec_fn=raise_nofile, cwd=REPO)
        self.pid = self.proc.pid

    def request(self, obj: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no reply to {obj.get('cmd')} in {timeout} s")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited (see {self.err_path})")
                buf += chunk
        result: dict[str, Any] = json.loads(buf)
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.request({"cmd": "quit"}, 15)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        self.err.close()


def proc_cpu_s(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_times(cpu: int) -> tuple[float, float, float, float]:
    """(busy, softirq, steal, total) seconds of one CPU from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            v = [int(x) for x in line.split()[1:]]
            total = sum(v[:8])
            idle = v[3] + v[4]
            return ((total - idle) / CLK_TCK, v[6] / CLK_TCK, v[7] / CLK_TCK,
                    total / CLK_TCK)
    return 0.0, 0.0, 0.0, 0.0


def _hex_ip(host: str) -> str:
    return socket.inet_aton(host)[::-1].hex().upper()


def udp_drops(host: str, ports: set[int] | None = None) -> tuple[int, int]:
    """(sockets, summed drop counters) of UDP sockets bound to ``host`` (and ``ports``)."""
    want = _hex_ip(host)
    n = drops = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            f = line.split()
            ip, _, port = f[1].partition(":")
            if ip != want or (ports is not None and int(port, 16) not in ports):
                continue
            n += 1
            drops += int(f[-1])
    return n, drops


def packet_sockets() -> int:
    """AF_PACKET sockets open on the machine (a capture on lo costs every packet)."""
    try:
        return max(0, len(Path("/proc/net/packet").read_text().splitlines()) - 1)
    except OSError:
        return -1


# -- bencode for rtpengine's ng protocol -------------------------------------------------

def bencode(x: Any) -> bytes:
    if isinstance(x, bytes):
        return str(len(x)).encode() + b":" + x
    if isinstance(x, str):
        return bencode(x.encode())
    if isinstance(x, bool):
        return bencode(int(x))
    if isinstance(x, int):
        return b"i" + str(x).encode() + b"e"
    if isinstance(x, list):
        return b"l" + b"".join(bencode(v) for v in x) + b"e"
    if isinstance(x, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in x.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(x)}")


def bdecode(data: bytes) -> Any:
    def dec(i: int) -> tuple[Any, int]:
        c = data[i:i + 1]
        if c == b"i":
            j = data.index(b"e", i)
            return int(data[i + 1:j]), j + 1
        if c == b"l":
            i += 1
            out: list[Any] = []
            while data[i:i + 1] != b"e":
                v, i = dec(i)
                out.append(v)
            return out, i + 1
        if c == b"d":
            i += 1
            d: dict[Any, Any] = {}
            while data[i:i + 1] != b"e":
                k, i = dec(i)
                v, i = dec(i)
                d[k.decode() if isinstance(k, bytes) else k] = v
            return d, i + 1
        j = data.index(b":", i)
        n = int(data[i:j])
        return data[j + 1:j + 1 + n], j + 1 + n

    value, _ = dec(0)
    return value


class NgClient:
    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def request(self, msg: dict[str, Any], timeout: float = 1.0, tries: int = 3) -> Any:
        cookie = random.getrandbits(64).to_bytes(8, "big").hex().encode()
        data = cookie + b" " + bencode(msg)
        for _ in range(tries):
            self.sock.sendto(data, self.addr)
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                try:
                    reply = self.sock.recv(65535)
                except TimeoutError:
                    break
                c, _, body = reply.partition(b" ")
                if c == cookie:
                    return bdecode(body)
        raise TimeoutError(f"rtpengine: no reply to {msg.get('command')}")

    def close(self) -> None:
        self.sock.close()


SDP_TMPL = ("v=0\r\no=- {sid} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
M_PORT = re.compile(rb"^m=audio (\d+) ", re.M)
C_ADDR = re.compile(rb"^c=IN IP4 ([0-9.]+)", re.M)


# -- systems under test ----------------------------------------------------------------

class System:
    name = ""
    pid: int | None = None
    host = ""
    pinned = True  # to core 0; False: may use both cores (core 1 shared with the generator)
    cores = "0"  # where it runs, for the table

    def cpu_s(self) -> float:
        """utime+stime so far of every process of the system (0 when it has none)."""
        return proc_cpu_s(self.pid) if self.pid else 0.0

    def setup(self, calls: int, a_rem: list[list[Any]], b_rem: list[list[Any]], step: int
              ) -> tuple[list[list[Any]], list[list[Any]]]:
        """Set up ``calls`` calls; returns the per-call destinations (a side, b side)."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {}

    def teardown(self) -> None:
        pass

    def stop(self) -> None:
        pass


class Rig(System):
    name = "rig"
    cores = "1 (generator)"

    def setup(self, calls: int, a_rem: list[list[Any]], b_rem: list[list[Any]], step: int
              ) -> tuple[list[list[Any]], list[list[Any]]]:
        k = len(a_rem)
        # The a socket sends straight to the b socket of its group and back.
        return [b_rem[c % k] for c in range(calls)], [a_rem[c % k] for c in range(calls)]


class OurRelay(System):
    host = OUR_HOST

    def __init__(self, mode: int, work: Path, nice: int, ciphers: str = "c") -> None:
        self.mode = mode
        self.name = f"ours-{MODE_NAMES[mode]}" if ciphers == "c" else \
            f"ours-python-{MODE_NAMES[mode]}"
        key = CIPHER_KEYS.get(mode, b"")
        argv = [*pinned(0, nice), sys.executable, str(Path(__file__).resolve()), "_relay",
                "--host", OUR_HOST, "--port-low", str(OUR_PORTS[0]),
                "--port-high", str(OUR_PORTS[1]), "--mode", str(mode), "--key", key.hex(),
                "--relay-ciphers", ciphers]
        self.child = Child(self.name, argv, work)
        self.pid = self.child.pid

    def setup(self, calls: int, a_rem: list[list[Any]], b_rem: list[list[Any]], step: int
              ) -> tuple[list[list[Any]], list[list[Any]]]:
        r = self.child.request({"cmd": "setup", "calls": calls, "a_remotes": a_rem,
                                "b_remotes": b_rem}, 120)
        if "error" in r:
            raise RuntimeError(f"{self.name} setup: {r['error']}")
        ports = r["ports"]
        return [[OUR_HOST, a] for a, _ in ports], [[OUR_HOST, b] for _, b in ports]

    def stats(self) -> dict[str, Any]:
        return self.child.request({"cmd": "stats"}, 60)

    def teardown(self) -> None:
        self.child.request({"cmd": "close"}, 120)

    def stop(self) -> None:
        self.child.stop()


class OurWorkers(OurRelay):
    """Relay workers (:class:`b2bua.media.pool.RelayWorkerPool`), not pinned."""

    pinned = False

    def __init__(self, mode: int, work: Path, nice: int, workers: int,
                 ports: tuple[int, int]) -> None:
        self.mode = mode
        self.name = f"ours-workers-{MODE_NAMES[mode]}"
        self.cores = f"0-1 ({workers} workers)"
        key = CIPHER_KEYS.get(mode, b"")
        prefix = ["nice", "-n", str(nice)] if nice else []
        argv = [*prefix, sys.executable, str(Path(__file__).resolve()), "_relay",
                "--host", OUR_HOST, "--port-low", str(ports[0]), "--port-high", str(ports[1]),
                "--mode", str(mode), "--key", key.hex(), "--workers", str(workers)]
        self.child = Child(self.name, argv, work)
        self.pid = self.child.pid
        self.worker_pids: list[int] = self.child.request({"cmd": "pids"}, 60)["pids"]
        self.per_worker: list[int] = []
        self._split0: dict[str, tuple[float, int, int]] = {}
        if len(self.worker_pids) != workers:
            self.child.stop()
            raise RuntimeError(f"{self.name}: {len(self.worker_pids)} of {workers} "
                               f"workers running (see {self.child.err_path})")

    def _note_pids(self, pids: list[int]) -> None:
        if pids != self.worker_pids:
            log(f"  {self.name}: worker pids {self.worker_pids} -> {pids} (a worker was "
                "started again: its CPU before that is not counted)")
            self.worker_pids = pids

    def cpu_s(self) -> float:
        total = 0.0
        for pid in [self.pid or 0, *self.worker_pids]:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += proc_cpu_s(pid)
        return total

    def setup(self, calls: int, a_rem: list[list[Any]], b_rem: list[list[Any]], step: int
              ) -> tuple[list[list[Any]], list[list[Any]]]:
        r = self.child.request({"cmd": "setup", "calls": calls, "a_remotes": a_rem,
                                "b_remotes": b_rem}, 180)
        if "error" in r:
            raise RuntimeError(f"{self.name} setup: {r['error']}")
        self._note_pids(r["pids"])
        self.per_worker = r["per_worker"]
        self._split0 = self._split()
        ports = r["ports"]
        return [[OUR_HOST, a] for a, _ in ports], [[OUR_HOST, b] for _, b in ports]

    def _split(self) -> dict[str, tuple[float, int, int]]:
        """Per process: (CPU seconds, voluntary, involuntary context switches)."""
        out: dict[str, tuple[float, int, int]] = {}
        for what, pid in [("control", self.pid or 0),
                          *((f"worker{i}", p) for i, p in enumerate(self.worker_pids))]:
            with contextlib.suppress(OSError, ValueError, IndexError):
                sw = {k: int(v) for k, _, v in (line.partition(":\t") for line in
                      Path(f"/proc/{pid}/status").read_text().splitlines())
                      if k.endswith("ctxt_switches")}
                out[what] = (proc_cpu_s(pid), sw.get("voluntary_ctxt_switches", 0),
                             sw.get("nonvoluntary_ctxt_switches", 0))
        return out

    def stats(self) -> dict[str, Any]:
        # From the end of the setup to now (the step, its drain and the pauses around it):
        # which process took the CPU, and how often each was switched out.
        split1 = self._split()
        r = self.child.request({"cmd": "stats"}, 60)
        r["sessions_per_worker"] = self.per_worker
        r["per_process"] = {
            k: {"cpu_s": round(v[0] - self._split0[k][0], 3),
                "voluntary_switches": v[1] - self._split0[k][1],
                "involuntary_switches": v[2] - self._split0[k][2]}
            for k, v in split1.items() if k in self._split0}
        return r


class RtpEngine(System):
    name = "rtpengine"
    host = RTPE_HOST
    cores = "0 (1 thread)"

    def __init__(self, work: Path, binary: str, nice: int, threads: int = 0,
                 ports: tuple[int, int] = RTPE_PORTS) -> None:
        """``threads`` 0: one worker thread pinned to core 0 (the reference); N: N worker
        threads, not pinned (both cores, core 1 shared with the generator)."""
        self.work = work
        if threads:
            self.name = f"rtpengine-{threads}threads"
            self.pinned = False
            self.cores = f"0-1 ({threads} threads)"
            prefix = ["nice", "-n", str(nice)] if nice else []
        else:
            prefix = pinned(0, nice)
        self.err_path = work / f"{self.name}.stderr"
        self.err = self.err_path.open("ab")
        argv = [*prefix, binary, "--config-file=none", "--table=-1",
                "--foreground", "--log-stderr", "--log-level=4",
                f"--interface={RTPE_HOST}", f"--listen-ng={RTPE_NG[0]}:{RTPE_NG[1]}",
                f"--port-min={ports[0]}", f"--port-max={ports[1]}",
                f"--num-threads={threads or 1}", "--delete-delay=0", "--timeout=60"]
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.err,
                                     stderr=self.err, preexec_fn=raise_nofile)
        self.pid = self.proc.pid
        self.ng = NgClient(RTPE_NG)
        self.calls: list[tuple[str, str, str]] = []
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rtpengine exited with {self.proc.returncode} "
                                   f"(see {self.err_path})")
            try:
                if self.ng.request({"command": "ping"}, 0.5, 1).get("result") == b"pong":
                    break
            except TimeoutError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("rtpengine did not answer ping in 15 s")

    def setup(self, calls: int, a_rem: list[list[Any]], b_rem: list[list[Any]], step: int
              ) -> tuple[list[list[Any]], list[list[Any]]]:
        self.teardown()
        k = len(a_rem)
        a_dst: list[list[Any]] = []
        b_dst: list[list[Any]] = []
        for c in range(calls):
            cid, ft, tt = f"bench-{step}-{c}-{random.getrandbits(32):x}", f"f{c}", f"t{c}"
            a_ip, a_port = a_rem[c % k]
            b_ip, b_port = b_rem[c % k]
            offer = self.ng.request({
                "command": "offer", "call-id": cid, "from-tag": ft,
                "sdp": SDP_TMPL.format(sid=c + 1, ip=a_ip, port=a_port)})
            self.calls.append((cid, ft, tt))
            if offer.get("result") != b"ok":
                raise RuntimeError(f"rtpengine offer: {offer}")
            answer = self.ng.request({
                "command": "answer", "call-id": cid, "from-tag": ft, "to-tag": tt,
                "sdp": SDP_TMPL.format(sid=c + 100000, ip=b_ip, port=b_port)})
            if answer.get("result") != b"ok":
                raise RuntimeError(f"rtpengine answer: {answer}")
            for sdp, dst in ((offer["sdp"], b_dst), (answer["sdp"], a_dst)):
                m = M_PORT.search(sdp)
                ca = C_ADDR.search(sdp)
                if not m or not ca:
                    raise RuntimeError(f"rtpengine SDP without port/address: {sdp!r}")
                dst.append([ca.group(1).decode(), int(m.group(1))])
        return a_dst, b_dst

    def teardown(self) -> None:
        for cid, ft, _tt in self.calls:
            with contextlib.suppress(TimeoutError):
                self.ng.request({"command": "delete", "call-id": cid, "from-tag": ft}, 1.0, 2)
        self.calls.clear()

    def stats(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.teardown()
        self.ng.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.err.close()


# -- steps and the search ---------------------------------------------------------------

@dataclass
class Step:
    system: str
    calls: int
    pps: int
    passed: bool
    why: str
    loss: float
    late: int
    missing: int
    sent: int
    achieved_pps: float
    cpu_s: float
    cpu_us_per_packet: float
    cpu_share: float  # of one core: CPU seconds over the load seconds (drain included)
    core0_busy: float
    core1_busy: float
    core0_softirq: float
    core1_softirq: float
    core0_steal: float  # time the hypervisor ran something else (share of the window)
    core1_steal: float
    gen_cpu_share: float
    lat_p50_ms: float
    lat_p99_ms: float
    lat_max_ms: float
    system_udp_drops: int
    gen_udp_drops: int
    max_send_lag_ms: float
    payload_checked: int
    payload_bad: int
    stale: int
    relay: dict[str, Any] = field(default_factory=dict)
    purpose: str = ""
    late_timeline: list[list[int]] = field(default_factory=list)
    wall_s: float = 0.0
    # CPU of everything else on the core (busy time minus the system's, or the
    # generator's, process time), as a share of the window
    others_core0: float = 0.0
    others_core1: float = 0.0
    disturbed: bool = False


class SetupFailed(RuntimeError):
    """A system could not set up a step's calls (e.g. out of ports): no capacity figure."""


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, clib: Path | None) -> None:
        self.args = args
        self.work = work
        self.steps: list[Step] = []
        self.step_no = 0
        self.deadline: float = time.monotonic() + args.max_minutes * 60
        gen_argv = [*pinned(1, args.nice), sys.executable, str(Path(__file__).resolve()),
                    "_gen", "--groups", str(args.groups), "--rcvbuf", str(args.gen_rcvbuf),
                    "--tick-ms", str(args.gen_tick_ms)]
        if clib is not None:
            gen_argv += ["--clib", str(clib)]
        self.gen = Child("generator", gen_argv, work)
        addrs = self.gen.request({"cmd": "addrs"}, 30)
        self.gen_impl = addrs["impl"]
        self.a_rem: list[list[Any]] = addrs["a"]
        self.b_rem: list[list[Any]] = addrs["b"]
        self.gen_ports = {int(p) for _h, p in self.a_rem + self.b_rem}

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def step(self, system: System, calls: int, mode: int, purpose: str) -> Step:
        """One step; a failed step during which other work took a share of a core above
        ``--disturbed`` is run again (up to ``--retries`` times)."""
        st = self._step(system, calls, mode, purpose)
        for attempt in range(self.args.retries):
            if st.passed or not st.disturbed:
                break
            log(f"  step disturbed by other work (core0 {st.others_core0:.0%}, core1 "
                f"{st.others_core1:.0%} of the window): again ({attempt + 1})")
            time.sleep(2.0)
            st = self._step(system, calls, mode, purpose + " (again)")
        return st

    def _step(self, system: System, calls: int, mode: int, purpose: str) -> Step:
        self.step_no += 1
        seconds = self.args.step_seconds
        drain = 1.0
        try:
            a_dst, b_dst = system.setup(calls, self.a_rem, self.b_rem, self.step_no)
        except (RuntimeError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                system.teardown()
            raise SetupFailed(str(exc)) from exc
        time.sleep(0.3)
        _n, gdrops0 = udp_drops(GEN_HOST, self.gen_ports)
        c0b, c0s, c0st, c0t = cpu_times(0)
        c1b, c1s, c1st, c1t = cpu_times(1)
        cpu0 = system.cpu_s()
        t0 = time.monotonic()
        r = self.gen.request({
            "cmd": "run", "a_dests": a_dst, "b_dests": b_dst, "seconds": seconds,
            "drain": drain, "ssrc_base": (self.step_no << 20) & 0xFFFFFFFF, "mode": mode,
            "key": CIPHER_KEYS.get(mode, b"").hex()}, seconds + drain + 60)
        wall = time.monotonic() - t0
        cpu1 = system.cpu_s()
        c0b2, c0s2, c0st2, c0t2 = cpu_times(0)
        c1b2, c1s2, c1st2, c1t2 = cpu_times(1)
        _n, gdrops1 = udp_drops(GEN_HOST, self.gen_ports)
        _n, sdrops = udp_drops(system.host) if system.host else (0, 0)
        relay_stats = system.stats()
        system.teardown()
        cpu = cpu1 - cpu0
        if system.pinned:
            others0 = ((c0b2 - c0b) - cpu) / max(c0t2 - c0t, 1e-9)
            others1 = ((c1b2 - c1b) - r["gen_cpu_s"]) / max(c1t2 - c1t, 1e-9)
            disturbed = others0 > self.args.disturbed or others1 > 2 * self.args.disturbed
        else:
            # On both cores: which core the system's CPU was spent on is not known, so
            # what other work took is counted over both (in shares of one core), and is
            # recorded as half on each core.
            both = ((c0b2 - c0b) + (c1b2 - c1b) - cpu - r["gen_cpu_s"]) / max(
                (c0t2 - c0t + c1t2 - c1t) / 2, 1e-9)
            others0 = others1 = both / 2
            disturbed = both > 2 * self.args.disturbed
        sent = r["sent"]
        loss = r["loss"]
        why = []
        if loss >= LOSS_LIMIT:
            why.append(f"loss {loss:.3%} (late {r['late']}, missing {r['missing']})")
        if r["payload_bad"]:
            why.append(f"{r['payload_bad']} payloads wrong")
        if sent < 0.99 * r["scheduled"] or r["send_errors"]:
            why.append(f"generator sent {sent}/{r['scheduled']} (errors {r['send_errors']})")
        st = Step(
            system=system.name, calls=calls, pps=calls * STREAMS_PER_CALL * PPS_PER_STREAM,
            passed=not why, why="; ".join(why) or "ok", loss=loss, late=r["late"],
            missing=r["missing"], sent=sent, achieved_pps=r["achieved_pps"], cpu_s=cpu,
            cpu_us_per_packet=(cpu / sent * 1e6) if sent and system.pid else 0.0,
            cpu_share=cpu / seconds if system.pid else 0.0,
            core0_busy=(c0b2 - c0b) / max(c0t2 - c0t, 1e-9),
            core1_busy=(c1b2 - c1b) / max(c1t2 - c1t, 1e-9),
            core0_softirq=(c0s2 - c0s) / max(c0t2 - c0t, 1e-9),
            core1_softirq=(c1s2 - c1s) / max(c1t2 - c1t, 1e-9),
            core0_steal=(c0st2 - c0st) / max(c0t2 - c0t, 1e-9),
            core1_steal=(c1st2 - c1st) / max(c1t2 - c1t, 1e-9),
            late_timeline=r["late_timeline"], wall_s=wall,
            others_core0=others0, others_core1=others1,
            disturbed=disturbed,
            gen_cpu_share=r["gen_cpu_s"] / seconds,
            lat_p50_ms=r["lat_p50_ms"], lat_p99_ms=r["lat_p99_ms"], lat_max_ms=r["lat_max_ms"],
            system_udp_drops=sdrops, gen_udp_drops=gdrops1 - gdrops0,
            max_send_lag_ms=r["max_send_lag_ms"], payload_checked=r["payload_checked"],
            payload_bad=r["payload_bad"], stale=r["stale"], relay=relay_stats, purpose=purpose)
        self.steps.append(st)
        cores = (f"core0 {st.core0_busy:.0%} (others {st.others_core0:.0%}) core1 "
                 f"{st.core1_busy:.0%}" if system.pinned else
                 f"core0 {st.core0_busy:.0%} core1 {st.core1_busy:.0%} (others "
                 f"{st.others_core0 + st.others_core1:.0%})")
        log(f"  {system.name:>19} {calls:5d} calls {st.pps:7d} pps: "
            f"{'PASS' if st.passed else 'FAIL'} loss {loss:.4%} late {st.late} "
            f"p99 {st.lat_p99_ms:.1f} ms max {st.lat_max_ms:.0f} ms | cpu "
            f"{st.cpu_share:.0%} {st.cpu_us_per_packet:.2f} us/pkt | {cores} "
            f"gen {st.gen_cpu_share:.0%} "
            f"lag {st.max_send_lag_ms:.0f} ms"
            f" | drops sys {sdrops} gen {st.gen_udp_drops}"
            + ("" if st.passed else f" | {st.why}"))
        time.sleep(1.0)
        return st

    def warm_up(self, system: System, mode: int) -> None:
        """A short unrecorded step at low load: imports, first allocations, caches."""
        saved = self.args.step_seconds
        self.args.step_seconds = 2.0
        try:
            st = self.step(system, 100, mode, "warm-up")
            self.steps.remove(st)
        finally:
            self.args.step_seconds = saved

    def paired(self, systems: list[tuple[System, int]], calls: int, rounds: int,
               seconds: float, purpose: str = "paired") -> dict[str, dict[str, Any]]:
        """Every system at the same load, in turn, ``rounds`` times (forward, then backward
        order): CPU per packet, and passing, compared under the same background."""
        saved = self.args.step_seconds
        per: dict[str, list[Step]] = {s.name: [] for s, _ in systems}
        try:
            for system, mode in systems:
                self.warm_up(system, mode)
            self.args.step_seconds = seconds
            for r in range(rounds):
                order = systems if r % 2 == 0 else systems[::-1]
                for system, mode in order:
                    if self.out_of_time():
                        break
                    try:
                        st = self._step(system, calls, mode, f"{purpose} {r + 1}")
                    except SetupFailed as exc:
                        log(f"  {system.name}: {calls} calls could not be set up ({exc})")
                        continue
                    per[system.name].append(st)
        finally:
            self.args.step_seconds = saved
        out: dict[str, dict[str, Any]] = {}
        for name, steps in per.items():
            good = [s for s in steps if s.passed and not s.disturbed] or steps
            vals = [s.cpu_us_per_packet for s in good]
            out[name] = {
                "calls": calls, "steps": len(steps), "used": len(good),
                "cpu_us_per_packet": statistics.median(vals) if vals else None,
                "all": [round(s.cpu_us_per_packet, 2) for s in steps],
                "passed": sum(s.passed for s in steps),
                "disturbed": sum(s.disturbed for s in steps),
                "loss": [round(s.loss, 5) for s in steps],
                "p99_ms": [s.lat_p99_ms for s in steps],
            }
        return out

    def search(self, system: System, mode: int, ladder: list[int], max_calls: int
               ) -> dict[str, Any]:
        args = self.args
        self.warm_up(system, mode)
        lo, hi = 0, None
        first_fail: Step | None = None
        setup_errors: list[str] = []

        def try_step(calls: int, purpose: str) -> Step | None:
            """A step, or None when its calls could not be set up (the search stops
            there: a capacity above the last passing step is then not known)."""
            try:
                return self.step(system, calls, mode, purpose)
            except SetupFailed as exc:
                setup_errors.append(f"{calls} calls: {exc}")
                log(f"  {system.name}: {calls} calls could not be set up ({exc}): "
                    "the search stops there")
                return None

        for calls in ladder:
            if calls > max_calls or self.out_of_time():
                break
            st = try_step(calls, "ladder")
            if st is None:
                break
            if st.passed:
                lo = calls
            else:
                hi, first_fail = calls, st
                break
        if (hi is None and not setup_errors and ladder[-1] < max_calls and lo == ladder[-1]
                and not self.out_of_time()):
            st = try_step(max_calls, "ladder")
            if st is not None and st.passed:
                lo = max_calls
            elif st is not None:
                hi, first_fail = max_calls, st
        while hi is not None and hi - lo > max(args.min_gap, args.gap * lo):
            if self.out_of_time():
                break
            mid = (lo + hi) // 2 // 5 * 5
            if mid <= lo:
                break
            st = try_step(mid, "bisect")
            if st is None:
                break
            if st.passed:
                lo = mid
            else:
                hi, first_fail = mid, st
        repeatable = 0
        rep_share = 0.0
        rep_steps: list[Step] = []
        for share in REPEAT_SHARES:
            if lo <= 0 or self.out_of_time():
                break
            calls = max(1, int(lo * share) // 5 * 5)
            runs = []
            for _ in range(2):
                rst = try_step(calls, f"repeat {share:.0%}")
                if rst is None:
                    break
                runs.append(rst)
                if not rst.passed:
                    break
            rep_steps = runs
            if all(s.passed for s in runs) and len(runs) == 2:
                repeatable = calls
                rep_share = share
                break
        at_ceiling = next((s for s in reversed(self.steps)
                           if s.system == system.name and s.calls == lo and s.passed), None)
        return {
            "system": system.name, "cores": system.cores, "mode": mode, "ceiling_calls": lo,
            "first_fail_calls": hi, "capped": hi is None,
            "repeatable_calls": repeatable, "repeatable_share": rep_share,
            "repeatable_pps": repeatable * STREAMS_PER_CALL * PPS_PER_STREAM,
            "cpu_us_per_packet": (sum(s.cpu_us_per_packet for s in rep_steps) / len(rep_steps)
                                  if rep_steps and repeatable else None),
            "cpu_share": (sum(s.cpu_share for s in rep_steps) / len(rep_steps)
                          if rep_steps and repeatable else None),
            "p99_ms": max((s.lat_p99_ms for s in rep_steps), default=None)
            if repeatable else None,
            "ceiling_cpu_us_per_packet": at_ceiling.cpu_us_per_packet if at_ceiling else None,
            "ceiling_cpu_share": at_ceiling.cpu_share if at_ceiling else None,
            "first_fail": asdict(first_fail) if first_fail else None,
            "setup_errors": setup_errors,
        }


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    info: dict[str, Any] = {
        "cores": os.cpu_count(), "cpu": model, "mem_gb": round(mem_gb, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "rmem_default": Path("/proc/sys/net/core/rmem_default").read_text().strip(),
    }
    with contextlib.suppress(Exception):
        import uvloop

        info["uvloop"] = getattr(uvloop, "__version__", "?")
    return info


def rtpengine_binary() -> tuple[str | None, str]:
    path = shutil.which("rtpengine")
    if not path:
        return None, ("rtpengine not installed (apt-get install rtpengine-daemon; "
                      "the benchmark does not install it itself)")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        return path, (out.stdout + out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"rtpengine --version failed: {exc}"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}"


def print_table(results: list[dict[str, Any]]) -> str:
    lines = ["| system | cores | cipher | ceiling calls (bisection) | repeatable calls | "
             "repeatable packets/s | CPU us/packet | CPU (share of one core) | p99 ms "
             "| ours/rtpengine (repeatable) | ours/rtpengine (ceiling) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    ref = next((r for r in results if r["system"] == "rtpengine"), None)
    ref_pps = ref["repeatable_pps"] if ref else None
    for r in results:
        ceil = f"{r['ceiling_calls']}" + (" (capped)" if r["capped"] else "")
        cpu = f"{r['cpu_us_per_packet']:.2f}" if r["cpu_us_per_packet"] else "-"
        share = f"{r['cpu_share']:.0%}" if r["cpu_share"] else "-"
        p99 = f"{r['p99_ms']:.1f}" if r["p99_ms"] is not None else "-"
        rat = ratio(r["repeatable_pps"], ref_pps) if r["system"].startswith("ours") else "-"
        cipher = MODE_NAMES.get(r["mode"], "none") if r["system"] != "rig" else "-"
        rshare = r.get("repeatable_share") or 0
        rep = f"{r['repeatable_calls']}" + (f" ({rshare:.0%})" if rshare and rshare != 0.9
                                             else "")
        cr = (ratio(r["ceiling_calls"], ref["ceiling_calls"])
              if ref and r["system"].startswith("ours") else "-")
        lines.append(f"| {r['system']} | {r.get('cores', '-')} | {cipher} | {ceil} | {rep} | "
                     f"{r['repeatable_pps']:,} | {cpu} | {share} | {p99} | {rat} | {cr} |")
    return "\n".join(lines)


# Per core against rtpengine's passthrough: every cipher in the relay's C loop (the goals
# of the ciphers-in-C work; the ones before it, with the ciphers in Python, were 0.7 XOR,
# 0.5 AES128 and 0.3 RC4, which ours-python still shows).
GOALS = {0: 1.0, 1: 1.0, 3: 1.0, 2: 0.8}
PYTHON_GOALS = {1: 0.7, 3: 0.5, 2: 0.3}


def both_cores_lines(results: list[dict[str, Any]]) -> list[str]:
    """Relay workers (both cores) against rtpengine's one thread on core 0 (the issue's
    comparison), against rtpengine on both cores when run, and against ours on core 0."""
    out: list[str] = []
    ref = next((r for r in results if r["system"] == "rtpengine"), None)
    ref2 = next((r for r in results if r["system"].startswith("rtpengine-")), None)
    for r in results:
        if not r["system"].startswith("ours-workers"):
            continue
        name = r["system"]
        cap = " (capped: at least)" if r["capped"] else ""
        for other, what in ((ref, "rtpengine, 1 thread on core 0"),
                            (ref2, f"{ref2['system'] if ref2 else ''}, both cores"),
                            (next((o for o in results
                                   if o["system"] == name.replace("-workers", "")), None),
                             "ours on core 0")):
            if other is None:
                continue
            out.append(
                f"{name} ({r.get('cores', '')}) vs {other['system']} ({what}): max calls "
                f"repeatable {r['repeatable_calls']} / {other['repeatable_calls']} = "
                f"{ratio(r['repeatable_calls'], other['repeatable_calls'])}, ceiling "
                f"{r['ceiling_calls']} / {other['ceiling_calls']} = "
                f"{ratio(r['ceiling_calls'], other['ceiling_calls'])}{cap}")
    return out


def orchestrate(args: argparse.Namespace) -> int:
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-media-"))
    work.mkdir(parents=True, exist_ok=True)
    raise_nofile()
    started = dt.datetime.now(dt.UTC)
    t_start = time.monotonic()
    log(f"work folder {work}")
    info = machine_info()
    info["packet_sockets_at_start"] = packet_sockets()
    rtpe_path, rtpe_version = rtpengine_binary()
    info["rtpengine"] = rtpe_version
    log(f"machine {info}")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    known = {"rig", "ours", "ours-python", "rtpengine", "ours-workers", "rtpengine-threads"}
    if set(systems) - known:
        raise SystemExit(f"unknown systems {sorted(set(systems) - known)}; "
                         f"known: {', '.join(sorted(known))}")
    modes = [int(m) for m in args.modes.split(",") if m.strip()]
    ladder = [int(x) for x in args.ladder.split(",")]
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    paired: dict[str, dict[str, Any]] = {}
    head_to_head: dict[int, dict[str, dict[str, Any]]] = {}
    clib: Path | None = None
    if args.generator in ("auto", "c"):
        clib, why = build_c_generator(work)
        if clib is None:
            if args.generator == "c":
                raise SystemExit(why)
            problems.append(why)
            log(why)
    bench = Bench(args, work, clib)
    info["generator"] = bench.gen_impl
    log(f"generator: {bench.gen_impl}, tick {args.gen_tick_ms:g} ms")
    # 4 ports per call, and room for the probe session per worker of every setup.
    wports = (WORKERS_PORT_LOW,
              min(WORKERS_PORT_LOW + 4 * (args.workers_max_calls + 4 * args.workers) - 1,
                  65535))
    workers_max = min(args.workers_max_calls,
                      (wports[1] - wports[0] + 1) // 4 - 4 * args.workers)
    # Each system's searches next to each other in time, mode by mode (passthrough first).
    order: list[tuple[str, int]] = []
    if "rig" in systems:
        order.append(("rig", 0))
    if "ours" in systems and 0 in modes:
        order.append(("ours", 0))
    if "rtpengine" in systems:
        order.append(("rtpengine", 0))
    if "ours-workers" in systems and 0 in modes:
        order.append(("ours-workers", 0))
    if "rtpengine-threads" in systems:
        order.append(("rtpengine-threads", 0))
    for m in (1, 3, 2):
        if m in modes:
            order += [(k, m) for k in ("ours", "ours-python", "ours-workers") if k in systems]
    try:
        for kind, mode in order:
            if bench.out_of_time():
                problems.append(f"time budget reached: {kind} mode {mode} not run")
                log(problems[-1])
                continue
            system: System
            if kind == "rig":
                system = Rig()
                log("rig: the generator against itself, the highest ladder step first")
                bench.warm_up(system, 0)
                st = bench.step(system, args.max_calls, 0, "rig")
                if st.passed:
                    results.append({"system": "rig", "mode": 0,
                                    "ceiling_calls": args.max_calls, "first_fail_calls": None,
                                    "capped": True, "repeatable_calls": args.max_calls,
                                    "repeatable_pps": st.pps, "cpu_us_per_packet": None,
                                    "cpu_share": None, "p99_ms": st.lat_p99_ms,
                                    "ceiling_cpu_us_per_packet": None,
                                    "ceiling_cpu_share": None, "first_fail": None})
                else:
                    results.append(bench.search(system, 0, ladder, args.max_calls))
                continue
            max_calls, sys_ladder = args.max_calls, ladder
            if kind.startswith("rtpengine"):
                if rtpe_path is None:
                    problems.append(f"{kind} not run: {rtpe_version}")
                    log(problems[-1])
                    continue
                try:
                    if kind == "rtpengine-threads":
                        # Never running beside ours-workers: the same (larger) port range.
                        system = RtpEngine(work, rtpe_path, args.nice, args.workers, wports)
                        max_calls = workers_max
                        sys_ladder = ladder + list(range(ladder[-1] + 500, max_calls, 500))
                    else:
                        system = RtpEngine(work, rtpe_path, args.nice)
                except Exception as exc:
                    problems.append(f"{kind} could not be started: {exc}")
                    log(problems[-1])
                    continue
            elif kind == "ours-workers":
                try:
                    system = OurWorkers(mode, work, args.nice, args.workers, wports)
                except Exception as exc:
                    problems.append(f"{kind} mode {mode} could not be started: {exc}")
                    log(problems[-1])
                    continue
                max_calls = workers_max
                sys_ladder = ladder + list(range(ladder[-1] + 500, max_calls, 500))
            else:
                system = OurRelay(mode, work, args.nice,
                                  "python" if kind == "ours-python" else "c")
            extra = (f", workers {system.worker_pids}" if isinstance(system, OurWorkers)
                     else "")
            log(f"{system.name}: pid {system.pid}{extra}; cores {system.cores}")
            try:
                res = bench.search(system, mode, sys_ladder, max_calls)
                results.append(res)
                problems += [f"{system.name}: could not set up {e}; its ceiling is at least "
                             f"the last step that passed" for e in res["setup_errors"]]
            finally:
                system.stop()
        h2h_loads = [int(x) for x in args.head_to_head.split(",") if x.strip()]
        h2h_kinds = [(k, m) for k, m in order if k in ("rtpengine", "ours-workers")]
        if h2h_loads and h2h_kinds and not bench.out_of_time():
            log(f"head-to-head: {', '.join(f'{k} {m}' for k, m in h2h_kinds)} in turn at "
                f"{h2h_loads} calls, {args.head_to_head_rounds} rounds")
            h2h_systems: list[tuple[System, int]] = []
            try:
                for kind, mode in h2h_kinds:
                    if kind == "ours-workers":
                        h2h_systems.append((OurWorkers(mode, work, args.nice, args.workers,
                                                       wports), mode))
                    elif rtpe_path is not None:
                        with contextlib.suppress(Exception):
                            h2h_systems.append((RtpEngine(work, rtpe_path, args.nice), 0))
                for calls in h2h_loads:
                    if bench.out_of_time():
                        problems.append(f"time budget reached: head-to-head at {calls} "
                                        "calls not run")
                        break
                    head_to_head[calls] = bench.paired(
                        h2h_systems, calls, args.head_to_head_rounds, args.step_seconds,
                        "head-to-head")
            finally:
                for system, _mode in h2h_systems:
                    system.stop()
        if args.paired_rounds and not bench.out_of_time():
            log(f"paired: every system at {args.paired_calls} calls in turn, "
                f"{args.paired_rounds} rounds")
            started_systems: list[tuple[System, int]] = []
            try:
                for kind, mode in order:
                    if kind in ("ours", "ours-python"):
                        started_systems.append((OurRelay(
                            mode, work, args.nice, "python" if kind == "ours-python" else "c"),
                            mode))
                    elif kind == "ours-workers":
                        started_systems.append((OurWorkers(mode, work, args.nice,
                                                           args.workers, wports), mode))
                    elif kind == "rtpengine" and rtpe_path is not None:
                        with contextlib.suppress(Exception):
                            started_systems.append((RtpEngine(work, rtpe_path, args.nice), 0))
                paired = bench.paired(started_systems, args.paired_calls, args.paired_rounds,
                                      args.paired_seconds)
            finally:
                for system, _mode in started_systems:
                    system.stop()
    finally:
        bench.gen.stop()
    info["packet_sockets_at_end"] = packet_sockets()
    elapsed = time.monotonic() - t_start
    table = print_table(results)
    ref = next((r for r in results if r["system"] == "rtpengine"), None)
    goal_lines = []
    for r in results:
        if not r["system"].startswith("ours") or r["system"].startswith("ours-workers"):
            continue
        goal = (PYTHON_GOALS if r["system"].startswith("ours-python") else GOALS)[r["mode"]]
        if ref and ref["repeatable_pps"]:
            x = r["repeatable_pps"] / ref["repeatable_pps"]
            goal_lines.append(f"{r['system']}: {x:.2f}x rtpengine (goal >= {goal}x): "
                              f"{'met' if x >= goal else 'NOT met'}")
        else:
            goal_lines.append(f"{r['system']}: no rtpengine figure to compare with")
    goal_lines += both_cores_lines(results)
    paired_lines = []
    ref_cpu = paired.get("rtpengine", {}).get("cpu_us_per_packet")
    for name, p in paired.items():
        cpu = p["cpu_us_per_packet"]
        rel = (f"; rtpengine/{name} = {ref_cpu / cpu:.2f}"
               if ref_cpu and cpu and name != "rtpengine" else "")
        paired_lines.append(
            f"paired at {p['calls']} calls: {name} CPU {cpu:.2f} us/packet (median of "
            f"{p['used']}; all {p['all']}; passed {p['passed']}/{p['steps']}){rel}"
            if cpu else f"paired: {name}: no figure")
    h2h_lines = []
    for calls, per in head_to_head.items():
        parts = []
        for name, p in per.items():
            losses = ", ".join(f"{x:.2%}" for x in p["loss"])
            parts.append(f"{name} passed {p['passed']}/{p['steps']} (loss {losses}; "
                         f"disturbed {p['disturbed']})")
        h2h_lines.append(f"head-to-head at {calls} calls ({calls * 100:,} packets/s): "
                         + "; ".join(parts))
    summary = {
        "started": started.isoformat(timespec="seconds"), "elapsed_s": round(elapsed),
        "argv": sys.argv, "args": vars(args), "machine": info, "results": results,
        "goals": goal_lines, "paired": paired, "paired_lines": paired_lines,
        "head_to_head": {str(k): v for k, v in head_to_head.items()},
        "head_to_head_lines": h2h_lines,
        "problems": problems, "steps": [asdict(s) for s in bench.steps],
    }
    (work / "results.json").write_text(json.dumps(summary, indent=1))
    print()
    print(table)
    print()
    for line in goal_lines + h2h_lines + paired_lines + problems:
        print(line)
    log(f"done in {elapsed / 60:.1f} min; results in {work / 'results.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_gen":
        ap = argparse.ArgumentParser()
        ap.add_argument("--groups", type=int, default=4)
        ap.add_argument("--rcvbuf", type=int, default=32 << 20)
        ap.add_argument("--clib", default=None)
        ap.add_argument("--tick-ms", type=float, default=GEN_TICK_MS)
        return gen_main(ap.parse_args(argv[1:]))
    if argv and argv[0] == "_relay":
        ap = argparse.ArgumentParser()
        ap.add_argument("--host", default=OUR_HOST)
        ap.add_argument("--port-low", type=int, default=OUR_PORTS[0])
        ap.add_argument("--port-high", type=int, default=OUR_PORTS[1])
        ap.add_argument("--mode", type=int, default=0)
        ap.add_argument("--key", default="", help="the cipher key, hex")
        ap.add_argument("--relay-ciphers", choices=("c", "python"), default="c")
        ap.add_argument("--workers", type=int, default=0,
                        help="relay worker processes (0: sessions in this process)")
        return relay_main(ap.parse_args(argv[1:]))
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="5 s steps, 8%% bisection gap, shorter ladder")
    ap.add_argument("--systems", default="rig,ours,rtpengine",
                    help="any of rig, ours (one process on core 0), ours-python (the same "
                         "with the ciphers kept in Python: modes 1-3 only), rtpengine (one "
                         "thread on core 0), ours-workers (--workers relay worker processes, not "
                         "pinned), rtpengine-threads (--workers threads, not pinned)")
    ap.add_argument("--modes", default="0,1,2,3")
    ap.add_argument("--step-seconds", type=float, default=None)
    ap.add_argument("--ladder", default="500,1000,1500,2000,2500,3000,3500")
    ap.add_argument("--max-calls", type=int, default=4000,
                    help="upper bound on concurrent calls of ours and rtpengine (their port "
                         "ranges hold 4500)")
    ap.add_argument("--workers", type=int, default=2,
                    help="relay worker processes of ours-workers (threads of "
                         "rtpengine-threads)")
    ap.add_argument("--workers-max-calls", type=int, default=6000,
                    help="upper bound on concurrent calls of ours-workers and "
                         "rtpengine-threads (their port range, from 20000, is sized to it: "
                         "4 ports per call)")
    ap.add_argument("--gap", type=float, default=None,
                    help="bisect until the gap is under this share of the ceiling")
    ap.add_argument("--min-gap", type=int, default=25)
    ap.add_argument("--disturbed", type=float, default=0.10,
                    help="a failed step is disturbed when other work took more than this "
                         "share of core 0 (twice this of core 1; for the systems on both "
                         "cores, twice this of one core over both) and is run again")
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--paired-calls", type=int, default=800,
                    help="load of the paired CPU-per-packet comparison (0 rounds: skip it)")
    ap.add_argument("--paired-rounds", type=int, default=3)
    ap.add_argument("--head-to-head", default="",
                    help="comma-separated loads (calls) at which rtpengine and every "
                         "ours-workers mode of the run take turns, --head-to-head-rounds "
                         "rounds, after the searches: passes at equal load under the same "
                         "background (empty: skip)")
    ap.add_argument("--head-to-head-rounds", type=int, default=3)
    ap.add_argument("--paired-seconds", type=float, default=5.0)
    ap.add_argument("--groups", type=int, default=4,
                    help="generator sockets per side (calls are spread over them)")
    ap.add_argument("--gen-rcvbuf", type=int, default=32 << 20)
    ap.add_argument("--gen-tick-ms", type=float, default=GEN_TICK_MS,
                    help="the generator's tick: each tick it sends what is due, reads what "
                         "arrived, then sleeps to the next (latency resolution about one "
                         "tick; 0: no sleeping, a busy poll). Best not a divisor of the "
                         "kernel's tick (1, 4, 10 ms): see GEN_TICK_MS")
    ap.add_argument("--max-minutes", type=float, default=24.0)
    ap.add_argument("--generator", choices=("auto", "c", "python"), default="auto",
                    help="the generator's hot loop: C (bench/media/gen.c, built with cc) "
                         "or pure Python (ctypes sendmmsg/recvmmsg); auto: C if it builds")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the system under test and the generator at this nice value "
                         "(e.g. -10 on a machine shared with other work)")
    ap.add_argument("--work", default=None, help="work folder (default: a new temp dir)")
    args = ap.parse_args(argv)
    if args.step_seconds is None:
        args.step_seconds = 5.0 if args.quick else 10.0
    if args.gap is None:
        args.gap = 0.08 if args.quick else 0.03
    if args.quick and args.max_minutes == 24.0:
        args.max_minutes = 12.0
    return orchestrate(args)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())

