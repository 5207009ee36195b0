"""Highest clean calls per second: sipp rig ceiling, the softswitch, Sippy B2BUA, kamailio.

Run from the repository root::

    .venv/bin/python bench/cps.py            # full run, ~15 min
    .venv/bin/python bench/cps.py --quick    # short steps, coarse bisection, ~5 min

Method (see ../shared/research/anchors.md and docs/performance.md):

* a step is ``rate`` calls/s for ``--step-seconds`` (sipp ``-m rate*step -r rate``) with a
  1 s hold (``-d 1000``); every step is bounded by sipp ``-timeout`` and
  ``-recv_timeout`` and by a hard wall-clock limit here;
* a step is *clean* when both sipp sides exit 0, both stats CSVs show every call
  successful and none failed, and the achieved call-creation rate is >= 95% of the target;
* the rate is stepped up a ladder until a step fails, then bisected between the last
  clean and the first failing rate;
* systems: (a) sipp UAC -> sipp UAS directly (the rig ceiling), (b) sipp UAC ->
  softswitch -> sipp UAS (IP-authenticated trunk, one routing gateway), (b') the same
  with the trunk in password mode (``softswitch-password``: every call is challenged
  with a 401 and the UAC answers with digest credentials, two INVITEs per call), (b'')
  the same as (b) with two signalling workers sharing the calls by Call-ID
  (``softswitch-2w``, ``--signalling-workers 2``), (c) optionally Sippy B2BUA run as
  anchors.md says, (d) optionally Debian's kamailio as a stateful record-routing proxy
  (``kamailio``: tm, sl, rr, pv, maxfwd, siputils, textops; ``KAMAILIO_CHILDREN`` UDP
  children, 2 for a 2-core machine; the tlsf memory manager, ``--kamailio-memory``; no
  database, no authentication), a C reference for
  the CPU per call, with the proxy variants of the sipp scenarios (``uac_proxy.xml``,
  ``uas_proxy.xml``: the vendor copies the Record-Route, the caller's ACK and BYE carry
  the route set back through the proxy), (e) optionally the cluster (``cluster``,
  docs/cluster.md): 1, 2 and 3 softswitch nodes (``--node``, one PostgreSQL, one Redis,
  each node on its own loopback address, run from ``--code``) behind the kamailio edge
  (``deploy/kamailio/edge.cfg`` as shipped), one search per size in the same run, each on
  a new database; the calls go through the edge (the proxy scenarios), the trunk has no
  capacity; reported as ratios to 1 node, with the CPU per call of each part. On a
  machine of a few cores every part and both sipps share the same cores, so the figures
  show the mechanism and the cost per call, not the cluster's capacity;
  (f) optionally the softswitch with its operator console open (``softswitch-console``,
  ``bench/console_load.py``): two headless Chromium signed in, one on the Dashboard, one
  on Live calls, polling the API as they do for an operator for the whole search, run
  under ``SCHED_IDLE`` so that they take no core the others want;
* the system's CPU time per call is utime+stime of its process (/proc/<pid>/stat, all
  threads; with signalling workers, theirs added; for kamailio, summed over its main
  process and all its descendants; for the cluster, the sum of the edge's processes,
  each node's engine, the nodes' relay workers, PostgreSQL's processes and Redis, each
  also kept apart) over the step divided by the calls of the step;
* diagnostics after the searches (skip with ``--no-diagnostics``): a py-spy profile of the
  softswitch at its ceiling, its cyclic-GC pauses there and at the first failing rate
  (through ``bench/gc_probe.py``), and its ceiling with the cyclic GC switched off (what
  the engine's CPU alone allows), profiled too;
* ``--code head`` (or any git revision) runs the softswitch from ``git archive`` of that
  revision instead of the working tree, so that edits made by others during the run do
  not change what is measured;
* ``--profile-at RATE`` skips the searches: one step at RATE per softswitch system with
  py-spy attached, and where the time goes.
* ``--count-work RATE`` skips the searches: one step at RATE for ``--code`` and one for
  ``--base`` with the event loop's thread under cProfile (``bench/callwork.py``), and the
  Python function calls per SIP call of each: a measure of added work that the load of a
  shared machine does not move.
* ``--fixed-rate RATE`` (with ``softswitch-console``): before the searches,
  ``--fixed-rounds`` pairs of steps at RATE on one softswitch, without any browser and
  with the console's two, in alternating order, each from a restarted softswitch: the
  engine's CPU per call (its process only) and the API's (gunicorn's processes) with and
  without the console at equal load;
* ``--fresh-each-step`` restarts the system before every step: the softswitch keeps
  finished calls in memory for a while (docs/performance.md, Soak), so without it a step
  inherits the heap, and the garbage-collection pauses, of the steps before it.

Only loopback addresses are used; only processes started here are stopped, by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import support  # noqa: E402
from procstat import descendants, proc_cpu_s  # noqa: E402
from support import Softswitch, free_port, wait_until  # noqa: E402

SCENARIOS = Path(__file__).resolve().parent / "sipp"
UAC_XML = SCENARIOS / "uac_txn.xml"
UAS_XML = SCENARIOS / "uas_answer.xml"
UAS_LATE_XML = SCENARIOS / "uas_late_1xx.xml"
UAC_PROXY_XML = SCENARIOS / "uac_proxy.xml"  # through a record-routing proxy
UAS_PROXY_XML = SCENARIOS / "uas_proxy.xml"
GC_PROBE = Path(__file__).resolve().parent / "gc_probe.py"

# Password mode: the UAC's credentials for the customer trunk (a password-mode mapping
# gateway); its first INVITE is answered 401 and it retries with Authorization.
TRUNK_USER = "bench"
TRUNK_PASSWORD = "bench-secret"
UAC_AUTH_NAME = "uac_auth_txn.xml"

CUSTOMER_IP = "127.0.0.2"  # the sipp UAC (customer trunk)
VENDOR_IP = "127.0.0.3"  # the sipp UAS (vendor)
SWITCH_IP = "127.0.0.1"  # the system under test

CLK_TCK = os.sysconf("SC_CLK_TCK")
CLEAN_RATE_SHARE = 0.95
RECV_TIMEOUT_MS = 10_000  # a call waiting longer than this for a message fails
FAILURE_COLUMNS = (
    "FailedCannotSendMessage", "FailedMaxUDPRetrans", "FailedUnexpectedMessage",
    "FailedCallRejected", "FailedCmdNotSent", "FailedRegexpDoesntMatch",
    "FailedRegexpHdrNotFound", "FailedOutboundCongestion", "FailedTimeoutOnRecv",
    "FailedTimeoutOnSend", "OutOfCallMsgs", "DeadCallMsgs", "FatalErrors",
    "WatchdogMajor", "WatchdogMinor",
)


# Like uac_txn.xml, with the challenge round first: INVITE, 401/407, ACK, INVITE with
# credentials in a new transaction; then 200, ACK, hold, BYE. Written into the work
# folder at the start of a run that measures password mode.
UAC_AUTH_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bench_uac_auth_txn">
  <send retrans="500" start_txn="invite">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port];transport=udp>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="100" optional="true" response_txn="invite"/>
  <recv response="407" auth="true" optional="true" response_txn="invite" next="challenged"/>
  <recv response="401" auth="true" response_txn="invite"/>
  <label id="challenged"/>
  <send ack_txn="invite">
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500" start_txn="auth">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port];transport=udp>
      [authentication]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="100" optional="true" response_txn="auth"/>
  <recv response="180" optional="true" response_txn="auth"/>
  <recv response="183" optional="true" response_txn="auth"/>
  <recv response="200" rtd="true" response_txn="auth">
    <action>
      <ereg regexp="sip:[^>]*" search_in="hdr" header="Contact:" assign_to="peer"/>
    </action>
  </recv>
  <send ack_txn="auth">
    <![CDATA[
      ACK [$peer] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Contact: <sip:[caller]@[local_ip]:[local_port];transport=udp>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause/>
  <send retrans="500" start_txn="bye">
    <![CDATA[
      BYE [$peer] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true" response_txn="bye"/>
  <ResponseTimeRepartition value="10, 20, 50, 100, 200, 500, 1000"/>
</scenario>
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------- sipp


@dataclass
class SideStats:
    """What one sipp side reported for a step (last row of its stats CSV)."""

    role: str
    exit_code: int | None
    created: int = 0
    incoming: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    achieved_rate: float | None = None
    problems: dict[str, int] = field(default_factory=dict)
    setup_ms: dict[str, int] = field(default_factory=dict)
    note: str = ""


def _epoch(cell: str) -> float:
    # sipp writes "YYYY-MM-DD\tHH:MM:SS.ffffff\tEPOCH"
    return float(cell.split("\t")[-1])


def parse_stats(path: Path, role: str, exit_code: int | None, calls: int) -> SideStats:
    stats = SideStats(role, exit_code)
    if not path.exists():
        stats.note = "no stats CSV"
        return stats
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter=";") if r.get("StartTime")]
    if not rows:
        stats.note = "empty stats CSV"
        return stats
    last = rows[-1]

    def num(row: dict[str, str], col: str) -> int:
        try:
            return int(float(row.get(col) or 0))
        except ValueError:
            return 0

    stats.created = num(last, "OutgoingCall(C)")
    stats.incoming = num(last, "IncomingCall(C)")
    stats.successful = num(last, "SuccessfulCall(C)")
    stats.failed = num(last, "FailedCall(C)")
    stats.retransmissions = num(last, "Retransmissions(C)")
    stats.problems = {c: num(last, f"{c}(C)") for c in FAILURE_COLUMNS if num(last, f"{c}(C)")}
    stats.setup_ms = {k.split("_", 1)[1]: num(last, k) for k in last
                      if k.startswith("ResponseTimeRepartition1_")}
    # Achieved rate: calls created (UAC) or received (UAS) per second over the 1 s stats
    # periods that lie wholly inside the creation phase (before the last call came).
    col = "OutgoingCall(C)" if role == "uac" else "IncomingCall(C)"
    total = num(last, col)
    n_sum, t_sum = 0, 0.0
    prev_t, prev_n = _epoch(last["StartTime"]), 0
    for row in rows:
        t, n = _epoch(row["CurrentTime"]), num(row, col)
        if n >= total:
            break
        if t > prev_t:
            n_sum, t_sum = n_sum + n - prev_n, t_sum + t - prev_t
        prev_t, prev_n = t, n
    if t_sum >= 1.0:
        stats.achieved_rate = round(n_sum / t_sum, 1)
    if role == "uac" and calls and stats.created < calls:
        stats.note = f"created only {stats.created}/{calls} calls"
    return stats


@dataclass
class SippRun:
    proc: subprocess.Popen[bytes]
    run_dir: Path
    role: str
    started: float

    def wait(self, timeout: float) -> int | None:
        try:
            return int(self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 5.0) -> int | None:
        """Ask sipp to finish (SIGUSR1: no new calls, quit), then kill it by pid."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGUSR1)
            if self.wait(grace) is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_sipp(role: str, run_dir: Path, scenario: Path, local_ip: str, local_port: int,
               calls: int, rate: float, hold_ms: int, timeout_s: int,
               remote: str | None = None, extra: list[str] | None = None,
               recv_timeout_ms: int = RECV_TIMEOUT_MS) -> SippRun:
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        "sipp", "-sf", str(scenario), "-i", local_ip, "-p", str(local_port), "-t", "u1",
        "-m", str(calls), "-d", str(hold_ms), "-s", "200",
        "-timeout", f"{timeout_s}s", "-timeout_error", "-recv_timeout", str(recv_timeout_ms),
        "-nostdin", "-trace_stat", "-stf", str(run_dir / "stats.csv"), "-fd", "1",
        "-trace_err", "-error_file", str(run_dir / "errors.log"), "-trace_screen",
        "-screen_file", str(run_dir / "screen.log"),
    ]
    if role == "uac":
        cmd += ["-r", str(rate)]
    cmd += extra or []
    if remote:
        cmd.append(remote)
    (run_dir / "cmd.txt").write_text(" ".join(cmd) + "\n")
    proc = subprocess.Popen(cmd, cwd=run_dir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(run_dir / "stderr.txt", "wb"))  # noqa: SIM115
    return SippRun(proc, run_dir, role, time.monotonic())


def wait_bound(host: str, port: int, timeout: float = 3.0) -> bool:
    """True once something has bound UDP host:port (our bind then fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return True
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------------------- CPU


def engine_cpu_s(pid: int | None) -> float | None:
    """A system's CPU: its process, plus the softswitch's signalling workers (children
    running ``b2bua.signalling``) when it has them."""
    own = proc_cpu_s(pid)
    if own is None or pid is None:
        return own
    return own + sum(proc_cpu_s(child) or 0.0
                     for child in children_running(pid, b"b2bua.signalling"))


def children_running(pid: int, module: bytes) -> list[int]:
    """The children of ``pid`` whose command line names ``module`` (``python -m ...``)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for child in children:
        with contextlib.suppress(OSError):
            if module in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(int(child))
    return out


def _port(hostport: str) -> int:
    return int(hostport.rsplit(":", 1)[1])


def udp_drops(ports: dict[str, int]) -> dict[str, int]:
    """Kernel drop counters (/proc/net/udp, last column) of the UDP sockets on ``ports``."""
    wanted = {p: k for k, p in ports.items()}
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            cols = line.split()
            port = int(cols[1].rsplit(":", 1)[1], 16)
            if port in wanted:
                key = wanted[port]
                out[key] = out.get(key, 0) + int(cols[-1])
    return out


def tree_cpu_s(pid: int | None) -> float | None:
    """utime+stime of a process and of all its descendants that are alive (a
    multi-process server such as kamailio: its UDP receivers, timers and main process)."""
    own = proc_cpu_s(pid)
    if own is None or pid is None:
        return own
    return own + sum(proc_cpu_s(child) or 0.0 for child in descendants(pid))


DISPATCHER_THREAD = "sip-dispatch"  # the name b2bua/sip/_dispatch.c gives its thread


def thread_cpu_s(pid: int | None, name: str) -> float | None:
    """utime+stime of the thread of ``pid`` called ``name``; None when there is none."""
    if pid is None:
        return None
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            if (task / "comm").read_text().strip() == name:
                raw = (task / "stat").read_text()
                fields = raw[raw.rindex(")") + 2:].split()
                return (int(fields[11]) + int(fields[12])) / CLK_TCK
    return None


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------------------- systems


class System(Protocol):
    name: str

    @property
    def target(self) -> str: ...  # where the UAC sends its INVITEs

    @property
    def pid(self) -> int | None: ...  # the process whose CPU is charged to the system

    @property
    def vendor_port(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def settle(self) -> bool: ...  # between steps: True when idle and healthy

    def restart(self) -> None: ...

    def counters(self) -> dict[str, float]: ...

    def log_size(self) -> int: ...

    def log_since(self, offset: int) -> list[str]: ...

    def diagnostics(self, t0: float, t1: float) -> dict[str, Any]: ...

    @property
    def uac_scenario(self) -> Path | None: ...  # None: uac_txn.xml

    @property
    def uac_args(self) -> list[str]: ...  # extra sipp arguments for the UAC

    @property
    def uas_scenario(self) -> Path | None: ...  # None: uas_answer.xml


class NoInsight:
    """A system without an API: no counters, no log, the bench's default scenarios."""

    def counters(self) -> dict[str, float]:
        return {}

    def log_size(self) -> int:
        return 0

    def log_since(self, offset: int) -> list[str]:
        return []

    def diagnostics(self, t0: float, t1: float) -> dict[str, Any]:
        return {}

    @property
    def uac_scenario(self) -> Path | None:
        return None

    @property
    def uac_args(self) -> list[str]:
        return []

    @property
    def uas_scenario(self) -> Path | None:
        return None


@dataclass
class Rig(NoInsight):
    """sipp UAC -> sipp UAS directly: the ceiling of the load generator itself."""

    workdir: Path
    name: str = "rig (sipp -> sipp)"
    _vendor_port: int = 0

    @property
    def target(self) -> str:
        return f"{VENDOR_IP}:{self.vendor_port}"

    @property
    def pid(self) -> int | None:
        return None

    @property
    def vendor_port(self) -> int:
        return self._vendor_port

    def start(self) -> None:
        self._vendor_port = free_port(VENDOR_IP, socket.SOCK_DGRAM)

    def stop(self) -> None:
        pass

    def settle(self) -> bool:
        return True

    def restart(self) -> None:
        pass


CONTROLS_RATE = {"call_rate": 100_000, "call_rate_burst": 10_000}
CONTROLS_CUSTOMER = CONTROLS_RATE


@dataclass
class SoftswitchSystem:
    """``softswitch run`` with one mapping gateway (the UAC's IP) and one routing gateway.

    ``gc_mode`` (diagnostics only) starts it through ``bench/gc_probe.py``: ``log`` records
    the cyclic GC's collections, ``off`` disables the cyclic GC.
    """

    workdir: Path
    log_level: str = "WARNING"
    name: str = "softswitch"
    gc_mode: str | None = None
    code_root: Path | None = None  # a snapshot of b2bua/api/migrations to run instead
    auth_mode: str = "ip"  # the customer trunk: "ip" or "password" (digest on every call)
    params: dict[str, Any] = field(default_factory=dict)  # set through the API at start
    extra_args: list[str] = field(default_factory=list)  # for ``softswitch run``
    switch: Softswitch | None = None
    _vendor_port: int = 0
    sip_host: str = SWITCH_IP
    # False: start() only starts it (a cluster node: the gateways and parameters are set
    # once for the cluster through one node's API, see ClusterSystem).
    configure: bool = True
    # True: headless Chromium browsers signed in to its console, on the Dashboard and on
    # Live calls, polling as they do for an operator (softswitch-console,
    # bench/console_load.py); started with the softswitch, reloaded after each restart.
    console: bool = False
    console_load: Any = None  # console_load.ConsoleLoad while the browsers are up
    # True: the carrier controls on every call (softswitch-controls): the customer with a
    # call-rate limit and two routing gateways to the vendor, weighted 70/30, each with
    # a call-rate limit; all far above the offered rate, so each call pays for the
    # limiter and the weighted turn and none is refused (docs/carrier-controls.md).
    controls: bool = False

    @property
    def uac_scenario(self) -> Path | None:
        if self.auth_mode != "password":
            return None
        path = self.workdir / UAC_AUTH_NAME
        if not path.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            path.write_text(UAC_AUTH_XML)
        return path

    @property
    def uac_args(self) -> list[str]:
        if self.auth_mode != "password":
            return []
        return ["-au", TRUNK_USER, "-ap", TRUNK_PASSWORD, "-key", "caller", TRUNK_USER]

    @property
    def uas_scenario(self) -> Path | None:
        return None

    @property
    def gc_log(self) -> Path:
        return self.workdir / "gc.jsonl"

    @contextlib.contextmanager
    def _launcher(self) -> Iterator[None]:
        """Start ``softswitch run`` through gc_probe.py for a GC mode or a code snapshot."""
        if self.gc_mode is None and self.code_root is None:
            yield
            return
        saved = list(support.SOFTSWITCH)
        env = {"BENCH_GC_MODE": self.gc_mode or "none", "BENCH_GC_LOG": str(self.gc_log),
               "BENCH_CODE_ROOT": str(self.code_root or "")}
        old_env = {k: os.environ.get(k) for k in env}
        support.SOFTSWITCH[:] = [sys.executable, str(GC_PROBE)]
        os.environ.update(env)
        try:
            yield
        finally:
            support.SOFTSWITCH[:] = saved
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    @property
    def target(self) -> str:
        assert self.switch is not None
        return f"{self.sip_host}:{self.switch.sip_port}"

    @property
    def pid(self) -> int | None:
        # The engine runs in the ``softswitch run`` process itself (asyncio + uvloop,
        # plus its CDR writer thread); the API is a separate gunicorn process.
        return self.switch.proc.pid if self.switch and self.switch.proc else None

    @property
    def vendor_port(self) -> int:
        return self._vendor_port

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._vendor_port = free_port(VENDOR_IP, socket.SOCK_DGRAM)
        self.switch = Softswitch(self.workdir, sip_host=self.sip_host,
                                 extra_args=["--log-level", self.log_level, *self.extra_args])
        with self._launcher():
            self.switch.start()
        if not self.configure:
            return
        api = self.switch.api
        if self.auth_mode == "password":
            api.post("/api/v1/mapping-gateways", {
                "name": "customer", "auth_mode": "password", "username": TRUNK_USER,
                "password": TRUNK_PASSWORD})
        else:
            api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP],
                                                  **(CONTROLS_CUSTOMER if self.controls
                                                     else {})})
        if self.controls:
            for name, weight in (("vendor", 70), ("vendor-b", 30)):
                api.post("/api/v1/routing-gateways", {
                    "name": name, "host": VENDOR_IP, "port": self.vendor_port,
                    "transport": "udp", "weight": weight, **CONTROLS_RATE})
        else:
            api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                                  "port": self.vendor_port,
                                                  "transport": "udp"})
        for name, value in self.params.items():
            api.put(f"/api/v1/parameters/{name}", {"value": value})
        self._wait_gateways()
        if self.console:
            try:
                self.console_on()
            except BaseException:
                self.stop()
                raise

    def console_on(self) -> None:
        """The browsers on the console (started, or their pages loaded again)."""
        import console_load

        assert self.switch is not None
        if self.console_load is not None and self.console_load.browsers:
            self.console_load.reopen()
        else:
            if self.code_root is not None and not (self.code_root / "node_modules").exists():
                # The console serves its chart library from node_modules beside api/.
                if self.code_root.parent == self.workdir.parent:  # exported by the bench
                    (self.code_root / "node_modules").symlink_to(REPO / "node_modules")
                else:
                    log(f"warning: no node_modules in {self.code_root}: the Dashboard's "
                        "charts will not load")
            if self.console_load is None:
                self.console_load = console_load.ConsoleLoad(
                    self.workdir / "console", self.switch.api_base, self.switch.api, log)
            self.console_load.start()
        moved = self.console_load.not_idle()
        log(f"console: browsers on their pages ({moved} threads put back under SCHED_IDLE)")

    def console_off(self) -> None:
        """No browser: each one quit and what is left of it ended by pid."""
        if self.console_load is not None:
            self.console_load.stop()

    def _wait_gateways(self) -> None:
        assert self.switch is not None
        api = self.switch.api

        def ready() -> bool:
            status = api.get("/api/v1/engine")
            vendors = 2 if self.controls else 1
            return bool(status["mapping_gateways"] == 1 and status["routing_gateways"] == vendors
                        and all(status["params"][k] == v for k, v in self.params.items()))

        if not wait_until(ready, timeout=10):
            raise RuntimeError("softswitch did not load the gateways")

    def stop(self) -> None:
        try:
            self.console_off()
        finally:
            if self.switch is not None:
                code = self.switch.stop()
                if code != 0:
                    log(f"softswitch exited with {code}")

    def restart(self) -> None:
        assert self.switch is not None
        log("restarting the softswitch")
        self.switch.stop()
        self.switch.proc = None
        with self._launcher():
            self.switch.start()
        self._wait_gateways()
        if self.console_load is not None and self.console_load.browsers:
            self.console_on()  # the pages loaded again, on the new API processes

    def settle(self) -> bool:
        assert self.switch is not None
        api = self.switch.api
        try:
            return bool(wait_until(lambda: api.get("/api/v1/calls")["items"] == [],
                                   timeout=30, interval=0.5))
        except (OSError, AssertionError):
            return False

    def counters(self) -> dict[str, float]:
        assert self.switch is not None
        try:
            stats = self.switch.api.get("/api/v1/stats")
            dispatcher = self.switch.api.get("/api/v1/engine")["signalling"]["dispatcher"]
        except (OSError, AssertionError, KeyError):
            return {}
        out = dict(_flatten(stats))
        cpu = thread_cpu_s(self.pid, DISPATCHER_THREAD)
        if dispatcher is not None and cpu is not None:
            # With signalling workers: what the dispatcher thread read, and its CPU.
            out["dispatcher.received"] = dispatcher["received"]
            out["dispatcher.cpu_s"] = cpu
        return out

    def log_size(self) -> int:
        path = self.switch.log_path if self.switch else None
        return path.stat().st_size if path and path.exists() else 0

    def log_since(self, offset: int) -> list[str]:
        path = self.switch.log_path if self.switch else None
        if not path or not path.exists():
            return []
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(4_000_000).decode(errors="replace").splitlines()

    def diagnostics(self, t0: float, t1: float) -> dict[str, Any]:
        if self.gc_mode is None or not self.gc_log.exists():
            return {}
        events = []
        for line in self.gc_log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if t0 <= ev["t"] <= t1:
                    events.append(ev)
        full = [e for e in events if e["gen"] == 2]
        return {
            "gc_mode": self.gc_mode,
            "gen2_collections": len(full),
            "gen2_max_ms": max((e["ms"] for e in full), default=0.0),
            "gen2_ms": [e["ms"] for e in full],
            "gen2_tracked": [e["tracked"] for e in full],
            "gen2_collected": [e["collected"] for e in full],
            "slow_collections_ms_total": round(sum(e["ms"] for e in events), 1),
            "gc_share_of_wall": round(sum(e["ms"] for e in events) / 1000 / max(t1 - t0, 1e-6),
                                      3),
        }


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}{k}." if not isinstance(v, (int, float)) else
                            f"{prefix}{k}")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append((prefix.rstrip("."), float(obj)))
    return out


@dataclass
class ReferenceSystem(NoInsight):
    """A reference system the bench runs as one process (and its children) on a UDP
    port, toward the sipp UAS: no API, no counters. Subclasses say how to start, stop
    and read it."""

    workdir: Path
    name: str = ""
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    _vendor_port: int = 0
    host: str = SWITCH_IP  # where it listens

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def vendor_port(self) -> int:
        return self._vendor_port

    def _choose_ports(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self._vendor_port:
            self._vendor_port = free_port(VENDOR_IP, socket.SOCK_DGRAM)
        self.port = self.port or free_port(self.host, socket.SOCK_DGRAM)

    def _end(self, timeout: float) -> None:
        """SIGTERM to its process, SIGKILL after ``timeout`` seconds, by pid."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _wait_port_free(self) -> None:
        """It allows port reuse: make sure nothing is left on the port."""
        deadline = time.monotonic() + 5
        while wait_bound(self.host, self.port, timeout=0.05) and time.monotonic() < deadline:
            time.sleep(0.1)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        log(f"restarting {self.name}")
        self.stop()
        self.start()


@dataclass
class SippySystem(ReferenceSystem):
    """Sippy B2BUA 2.5.0, signalling only, static route, run as anchors.md says."""

    name: str = "Sippy B2BUA 2.5.0"

    def command(self) -> list[str]:
        d = self.workdir
        return [sys.executable, "-m", "sippy.b2bua", "-f", "-u", "-A", "0",
                "-l", SWITCH_IP, "-p", str(self.port),
                "-s", f"{VENDOR_IP}:{self.vendor_port}", "-a", CUSTOMER_IP,
                "-P", str(d / "b2bua.pid"), "-L", str(d / "b2bua.log"),
                "-c", str(d / "b2bua.sock")]

    def start(self) -> None:
        self._choose_ports()
        env = dict(os.environ, SIPLOG_BEND="none")
        cmd = self.command()
        (self.workdir / "cmd.txt").write_text(" ".join(cmd) + "\n")
        out = open(self.workdir / "stdout.txt", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT)
        if not wait_bound(SWITCH_IP, self.port, timeout=15):
            self.stop()
            raise RuntimeError("Sippy B2BUA did not bind its SIP port:\n"
                               + (self.workdir / "stdout.txt").read_text(errors="replace"))

    def stop(self) -> None:
        # It does not exit on SIGTERM while calls remain: TERM, then KILL, by pid.
        if self.proc is None:
            return
        self._end(5)
        self.proc = None
        self._wait_port_free()

    def settle(self) -> bool:
        time.sleep(2.0)  # no API: give late BYE/200 exchanges a moment
        return self.proc is not None and self.proc.poll() is None


KAMAILIO_CHILDREN = 2  # UDP receiver processes: one per core of a 2-core machine
KAMAILIO_SHM_MB = 256  # transactions linger 5 s (wait timer): room for ~50k of them
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
KAMAILIO_SOCKET_BUFFER = 4 << 20  # as the softswitch's SIP socket (SIP_SOCKET_BUFFER)
# Its memory manager for shared and private memory (-x, -X). Debian's build carries
# memory debugging (DBG_SR_MEMORY in ``kamailio -v``) and defaults to qm, which here
# costs about 3x the CPU per call of tlsf or fm (docs/performance.md): tlsf, as a
# production proxy would run, unless --kamailio-memory says otherwise.
KAMAILIO_MEMORY = ("tlsf", "fm", "qm")

# A minimal stateful proxy: the initial INVITE is record-routed and relayed to the
# vendor (the sipp UAS), in-dialog requests follow their Route (loose_route), every
# request is relayed by tm (t_relay). No database, no authentication, no logging per
# message. {{...}} are filled in by KamailioSystem.
KAMAILIO_CFG = """#!KAMAILIO
# Written by bench/cps.py: kamailio as a stateful record-routing proxy, the C
# reference for the CPU per call beside the softswitch (a B2BUA).
debug=2
log_stderror=yes
fork=yes
children={{CHILDREN}}
auto_aliases=no
disable_tcp=yes
disable_sctp=yes
dns=no
rev_dns=no
# The receive buffer as large as the softswitch's SIP socket's (4 MiB,
# b2bua/aio/transport.py); 5.6 has no setting for the send buffer.
maxbuffer={{BUFFER}}
listen=udp:{{LISTEN}}
alias={{LISTEN}}

mpath="{{MODULES}}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"

request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (has_totag()) {
        # In-dialog: ACK and BYE carry our Record-Route back as Route.
        if (loose_route()) {
            route(RELAY);
        }
        if (is_method("ACK")) {
            if (t_check_trans()) {
                t_relay();
            }
            exit;
        }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            route(RELAY);
        }
        exit;
    }
    t_check_trans();  # a retransmission of a request being relayed: absorbed by tm
    if (is_method("INVITE")) {
        record_route();
    }
    $du = "sip:{{NEXT_HOP}}";
    route(RELAY);
}

route[RELAY] {
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}
"""


def kamailio_version() -> str:
    """``kamailio -v``'s version ("5.6.3"), or "" when kamailio is not installed."""
    if shutil.which("kamailio") is None:
        return ""
    out = subprocess.run(["kamailio", "-v"], capture_output=True, text=True, timeout=10,
                         check=False).stdout.split()
    return out[2] if len(out) > 2 and out[0] == "version:" else "?"


@dataclass
class KamailioSystem(ReferenceSystem):
    """Debian's kamailio as a stateful record-routing proxy in front of the sipp UAS.

    It keeps the Call-ID and adds its Via and Record-Route: the calls use the proxy
    variants of the scenarios. Started with ``-DD`` (no daemon: its main process is the
    child started here, the UDP receivers and timers are its children); stopped by that
    pid with SIGTERM (the main process ends its children), and, should it linger, by
    SIGKILL to it and to each of the pids it had below it. Its CPU is summed over the
    main process and all its descendants (``tree_cpu_s``).
    """

    name: str = "kamailio (stateful proxy)"
    memory: str = KAMAILIO_MEMORY[0]  # its memory manager, -x and -X

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def config(self) -> str:
        text = KAMAILIO_CFG
        for key, value in {"CHILDREN": str(KAMAILIO_CHILDREN), "LISTEN": self.target,
                           "BUFFER": str(KAMAILIO_SOCKET_BUFFER),
                           "MODULES": KAMAILIO_MODULES,
                           "NEXT_HOP": f"{VENDOR_IP}:{self.vendor_port}"}.items():
            text = text.replace("{{" + key + "}}", value)
        return text

    def start(self) -> None:
        version = kamailio_version()
        self.name = f"kamailio {version or '?'} (stateful proxy, {self.memory})"
        self._choose_ports()
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(self.config())
        rundir = self.workdir / "run"
        rundir.mkdir(exist_ok=True)
        cmd = ["kamailio", "-f", str(cfg), "-DD", "-E", "-m", str(KAMAILIO_SHM_MB),
               "-M", "8", "-x", self.memory, "-X", self.memory,
               "-Y", str(rundir), "-P", str(rundir / "kamailio.pid")]
        (self.workdir / "cmd.txt").write_text(" ".join(cmd) + "\n")
        out = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        offset = self.log_size()
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        # Its socket is ready once it has sized its receive buffer; its receivers
        # take the socket just after.
        deadline = time.monotonic() + 15
        while not any("SO_RCVBUF is finally" in ln for ln in self.log_since(offset)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log_since(offset)[-30:])
                self.stop()
                raise RuntimeError(f"kamailio did not start:\n{tail}")
            time.sleep(0.1)
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise RuntimeError("kamailio exited at start:\n"
                               + "\n".join(self.log_since(offset)[-30:]))

    def stop(self) -> None:
        if self.proc is None:
            return
        below = descendants(self.proc.pid)
        self._end(10)
        # Its children end with it; any left (it was killed) are ended by their pids.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_is_kamailio(p) for p in below):
            time.sleep(0.1)
        for child in below:
            if _is_kamailio(child):
                log(f"kamailio child {child} outlived its main process: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
        self.proc = None
        self._wait_port_free()

    def settle(self) -> bool:
        time.sleep(1.0)  # no calls are kept: give late BYE/200 exchanges a moment
        return self.proc is not None and self.proc.poll() is None

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> list[str]:
        if not self.log_path.exists():
            return []
        with self.log_path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(4_000_000).decode(errors="replace").splitlines()

    @property
    def uac_scenario(self) -> Path | None:
        return UAC_PROXY_XML

    @property
    def uas_scenario(self) -> Path | None:
        return UAS_PROXY_XML


def _is_kamailio(pid: int) -> bool:
    """``pid`` is alive and is a kamailio process (not a reused pid); zombies do not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return "(kamailio)" in stat and stat[stat.rindex(")") + 2] != "Z"


# ---------------------------------------------------------------------------- cluster

CLUSTER_SIZES = (1, 2, 3)  # nodes behind the edge: one search each, in the same run
# Loopback addresses of their own: apart from the bench's 127.0.0.1-3 and from the
# cluster tests' 127.0.0.50 and 127.0.0.61-63 (tests/clusterlab.py).
CLUSTER_EDGE_IP = "127.0.0.150"
CLUSTER_NODE_IPS = ("127.0.0.151", "127.0.0.152", "127.0.0.153")
# Each node's slice of relay ports: first port of node 1, ports per node (a call holds
# an RTP/RTCP pair per leg: 5000 ports are 1250 calls up on one node, 1.1 s of calls
# at about 1100 calls/s with the 1 s hold).
CLUSTER_MEDIA_PORTS = (50000, 5000)
EDGE_CFG = REPO / "deploy" / "kamailio" / "edge.cfg"


@dataclass
class EdgeProxy(KamailioSystem):
    """The cluster's edge: ``deploy/kamailio/edge.cfg`` as shipped, filled in as
    ``tests/kamailio.py`` does, run like the ``kamailio`` system (``-DD``, the memory
    manager of ``--kamailio-memory``, ``KAMAILIO_SHM_MB`` of shared memory; its own
    ``children=4``); stopped by its pid."""

    name: str = "edge"
    nodes_list: Path | None = None  # the dispatcher list: one line per node

    def config(self) -> str:
        text = EDGE_CFG.read_text()
        for key, value in {"LISTEN": self.target, "NODES_LIST": str(self.nodes_list),
                           "RUNDIR": str(self.workdir / "run")}.items():
            text = text.replace("{{" + key + "}}", value)
        return text

    def start(self) -> None:
        super().start()
        self.name = f"kamailio {kamailio_version() or '?'} edge ({self.memory})"

    def rpc(self, *command: str) -> str:
        """A control command through its ``ctl`` socket (``kamcmd``), its output."""
        return subprocess.run(
            ["kamcmd", "-s", f"unix:{self.workdir / 'run'}/kamailio_ctl", *command],
            capture_output=True, text=True, timeout=10, check=True).stdout

    def dispatcher(self) -> dict[str, str]:
        """Each node's URI and its dispatcher flags (``AP``: active, probed)."""
        try:
            listing = self.rpc("dispatcher.list")
        except (OSError, subprocess.SubprocessError):
            return {}
        return dict(re.findall(r"URI:\s*(sip:\S+)\s+FLAGS:\s*(\w+)", listing))


@dataclass
class ClusterBackends:
    """The PostgreSQL 15 (``tests/pgserver.py``) and the Redis (``tests/redisserver.py``)
    the cluster systems of a run share: started once; each cluster system gets a new
    database and an emptied Redis."""

    workdir: Path
    pg: Any = None  # pgserver.PgServer
    redis: Any = None  # redisserver.RedisServer

    def start(self) -> None:
        import pgserver
        import redisserver

        self.pg = pgserver.PgServer().start()
        self.redis = redisserver.RedisServer(self.workdir / "redis").start()

    @property
    def redis_url(self) -> str:
        return str(self.redis.url)

    def new_database(self) -> str:
        import pgserver

        return str(pgserver.create_database(self.pg.admin_url))

    def flush_redis(self) -> None:
        with socket.create_connection((self.redis.host, self.redis.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            if not sock.recv(64).startswith(b"+OK"):
                raise RuntimeError("Redis did not flush")

    @property
    def pg_pid(self) -> int | None:
        return self.pg.proc.pid if self.pg is not None and self.pg.proc else None

    @property
    def redis_pid(self) -> int | None:
        return self.redis.proc.pid if self.redis is not None and self.redis.proc else None

    def stop(self) -> None:
        try:
            if self.redis is not None:
                self.redis.stop()
        finally:
            if self.pg is not None:
                self.pg.destroy()


@dataclass
class ClusterSystem(NoInsight):
    """``nodes`` softswitch nodes (``softswitch run --node nN --db postgresql://...
    --redis ...``, each on its own loopback address, API port and slice of relay ports,
    run from ``--code`` like the ``softswitch`` system) behind the kamailio edge
    (``EdgeProxy``), sharing ``backends``; the sipp UAC calls the edge, the nodes call
    the vendor through it (``SS_OUTBOUND_PROXY``).

    The customer trunk (by IP) and the vendor are set once, through node 1's API, with
    **no capacity**: the plain path, where Redis counts the calls but admits nothing
    (a capacity adds a round trip to Redis per call, docs/cluster.md). Its CPU is the
    sum of its parts (``cpu_parts``); the calls use the proxy variants of the scenarios
    (the edge record-routes)."""

    workdir: Path
    backends: ClusterBackends
    nodes: int = 1
    code_root: Path | None = None
    memory: str = KAMAILIO_MEMORY[0]  # the edge's memory manager
    log_level: str = "WARNING"
    name: str = ""
    members: list[SoftswitchSystem] = field(default_factory=list)
    edge: EdgeProxy | None = None
    db: str = ""
    _vendor_port: int = 0
    _log_offsets: dict[Path, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= len(CLUSTER_NODE_IPS):
            raise ValueError(f"a cluster of 1 to {len(CLUSTER_NODE_IPS)} nodes")
        self.name = self.name or f"cluster-{self.nodes}"

    @property
    def target(self) -> str:
        assert self.edge is not None
        return self.edge.target

    @property
    def pid(self) -> int | None:
        return self.edge.pid if self.edge else None

    @property
    def vendor_port(self) -> int:
        return self._vendor_port

    @property
    def uac_scenario(self) -> Path | None:
        return UAC_PROXY_XML

    @property
    def uas_scenario(self) -> Path | None:
        return UAS_PROXY_XML

    @property
    def params(self) -> dict[str, str]:
        assert self.edge is not None
        return {"SS_EDGE_ADDRESSES": CLUSTER_EDGE_IP, "SS_OUTBOUND_PROXY": self.edge.target,
                "SS_REPLY_UNAUTHORIZED": "Off"}

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._vendor_port = free_port(VENDOR_IP, socket.SOCK_DGRAM)
        self.edge = EdgeProxy(self.workdir / "edge", host=CLUSTER_EDGE_IP,
                              memory=self.memory, nodes_list=self.workdir / "nodes.list")
        self.edge.port = free_port(CLUSTER_EDGE_IP, socket.SOCK_DGRAM)
        self.db = self.backends.new_database()
        self.backends.flush_redis()
        first, size = CLUSTER_MEDIA_PORTS
        self.members = [
            SoftswitchSystem(
                self.workdir / f"n{i + 1}", log_level=self.log_level, name=f"n{i + 1}",
                code_root=self.code_root, sip_host=CLUSTER_NODE_IPS[i], configure=False,
                params=dict(self.params),
                extra_args=["--node", f"n{i + 1}", "--db", self.db,
                            "--redis", self.backends.redis_url,
                            "--media-ports", f"{first + i * size}-{first + (i + 1) * size - 1}"])
            for i in range(self.nodes)]
        try:
            for member in self.members:
                member.start()
            self.edge.nodes_list = self.workdir / "nodes.list"
            self.edge.nodes_list.write_text("".join(f"1 sip:{m.target} 0 0\n"
                                                    for m in self.members))
            self.edge.start()
            api = self._switch(self.members[0]).api
            api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
            api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                                  "port": self.vendor_port,
                                                  "transport": "udp"})
            for name, value in self.params.items():
                api.put(f"/api/v1/parameters/{name}", {"value": value})
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log(f"{self.name}: {self.edge.name} on {self.target}, nodes "
            + ", ".join(f"{m.name} {m.target}" for m in self.members)
            + f", PostgreSQL {self.db.rsplit('/', 1)[1]}, Redis {self.backends.redis_url}")

    @staticmethod
    def _switch(member: SoftswitchSystem) -> Softswitch:
        assert member.switch is not None
        return member.switch

    def _wait_ready(self) -> None:
        """Every node has the gateways and parameters from the shared database, and the
        edge's dispatcher has every node active."""
        for member in self.members:
            member._wait_gateways()
        assert self.edge is not None
        edge = self.edge
        if not wait_until(lambda: self._all_active(edge), timeout=15, interval=0.2):
            raise RuntimeError(f"{self.name}: the edge does not have every node active: "
                               f"{edge.dispatcher()}")

    def _all_active(self, edge: EdgeProxy) -> bool:
        flags = edge.dispatcher()
        return len(flags) == len(self.members) and set(flags.values()) == {"AP"}

    def _stop_nodes(self) -> None:
        """SIGTERM to every node at once, then each waited for (killed after 20 s), so
        that no node outlives another by the 3 s after which a peer takes it over."""
        for member in self.members:
            proc = member.switch.proc if member.switch else None
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for member in self.members:
            member.stop()

    def stop(self) -> None:
        try:
            if self.edge is not None:
                self.edge.stop()
        finally:
            self._stop_nodes()

    def restart(self) -> None:
        """The edge and the nodes (the configuration stays in the database); PostgreSQL
        and Redis go on."""
        log(f"restarting {self.name}: the edge and the nodes")
        assert self.edge is not None
        self.edge.stop()
        self._stop_nodes()
        for member in self.members:
            switch = self._switch(member)
            switch.proc = None
            with member._launcher():
                switch.start()
        self.edge.start()
        self._wait_ready()

    def settle(self) -> bool:
        """No call up on any node, and every node active at the edge."""
        if self.edge is None or self.edge.proc is None or self.edge.proc.poll() is not None:
            return False
        edge = self.edge

        def idle() -> bool:
            return all(self._switch(m).api.get("/api/v1/calls?scope=node")["items"] == []
                       for m in self.members)

        try:
            return bool(wait_until(idle, timeout=30, interval=0.5)
                        and wait_until(lambda: self._all_active(edge), timeout=10,
                                       interval=0.2))
        except (OSError, AssertionError, KeyError):
            return False

    def cpu_parts(self) -> dict[str, float]:
        """CPU seconds so far of each part: ``edge`` (kamailio, all its processes), each
        node's engine (``n1``...: its process, as ``engine_cpu_s`` counts it), ``relays``
        (every node's relay worker processes), ``postgresql`` (the postmaster and every
        process below it: backends, writer, checkpointer...), ``redis``. The nodes' API
        processes, idle while a step runs, are left out."""
        parts: dict[str, float | None] = {
            "edge": tree_cpu_s(self.edge.pid if self.edge else None)}
        relays = 0.0
        for member in self.members:
            parts[member.name] = engine_cpu_s(member.pid)
            if member.pid is not None:
                relays += sum(proc_cpu_s(child) or 0.0
                              for child in children_running(member.pid, b"b2bua.media.worker"))
        parts["relays"] = relays
        parts["postgresql"] = tree_cpu_s(self.backends.pg_pid)
        parts["redis"] = proc_cpu_s(self.backends.redis_pid)
        return {k: v for k, v in parts.items() if v is not None}

    def sockets(self) -> dict[str, int]:
        """The nodes' SIP ports, whose kernel drop counters a step watches."""
        return {m.name: self._switch(m).sip_port for m in self.members if m.switch}

    def counters(self) -> dict[str, float]:
        """Each node's own counters (``?scope=node``), under its name: ``n2.attempts``."""
        out: dict[str, float] = {}
        for member in self.members:
            try:
                stats = self._switch(member).api.get("/api/v1/stats?scope=node")
            except (OSError, AssertionError):
                continue
            out.update({f"{member.name}.{k}": v for k, v in _flatten(stats)
                        if not k.startswith(("active", "legs", "nodes"))
                        and not k.endswith("edge_probes")})
        return out

    def _logs(self) -> list[Path]:
        paths = [self.edge.log_path] if self.edge else []
        return paths + [m.switch.log_path for m in self.members
                        if m.switch and m.switch.log_path]

    def log_size(self) -> int:
        """Notes where every part's log ends now (the edge's, each node's) for
        ``log_since``, which reads them all from there."""
        self._log_offsets = {p: p.stat().st_size if p.exists() else 0 for p in self._logs()}
        return sum(self._log_offsets.values())

    def log_since(self, offset: int) -> list[str]:
        lines: list[str] = []
        for path in self._logs():
            if path.exists():
                with path.open("rb") as fh:
                    fh.seek(self._log_offsets.get(path, 0))
                    lines += fh.read(2_000_000).decode(errors="replace").splitlines()
        return lines


def cpu_parts(system: System) -> dict[str, float]:
    """A cluster's CPU seconds so far by part; nothing for the other systems."""
    return system.cpu_parts() if isinstance(system, ClusterSystem) else {}


def system_sockets(system: System) -> dict[str, int]:
    """Sockets of the system, besides its target's, whose drop counters a step watches."""
    return system.sockets() if isinstance(system, ClusterSystem) else {}


def api_cpu_s(system: System) -> float | None:
    """The softswitch's API (the gunicorn master and its workers, children of the
    engine's process): where the console's requests are served; None for other systems."""
    if not isinstance(system, SoftswitchSystem) or system.pid is None:
        return None
    masters = children_running(system.pid, b"gunicorn")
    if not masters:
        return None
    return sum(tree_cpu_s(pid) or 0.0 for pid in masters)


def console_of(system: System) -> Any:
    """The system's console browsers when they are up (a ConsoleLoad), else None."""
    if isinstance(system, SoftswitchSystem) and system.console_load is not None \
            and system.console_load.browsers:
        return system.console_load
    return None


def system_cpu_s(system: System) -> float | None:
    """The CPU charged to a system: kamailio's whole process tree, the softswitch's
    engine (and its signalling workers), a cluster's parts together (``cpu_parts``)."""
    if isinstance(system, ClusterSystem):
        parts = system.cpu_parts()
        return sum(parts.values()) if parts else None
    if isinstance(system, KamailioSystem):
        return tree_cpu_s(system.pid)
    return engine_cpu_s(system.pid)


# ---------------------------------------------------------------------------- steps


@dataclass
class Step:
    system: str
    rate: int
    calls: int
    clean: bool
    reasons: list[str]
    uac: SideStats
    uas: SideStats
    wall_s: float
    system_cpu_s: float | None
    cpu_ms_per_call: float | None
    system_cpu_share: float | None  # of one core over the UAC's run
    sipp_cpu_share: float | None  # both sipps together, of one core
    counters: dict[str, float] = field(default_factory=dict)
    log_lines: int = 0
    log_sample: list[str] = field(default_factory=list)
    profile: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    udp_drops: dict[str, int] = field(default_factory=dict)  # receive-buffer overflows
    run_dir: str = ""
    cpu_parts_s: dict[str, float] = field(default_factory=dict)  # a cluster's, by part
    # The softswitch's API processes (gunicorn, all of them) over the same window.
    api_cpu_s: float | None = None
    api_cpu_ms_per_call: float | None = None
    # With console browsers: the API requests each page made during the step (from its
    # resource timings), the browsers' CPU (of one core) and how many of their threads
    # were found out of SCHED_IDLE at the step's end (console_load.py).
    console_requests: dict[str, int] = field(default_factory=dict)
    browser_cpu_share: float | None = None
    browser_threads_not_idle: int | None = None


@dataclass
class Bench:
    root: Path
    step_s: int
    hold_ms: int
    profile_s: int = 10
    steps: list[Step] = field(default_factory=list)
    step_no: int = 0

    def run_step(self, system: System, rate: int, *, profile: bool = False,
                 uac_xml: Path | None = None, uas_xml: Path | None = None,
                 calls: int | None = None, seconds: int | None = None) -> Step:
        self.step_no += 1
        calls = calls or max(int(rate * (seconds or self.step_s)), 1)
        run_dir = self.root / f"{self.step_no:03d}-{system.name.split()[0].lower()}-{rate}"
        timeout_s = int(calls / max(rate, 1)) + self.hold_ms // 1000 + RECV_TIMEOUT_MS // 1000 + 15
        before = system.counters()
        log_off = system.log_size()
        parts0 = cpu_parts(system)
        console = console_of(system)
        req0: dict[str, int] = {}
        req1: dict[str, int] = {}
        browser0 = browser1 = 0.0
        not_idle: int | None = None
        if console is not None:
            console.not_idle()
            req0, browser0 = console.requests(), console.cpu_s()
        api0 = api_cpu_s(system)
        cpu0, kids0 = system_cpu_s(system), children_cpu_s()
        t0, t0_epoch = time.monotonic(), time.time()
        uas = start_sipp("uas", run_dir / "uas", uas_xml or system.uas_scenario or UAS_XML,
                         VENDOR_IP, system.vendor_port, calls, rate, self.hold_ms,
                         timeout_s + 5,
                         # the callee waits out the hold for its BYE
                         recv_timeout_ms=max(RECV_TIMEOUT_MS, self.hold_ms + 2000))
        if not wait_bound(VENDOR_IP, system.vendor_port):
            log("warning: UAS did not bind in 3 s")
        uac_port = free_port(CUSTOMER_IP, socket.SOCK_DGRAM)
        uac = start_sipp("uac", run_dir / "uac", uac_xml or system.uac_scenario or UAC_XML,
                         CUSTOMER_IP, uac_port, calls, rate, self.hold_ms, timeout_s,
                         remote=system.target, extra=system.uac_args)
        spy: subprocess.Popen[bytes] | None = None
        profile_path = run_dir / "py-spy.txt"
        if profile and system.pid and shutil.which("py-spy", path=_venv_bin()):
            time.sleep(min(3.0, self.step_s / 4))
            spy = subprocess.Popen(
                [shutil.which("py-spy", path=_venv_bin()) or "py-spy", "record",
                 "-p", str(system.pid), "-d", str(self.profile_s), "-r", "200",
                 "--nonblocking", "--threads", "--full-filenames", "-f", "raw",
                 "-o", str(profile_path)],
                stdout=open(run_dir / "py-spy.out", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        # Sample the kernel's per-socket UDP drop counters while the load runs: a full
        # receive buffer (the reader stalled) shows here before anything else.
        ports = {"system": _port(system.target), "uas": system.vendor_port,
                 "uac": uac_port, **system_sockets(system)}
        drops0 = udp_drops(ports)
        drops_max = dict(drops0)
        limit = time.monotonic() + timeout_s + 10
        while uac.proc.poll() is None and time.monotonic() < limit:
            for k, v in udp_drops(ports).items():
                drops_max[k] = max(drops_max.get(k, 0), v)
            time.sleep(0.5)
        uac_code = uac.wait(0.1)
        if uac_code is None:
            log("UAC overran its bound; stopping it")
            uac_code = uac.stop()
        t_uac = time.monotonic()
        uas_code = uas.wait(self.hold_ms / 1000 + 6)
        if uas_code is None:
            uas_code = uas.stop()
            uas_note = "UAS still waiting for calls after the UAC finished; stopped"
        else:
            uas_note = ""
        # Before reaping py-spy, so RUSAGE_CHILDREN counts only the two sipps.
        parts1 = cpu_parts(system)
        cpu1, kids1 = system_cpu_s(system), children_cpu_s()
        api1 = api_cpu_s(system)
        t1_epoch = time.time()
        if console is not None:
            req1, browser1 = console.requests(), console.cpu_s()
            not_idle = console.not_idle()
        if spy is not None:
            try:
                spy.wait(self.profile_s + 15)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        wall = t_uac - t0
        uac_stats = parse_stats(run_dir / "uac" / "stats.csv", "uac", uac_code, calls)
        uas_stats = parse_stats(run_dir / "uas" / "stats.csv", "uas", uas_code, calls)
        if uas_note:
            uas_stats.note = (uas_stats.note + "; " if uas_stats.note else "") + uas_note
        reasons = judge(uac_stats, uas_stats, calls, rate, check_rate=calls >= 3 * rate)
        sys_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        step = Step(
            system=system.name, rate=rate, calls=calls, clean=not reasons, reasons=reasons,
            uac=uac_stats, uas=uas_stats, wall_s=round(wall, 2),
            system_cpu_s=None if sys_cpu is None else round(sys_cpu, 2),
            cpu_ms_per_call=None if sys_cpu is None else round(1000 * sys_cpu / calls, 3),
            system_cpu_share=None if sys_cpu is None else round(sys_cpu / wall, 3),
            sipp_cpu_share=round((kids1 - kids0) / wall, 3),
            run_dir=str(run_dir),
            cpu_parts_s={k: round(parts1[k] - parts0[k], 3) for k in parts0 if k in parts1},
        )
        if api0 is not None and api1 is not None:
            step.api_cpu_s = round(api1 - api0, 3)
            step.api_cpu_ms_per_call = round(1000 * (api1 - api0) / calls, 4)
        if console is not None:
            step.console_requests = {page: req1[page] - req0.get(page, 0) for page in req1
                                     if req1[page] >= 0 and req0.get(page, -1) >= 0}
            step.browser_cpu_share = round((browser1 - browser0) / wall, 3)
            step.browser_threads_not_idle = not_idle
        lines = system.log_since(log_off)
        step.log_lines = len(lines)
        step.log_sample = _summarise_log(lines)
        after = system.counters()
        step.counters = {k: after[k] - before.get(k, 0) for k in after
                         if after[k] - before.get(k, 0) and not k.startswith(("active", "legs"))}
        for k, v in udp_drops(ports).items():
            drops_max[k] = max(drops_max.get(k, 0), v)
        # The system's sockets live across steps: count only this step's drops.
        step.udp_drops = {k: drops_max.get(k, 0) - (drops0.get(k, 0)
                                                    if k not in ("uac", "uas") else 0)
                          for k in ports}
        step.udp_drops = {k: v for k, v in step.udp_drops.items() if v}
        step.diagnostics = system.diagnostics(t0_epoch, t1_epoch)
        if spy is not None and profile_path.exists():
            step.profile = str(profile_path)
        self.steps.append(step)
        log(describe(step))
        return step


def _venv_bin() -> str:
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _summarise_log(lines: list[str]) -> list[str]:
    """The most frequent log messages of a step, numbers masked."""
    counts: Counter[str] = Counter()
    for line in lines:
        masked = "".join("#" if ch.isdigit() else ch for ch in line)
        parts = masked.split(" ", 3)
        counts[(parts[3] if len(parts) > 3 else masked)[:160]] += 1
    return [f"{n} x {msg}" for msg, n in counts.most_common(4)]


def judge(uac: SideStats, uas: SideStats, calls: int, rate: int, check_rate: bool = True
          ) -> list[str]:
    reasons: list[str] = []
    for side in (uac, uas):
        tag = side.role.upper()
        if side.exit_code != 0:
            reasons.append(f"{tag} exit {side.exit_code}")
        if side.failed:
            detail = ", ".join(f"{k}={v}" for k, v in side.problems.items())
            reasons.append(f"{tag} failed {side.failed} ({detail})")
        if side.successful < calls:
            reasons.append(f"{tag} successful {side.successful}/{calls}")
        if side.note:
            reasons.append(f"{tag}: {side.note}")
    if check_rate and (uac.achieved_rate is None
                       or uac.achieved_rate < CLEAN_RATE_SHARE * rate):
        reasons.append(f"achieved {uac.achieved_rate} < {CLEAN_RATE_SHARE:.0%} of {rate}")
    return reasons


def describe(step: Step) -> str:
    drops = (" UDP drops " + ", ".join(f"{k} {v}" for k, v in step.udp_drops.items())
             if step.udp_drops else "")
    cpu = "" if step.cpu_ms_per_call is None else (
        f" cpu {step.cpu_ms_per_call:.2f} ms/call ({step.system_cpu_share:.0%} of a core)")
    head = (f"{step.system:<22} {step.rate:>5} cps x {step.calls:<6} "
            f"{'CLEAN' if step.clean else 'FAIL '} achieved {step.uac.achieved_rate} "
            f"retrans uac/uas {step.uac.retransmissions}/{step.uas.retransmissions}{cpu}"
            f" sipp {step.sipp_cpu_share:.0%}{drops}")
    if step.api_cpu_ms_per_call is not None:
        head += f" api {step.api_cpu_ms_per_call:.3f} ms/call"
    if step.reasons:
        head += "\n    " + "; ".join(step.reasons)
    if step.console_requests or step.browser_cpu_share is not None:
        share = "-" if step.browser_cpu_share is None else f"{step.browser_cpu_share:.0%}"
        head += ("\n    console: API requests " + ", ".join(
            f"{page} {n}" for page, n in step.console_requests.items())
                 + f"; browsers {share} of a core, threads not SCHED_IDLE "
                   f"{step.browser_threads_not_idle}")
    datagrams = step.counters.get("dispatcher.received")
    if datagrams:
        head += (f"\n    dispatcher: {datagrams:g} datagrams, "
                 f"{1e6 * step.counters.get('dispatcher.cpu_s', 0) / datagrams:.1f} us of CPU "
                 f"each (its thread)")
    routine = ("attempts", "answered", "requests", "responses", "received", "sent", "cpu_s")
    odd = {k: v for k, v in step.counters.items() if not k.endswith(routine)}
    if odd:
        head += "\n    system counters: " + ", ".join(f"{k}={v:g}" for k, v in odd.items())
    for line in step.log_sample:
        head += "\n    log: " + line
    d = step.diagnostics
    if d.get("gc_mode") == "log":
        head += (f"\n    gc: {d['gen2_collections']} full collections, max "
                 f"{d['gen2_max_ms']:.0f} ms, slow collections {d['gc_share_of_wall']:.0%} of "
                 f"wall; tracked objects at each: {d['gen2_tracked']}")
    return head


# ---------------------------------------------------------------------------- search


@dataclass
class Ceiling:
    system: str
    clean: int  # highest clean rate found (0: none)
    failed: int | None  # lowest failing rate found (None: never failed)
    confirmed: bool | None = None
    steps: list[Step] = field(default_factory=list)


def find_ceiling(bench: Bench, system: System, ladder: list[int], max_bisect: int,
                 deadline: float, confirm: bool, fresh_each_step: bool = False) -> Ceiling:
    result = Ceiling(system.name, 0, None)

    def step(rate: int) -> bool:
        if fresh_each_step or not system.settle():
            system.restart()
        s = bench.run_step(system, rate)
        result.steps.append(s)
        if not s.clean and not fresh_each_step:
            # A failed step can leave a backlog: start the next one from a fresh process.
            system.restart()
        return s.clean

    for rate in ladder:
        if time.monotonic() > deadline:
            log(f"{system.name}: time budget spent during the ramp")
            break
        if step(rate):
            result.clean = rate
        else:
            result.failed = rate
            break
    if result.failed is not None:
        for _ in range(max_bisect):
            lo, hi = result.clean, result.failed
            gap = max(10, int(0.05 * lo))
            if hi - lo <= gap or time.monotonic() > deadline:
                break
            mid = (lo + hi) // 2
            mid = max(lo + 5, min(hi - 5, round(mid / 10) * 10 if mid >= 100 else mid))
            if step(mid):
                result.clean = mid
            else:
                result.failed = mid
    if confirm and result.clean and time.monotonic() < deadline:
        log(f"{system.name}: confirming {result.clean} cps")
        result.confirmed = step(result.clean)
    return result


def self_check(bench: Bench, root: Path) -> bool:
    """uac_txn.xml must absorb a 1xx that arrives after the 200 (anchors.md)."""
    rig = Rig(root / "selfcheck")
    rig.start()
    s = bench.run_step(rig, 10, uas_xml=UAS_LATE_XML, calls=5)
    bench.steps.remove(s)
    return s.clean


# ---------------------------------------------------------------------------- profile


def summarise_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive time per function from ``py-spy record -f raw`` output."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        frames = stack.split(";")
        thread = "main"
        if frames and frames[0].startswith(("thread ", "process ")):
            while frames and frames[0].startswith(("thread ", "process ")):
                head = frames.pop(0)
                if head.startswith("thread "):
                    thread = head
        if not frames:
            continue
        names = [_func(f) for f in frames]
        total += n
        threads[thread] += n
        self_t[names[-1]] += n
        for name in set(names):
            incl[name] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    # Inclusive time only for the project's own functions below the event loop's entry.
    own = Counter({k: v for k, v in incl.items()
                   if "(b2bua/" in k and "(b2bua/cli.py)" not in k
                   and "(b2bua/runner.py)" not in k and "(b2bua/engine.py)" not in k})
    by_file: Counter[str] = Counter()
    for k, v in self_t.items():
        by_file[k.rpartition(" (")[2].rstrip(")") or k] += v
    return {"samples": total, "self": pct(self_t), "inclusive": pct(own),
            "self_by_file": pct(by_file), "threads": pct(threads)}


def _func(frame: str) -> str:
    """``name (path/file.py:123)`` -> ``name (file.py)``, paths shortened to the repo/venv."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/b2bua/", "/api/", "/lib/python3.11/", "/lib/python3"):
        if marker in path:
            head = marker.strip("/") + "/" if marker in ("/b2bua/", "/api/") else ""
            path = head + path.rsplit(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


# ---------------------------------------------------------------------------- main


def sippy_available() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import sippy.b2bua"],
                           capture_output=True, check=False)
    return probe.returncode == 0


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    sipp_v = subprocess.run(["sipp", "-v"], capture_output=True, text=True, check=False)
    version = next((ln.strip() for ln in sipp_v.stdout.splitlines() if "SIPp" in ln), "sipp ?")
    return (f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {version}")


def _at_ceiling(c: Ceiling) -> Step | None:
    """The clean step at the ceiling's rate (the last one, e.g. its confirmation)."""
    return next((s for s in reversed(c.steps) if s.clean and s.rate == c.clean), None)


def profile_only(bench: Bench, root: Path, code_root: Path | None, wanted: set[str],
                 rate: int, profile_s: int) -> int:
    """One profiled step per softswitch system at the same rate: where the time goes."""
    profiles: list[Profile] = []
    for name, mode in (("softswitch", "ip"), ("softswitch-password", "password"),
                       ("softswitch-pg", "ip")):
        if name not in wanted:
            continue
        with contextlib.ExitStack() as cleanup:
            extra: list[str] = []
            if name == "softswitch-pg":
                import pgserver

                server = pgserver.PgServer().start()
                cleanup.callback(server.destroy)
                extra = ["--db", pgserver.create_database(server.admin_url)]
            system = SoftswitchSystem(root / f"profile-{name}", code_root=code_root,
                                      auth_mode=mode, name=name, extra_args=extra)
            system.start()
            cleanup.callback(system.stop)
            prof = profile_step(bench, system, rate, name)
            if prof:
                profiles.append(prof)
    for p in profiles:
        st = p.step
        share = "-" if st.system_cpu_share is None else f"{st.system_cpu_share:.0%}"
        print(f"\n{p.label} at {p.rate} cps: step {'clean' if st.clean else 'FAILED'}, "
              f"CPU {st.cpu_ms_per_call} ms/call ({share} of a core)")
        print_profile(p, 200, profile_s)
    (root / "profiles.json").write_text(json.dumps(
        [{"label": p.label, "rate": p.rate, "summary": p.summary, "step": asdict(p.step)}
         for p in profiles], indent=1, default=str))
    print(f"\nprofiles and raw py-spy output: {root}")
    return 0


def count_work(bench: Bench, root: Path, code_root: Path, base: str | None,
               rate: int, controls: bool = False) -> int:
    """One step per revision with the event loop's thread under cProfile, bracketed by
    SIGUSR1 and SIGUSR2 (``bench/gc_probe.py``): the work per SIP call, compared."""
    import callwork

    runs = [("softswitch", code_root)]
    if base:
        log(f"base: {export_rev(base, root / 'code-base')}")
        runs.append((f"softswitch at {base}", root / "code-base"))
    works: list[callwork.Work] = []
    for label, code in runs:
        system = SoftswitchSystem(root / f"work-{len(works)}", code_root=code, name=label,
                                  controls=controls and code is code_root)
        out = system.workdir / "work.prof"
        os.environ["BENCH_CALL_PROFILE"] = str(out)
        try:
            system.start()
            assert system.pid is not None
            os.kill(system.pid, signal.SIGUSR1)
            step = bench.run_step(system, rate)
            # The calls' BYE transactions are answered by now; their timers (32 s) are
            # the same work in every revision and left out.
            os.kill(system.pid, signal.SIGUSR2)
            if not wait_until(out.exists, timeout=30):
                log(f"{label}: no profile written")
                return 1
            time.sleep(1.0)  # dump_stats writes in one go; let it finish
        finally:
            system.stop()
            os.environ.pop("BENCH_CALL_PROFILE", None)
        log(f"{label}: step {'clean' if step.clean else 'FAILED ' + '; '.join(step.reasons)}")
        works.append(callwork.load(str(out), step.calls))
    if len(works) == 1:
        print(f"Python function calls per SIP call: {works[0].per_call:.1f}")
    else:
        print(callwork.compare(works[0], works[1], "softswitch", f"at {base}"))
    return 0


def search_postgres(bench: Bench, root: Path, code_root: Path | None,
                    search: Any, sqlite: Ceiling | None) -> tuple[Ceiling | None, str]:
    """The softswitch on a PostgreSQL 15 started for the run (tests/pgserver.py): its
    ceiling, then whether its CDR writer keeps up at the SQLite ceiling (the queue left
    after a step at that rate, and how long it takes to drain)."""
    import pgserver

    server = pgserver.PgServer().start()
    try:
        url = pgserver.create_database(server.admin_url)
        system = SoftswitchSystem(root / "softswitch-pg", code_root=code_root,
                                  name="softswitch-pg", extra_args=["--db", url])
        ceiling = search(system, "softswitch")
        if sqlite is None or not sqlite.clean or system.switch is None:
            return ceiling, ""
        system.restart()  # the gateways are in the database already
        try:
            step = bench.run_step(system, sqlite.clean)
            assert system.switch is not None
            api = system.switch.api

            def pending() -> int:
                return int(api.get("/api/v1/engine")["db_writer"]["pending"])

            left, t0 = pending(), time.monotonic()
            drained = wait_until(lambda: pending() == 0, timeout=60, interval=0.2)
            took = time.monotonic() - t0
        finally:
            system.stop()
        verdict = "clean" if step.clean else "FAILED: " + "; ".join(step.reasons)
        return ceiling, (
            f"at the SQLite ceiling ({sqlite.clean} cps) the step was {verdict}; the CDR "
            f"writer had {left} writes queued at its end, "
            + (f"drained in {took:.1f} s" if drained else "NOT drained within 60 s"))
    finally:
        server.destroy()


@dataclass
class ClusterResult:
    """One cluster size's search: its ceiling, and its parts' CPU at rest."""

    nodes: int
    ceiling: Ceiling | None
    idle_cpu_share: dict[str, float] = field(default_factory=dict)  # of one core, by part
    note: str = ""


CLUSTER_IDLE_S = 5.0  # how long a cluster's parts are watched at rest before its search


def search_cluster(root: Path, code_root: Path | None, memory: str, deadline: float,
                   climb: Callable[[System], Ceiling]) -> list[ClusterResult]:
    """``cluster-1``, ``cluster-2`` and ``cluster-3`` one after the other on one PostgreSQL
    and one Redis started for the run, each with a new database and an emptied Redis:
    each one's CPU at rest, then its ceiling (``climb``)."""
    backends = ClusterBackends(root / "cluster")
    results: list[ClusterResult] = []
    try:
        backends.start()
        for nodes in CLUSTER_SIZES:
            if time.monotonic() > deadline:
                results.append(ClusterResult(nodes, None, note="skipped: time budget spent"))
                continue
            system = ClusterSystem(root / f"cluster-{nodes}", backends, nodes=nodes,
                                   code_root=code_root, memory=memory)
            try:
                system.start()
                try:
                    idle = idle_cpu_share(system, CLUSTER_IDLE_S)
                    log(f"{system.name} at rest: " + ", ".join(
                        f"{k} {v:.1%}" for k, v in idle.items()) + " of a core")
                    results.append(ClusterResult(nodes, climb(system), idle))
                finally:
                    system.stop()
            except (RuntimeError, OSError, AssertionError, subprocess.SubprocessError) as exc:
                log(f"{system.name} FAILED: {exc!r}")
                results.append(ClusterResult(nodes, None, note=f"failed: {exc!r}"[:300]))
    finally:
        backends.stop()
    return results


def idle_cpu_share(system: ClusterSystem, seconds: float) -> dict[str, float]:
    """Each part's CPU with no call, as a share of one core (probes, sweeps, watchers)."""
    before = system.cpu_parts()
    time.sleep(seconds)
    after = system.cpu_parts()
    return {k: round((after[k] - before[k]) / seconds, 4) for k in before if k in after}


def cluster_report(results: list[ClusterResult]) -> str:
    """The cluster's ceilings side by side, the ratios, and the CPU per call by part."""
    cores = os.cpu_count() or 1
    one = next((r.ceiling for r in results if r.nodes == 1 and r.ceiling and r.ceiling.clean),
               None)
    sizes = ", ".join(str(n) for n in CLUSTER_SIZES)
    out = [f"Cluster: calls/s through the kamailio edge with {sizes} nodes (PostgreSQL, "
           "Redis; no capacity on the trunk)", "",
           f"On this {cores}-core machine every node, the edge, PostgreSQL, Redis and both "
           "sipps share the same cores, so adding nodes cannot add capacity here: the "
           "figures show that the mechanism works (the edge spreads the calls over the "
           "nodes, every call clean) and what each part costs per call, not how the "
           "cluster scales on separate machines.", "",
           "| nodes | highest clean calls/s | lowest failing | confirmed | vs 1 node | "
           "calls each node took at the ceiling |", "|---|---|---|---|---|---|"]
    for r in results:
        c = r.ceiling
        if c is None:
            out.append(f"| {r.nodes} | - | - | - | - | {r.note} |")
            continue
        at = _at_ceiling(c)
        ratio = f"{c.clean / one.clean:.2f}" if one and c.clean else "-"
        failed = "none up to the top of the ladder" if c.failed is None else str(c.failed)
        conf = {None: "-", True: "yes", False: "NO"}[c.confirmed]
        out.append(f"| {r.nodes} | {c.clean} | {failed} | {conf} | {ratio} | "
                   f"{_spread(at, r.nodes) if at else '-'} |")
    ceiling_steps = [(r.nodes, _at_ceiling(r.ceiling) if r.ceiling else None)
                     for r in results]
    out += ["", "CPU ms per call by part at each one's ceiling (each node's over the calls it"
            " took; the engines', relays' and total over all calls); the CPU of the parts and"
            " of both sipps as a share of one core:", "", *_cpu_table(ceiling_steps)]
    # The CPU per call falls as the rate rises: compared at one rate as well, the highest
    # every size passed clean.
    clean_rates = [{s.rate for s in r.ceiling.steps if s.clean} for r in results
                   if r.ceiling]
    common = max(set.intersection(*clean_rates), default=0) if clean_rates else 0
    if common and len(clean_rates) == len(results):
        same = [(r.nodes, next((s for s in reversed(r.ceiling.steps)
                                if s.clean and s.rate == common), None) if r.ceiling else None)
                for r in results]
        out += ["", f"The same at {common} calls/s, the highest rate every size passed "
                "clean:", "", *_cpu_table(same)]
    idle = [r for r in results if r.idle_cpu_share]
    if idle:
        out += ["", "At rest (no call, before each search), CPU as a share of one core:", ""]
        for r in idle:
            out.append(f"- {r.nodes} node{'s' if r.nodes > 1 else ''}: " + ", ".join(
                f"{k} {v:.1%}" for k, v in r.idle_cpu_share.items()))
    if one:
        out.append("")
        for r in results:
            if r.nodes > 1 and r.ceiling and r.ceiling.clean:
                out.append(f"{r.nodes} nodes / 1 node = {r.ceiling.clean} / {one.clean} = "
                           f"{r.ceiling.clean / one.clean:.2f}")
    return "\n".join(out)


def _cpu_table(steps: list[tuple[int, Step | None]]) -> list[str]:
    """CPU ms per call by part of a cluster's steps, one row per (node count, step)."""
    rows = ["| nodes | calls/s | edge | each node's engine | engines | relay workers | "
            "PostgreSQL | Redis | total | parts / sipps, of one core |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for nodes, step in steps:
        if step is None or not step.cpu_parts_s:
            continue
        parts, calls = step.cpu_parts_s, max(step.calls, 1)
        names = [f"n{i + 1}" for i in range(nodes)]

        def ms(seconds: float, n: int = calls) -> str:
            return f"{1000 * seconds / max(n, 1):.2f}"

        each = ", ".join(
            f"{name} {ms(parts.get(name, 0.0), int(step.counters.get(f'{name}.attempts', 0)))}"
            for name in names)
        engines = sum(parts.get(name, 0.0) for name in names)
        total = sum(parts.values())
        rows.append(f"| {nodes} | {step.rate} | {ms(parts.get('edge', 0.0))} | {each} | "
                    f"{ms(engines)} | {ms(parts.get('relays', 0.0))} | "
                    f"{ms(parts.get('postgresql', 0.0))} | {ms(parts.get('redis', 0.0))} | "
                    f"{ms(total)} | {total / max(step.wall_s, 1e-6):.0%} / "
                    f"{step.sipp_cpu_share:.0%} |")
    return rows


def _spread(step: Step, nodes: int) -> str:
    """How many of the step's calls each node took (its INVITE attempts), and the share."""
    counts = [int(step.counters.get(f"n{i + 1}.attempts", 0)) for i in range(nodes)]
    total = sum(counts) or 1
    return ", ".join(f"n{i + 1} {n} ({n / total:.0%})" for i, n in enumerate(counts))


def table(ceilings: list[Ceiling], rig: Ceiling | None, sippy: Ceiling | None) -> str:
    rows = ["| system | highest clean calls/s | lowest failing calls/s | confirmed | "
            "CPU ms/call at ceiling | CPU of one core at ceiling | vs rig | vs Sippy |",
            "|---|---|---|---|---|---|---|---|"]
    for c in ceilings:
        at = next((s for s in reversed(c.steps) if s.clean and s.rate == c.clean), None)
        cpu = "-" if at is None or at.cpu_ms_per_call is None else f"{at.cpu_ms_per_call:.2f}"
        share = "-" if at is None or at.system_cpu_share is None else (
            f"{at.system_cpu_share:.0%}")
        vs_rig = f"{c.clean / rig.clean:.3f}" if rig and rig.clean and c is not rig else "-"
        vs_sippy = (f"{c.clean / sippy.clean:.2f}" if sippy and sippy.clean and c is not sippy
                    and c is not rig else "-")
        failed = "none up to the top of the ladder" if c.failed is None else str(c.failed)
        conf = {None: "-", True: "yes", False: "NO"}[c.confirmed]
        rows.append(f"| {c.system} | {c.clean} | {failed} | {conf} | {cpu} | {share} | "
                    f"{vs_rig} | {vs_sippy} |")
    return "\n".join(rows)


def git_state() -> str:
    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    dirty = [ln for ln in git("status", "--short", "--untracked-files=no").splitlines() if ln]
    return f"{git('rev-parse', '--short', 'HEAD')} + {len(dirty)} modified tracked files"


def export_rev(rev: str, dest: Path) -> str:
    """``git archive REV`` of the softswitch's packages into ``dest`` (read-only for git)."""
    dest.mkdir(parents=True, exist_ok=True)
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", sha, "b2bua", "api",
                              "migrations"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    for source in C_SOURCES:
        if (dest / source).exists():
            build_c_module(dest, source)
    return f"{rev} = {sha} exported to {dest}"


C_SOURCES = ("b2bua/media/_pump.c", "b2bua/sip/_dispatch.c", "b2bua/_tally.c")
# What a module is linked with besides its own file, when the exported revision has it
# (setup.py says the same for the working tree).
C_EXTRAS = {"b2bua/media/_pump.c": (["b2bua/media/rtpcipher.c"], ["-lcrypto"])}


def build_c_module(dest: Path, source: str) -> None:
    """One C module, compiled in place for this interpreter (what the editable install
    does for the working tree)."""
    paths = sysconfig.get_paths()
    target = Path(source).with_suffix(sysconfig.get_config_var("EXT_SUFFIX"))
    sources, libs = C_EXTRAS.get(source, ([], []))
    if not all((dest / extra).exists() for extra in sources):
        sources, libs = [], []  # a revision from before those files
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", f"-I{paths['include']}",
                    source, *sources, "-o", str(target), "-lpthread", *libs], cwd=dest,
                   check=True)


def resolve_code(arg: str, root: Path) -> tuple[Path | None, str]:
    """``--code``: 'tree' (the working tree as it is), a folder holding b2bua/api/migrations
    (e.g. a candidate fix), or a git revision exported into ``root``."""
    if arg == "tree":
        return None, f"working tree ({git_state()})"
    if (Path(arg) / "b2bua").is_dir():
        return Path(arg).resolve(), f"the code in {Path(arg).resolve()}"
    dest = root / "code"
    return dest, export_rev("HEAD" if arg == "head" else arg, dest)


@dataclass
class Profile:
    label: str
    rate: int
    step: Step
    summary: dict[str, Any]


def profile_step(bench: Bench, system: SoftswitchSystem, rate: int, label: str
                 ) -> Profile | None:
    system.restart()
    log(f"profiling: {label} at {rate} cps")
    step = bench.run_step(system, rate, profile=True)
    if not step.profile:
        log("py-spy gave no profile (is py-spy installed in the venv?)")
        return None
    return Profile(label, rate, step, summarise_profile(Path(step.profile)))


def print_profile(p: Profile, hz: int, seconds: int) -> None:
    s = p.summary
    busy = s["samples"] / (hz * seconds)
    print(f"\npy-spy, {p.label}, {p.rate} cps (step {'clean' if p.step.clean else 'FAILED'}),"
          f" {s['samples']} non-idle samples = {busy:.0%} of one thread's time")
    print("  threads: " + ", ".join(f"{k} {v}%" for k, v in s["threads"]))
    print("  top self time (% of non-idle samples):")
    for name, share in s["self"]:
        print(f"    {share:5.1f}%  {name}")
    print("  self time by file:")
    for name, share in s["self_by_file"]:
        print(f"    {share:5.1f}%  {name}")
    print("  top inclusive time (project functions):")
    for name, share in s["inclusive"]:
        print(f"    {share:5.1f}%  {name}")


def print_gc(st: Step) -> None:
    d = st.diagnostics
    if not d:
        return
    verdict = "clean" if st.clean else "FAILED: " + "; ".join(st.reasons)
    drops = f", UDP drops {st.udp_drops}" if st.udp_drops else ""
    print(f"\ncyclic GC at {st.rate} cps for {st.calls // max(st.rate, 1)} s (step {verdict}"
          f"{drops}): {d['gen2_collections']} full collections in {st.wall_s:.0f} s, pauses ms "
          f"{d['gen2_ms']}, tracked objects {d['gen2_tracked']}, collections >= 5 ms took "
          f"{d['gc_share_of_wall']:.1%} of wall time")


def soak_only(bench: Bench, root: Path, code_root: Path | None, rates: list[int],
              seconds: int) -> int:
    """Long steps at fixed rates: does a rate hold once the live heap has stopped growing?"""
    probe = SoftswitchSystem(root / "softswitch-soak", gc_mode="log", code_root=code_root,
                             name="softswitch (GC logged)")
    probe.start()
    steps = []
    try:
        for rate in rates:
            probe.restart()
            log(f"soak: {seconds} s at {rate} cps")
            steps.append(bench.run_step(probe, rate, seconds=seconds))
    finally:
        probe.stop()
    for st in steps:
        print_gc(st)
    (root / "soak.json").write_text(json.dumps([asdict(s) for s in steps], indent=1,
                                               default=str))
    return 0


CONSOLE_SETTLE_S = 3.0  # after a restart (and the pages' reload) before a fixed-rate step


@dataclass
class ConsoleRounds:
    """``--fixed-rate``: steps at one rate without and with the console's browsers."""

    rate: int
    without: list[Step] = field(default_factory=list)
    with_console: list[Step] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # "without, with" per round
    note: str = ""


def console_rounds(bench: Bench, root: Path, code_root: Path | None, rate: int,
                   rounds: int, deadline: float) -> ConsoleRounds:
    """``rounds`` pairs of steps at ``rate`` on one softswitch: one with no browser at
    all, one with the console's two browsers on their pages (the Dashboard and Live
    calls); every step from a freshly restarted softswitch (the browsers' pages loaded
    again after it), ``CONSOLE_SETTLE_S`` after; the order alternates from one round to
    the next, so that a drift in the machine's load weighs on both alike."""
    result = ConsoleRounds(rate)
    system = SoftswitchSystem(root / "softswitch-fixed", code_root=code_root,
                              name="softswitch (fixed rate)")
    system.start()
    try:
        for n in range(rounds):
            order = (False, True) if n % 2 == 0 else (True, False)
            result.order.append(", ".join("with" if c else "without" for c in order))
            for with_console in order:
                if time.monotonic() > deadline:
                    result.note = f"time budget spent in round {n + 1}"
                    log("fixed rate: " + result.note)
                    return result
                if with_console:
                    system.console_on()  # started here, reloaded by the restart
                else:
                    system.console_off()
                system.restart()
                system.name = ("softswitch-console (fixed rate)" if with_console
                               else "softswitch (fixed rate)")
                time.sleep(CONSOLE_SETTLE_S)
                step = bench.run_step(system, rate)
                (result.with_console if with_console else result.without).append(step)
    finally:
        system.stop()
    return result


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _ms(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def console_report(fixed: ConsoleRounds | None, without: Ceiling | None,
                   with_console: Ceiling | None, step_s: int) -> str:
    """The softswitch without and with the console's browsers, side by side: the
    engine's CPU per call (its process only) and the API's (gunicorn, all of it), the
    highest clean calls/s, and the ratios."""
    import console_load

    expected = ", ".join(f"{page} {rate * step_s:.1f}"
                         for page, rate in console_load.POLLS_PER_S.items())
    out = [f"## Console: {len(console_load.PAGES)} headless Chromium signed in "
           f"({', '.join(p for p, _ in console_load.PAGES)}), SCHED_IDLE",
           f"(each step of {step_s} s should see about {expected} API requests)"]
    if without and with_console:
        out.append("")
        ratio = (f"{with_console.clean / without.clean:.2f}" if without.clean else "-")
        out.append(f"highest clean calls/s, with / without the console = "
                   f"{with_console.clean} / {without.clean} = {ratio}")
        w_at, c_at = _at_ceiling(without), _at_ceiling(with_console)
        if w_at and c_at:
            out.append(f"  at each ceiling, CPU ms/call with / without: engine "
                       f"{_ms(c_at.cpu_ms_per_call)} / {_ms(w_at.cpu_ms_per_call)}, API "
                       f"{_ms(c_at.api_cpu_ms_per_call, 4)} / "
                       f"{_ms(w_at.api_cpu_ms_per_call, 4)}")
        # The searches' clean steps at the same rate, where both have one.
        same = sorted({s.rate for s in without.steps if s.clean}
                      & {s.rate for s in with_console.steps if s.clean})
        if same:
            out.append("  the searches' clean steps at the same rate, engine CPU ms/call "
                       "with / without: " + ", ".join(
                           f"{r}: " + " / ".join(_ms(_mean([s.cpu_ms_per_call for s in c.steps
                                                            if s.clean and s.rate == r]))
                                                 for c in (with_console, without))
                           for r in same))
    if fixed and (fixed.without or fixed.with_console):
        out += ["", f"at {fixed.rate} calls/s, {len(fixed.order)} rounds of {step_s} s steps, "
                "each from a restarted softswitch, the order alternating:", "",
                "| round | order | engine ms/call without | with | API ms/call without | "
                "with | console requests in the step | browsers, of one core | clean |",
                "|---|---|---|---|---|---|---|---|---|"]
        for n, order in enumerate(fixed.order):
            w = fixed.without[n] if n < len(fixed.without) else None
            c = fixed.with_console[n] if n < len(fixed.with_console) else None
            requests = "-" if c is None else ", ".join(
                f"{page} {k}" for page, k in c.console_requests.items())
            share = "-" if c is None or c.browser_cpu_share is None else (
                f"{c.browser_cpu_share:.1%}")
            clean = "/".join("-" if s is None else ("yes" if s.clean else "NO")
                             for s in (w, c))
            out.append(f"| {n + 1} | {order} | {_ms(w.cpu_ms_per_call if w else None)} | "
                       f"{_ms(c.cpu_ms_per_call if c else None)} | "
                       f"{_ms(w.api_cpu_ms_per_call if w else None, 4)} | "
                       f"{_ms(c.api_cpu_ms_per_call if c else None, 4)} | {requests} | "
                       f"{share} | {clean} |")
        e_w = _mean([s.cpu_ms_per_call for s in fixed.without])
        e_c = _mean([s.cpu_ms_per_call for s in fixed.with_console])
        a_w = _mean([s.api_cpu_ms_per_call for s in fixed.without])
        a_c = _mean([s.api_cpu_ms_per_call for s in fixed.with_console])
        out.append(f"| mean | | {_ms(e_w)} | {_ms(e_c)} | {_ms(a_w, 4)} | {_ms(a_c, 4)} | | | |")
        out.append("")
        if e_w and e_c:
            pairs = [c.cpu_ms_per_call / w.cpu_ms_per_call
                     for w, c in zip(fixed.without, fixed.with_console, strict=False)
                     if w.cpu_ms_per_call and c.cpu_ms_per_call]
            spread = (f" (rounds: {min(pairs):.3f} to {max(pairs):.3f})" if pairs else "")
            out.append(f"engine CPU per call, with / without the console = {e_c:.3f} / "
                       f"{e_w:.3f} ms = {e_c / e_w:.3f}{spread}")
            out.append(f"  the difference: {(e_c - e_w) * fixed.rate:+.1f} ms of "
                       f"engine CPU per second at {fixed.rate} calls/s "
                       f"({(e_c - e_w) * fixed.rate / 1000:+.2%} of a core)")
        if a_w is not None and a_c is not None:
            out.append(f"API CPU per call (gunicorn), with / without = {a_c:.4f} / {a_w:.4f} ms:"
                       f" {(a_c - a_w) * fixed.rate:+.1f} ms of CPU per second "
                       f"({(a_c - a_w) * fixed.rate / 1000:+.2%} of a core)")
        if fixed.note:
            out.append(f"note: {fixed.note}")
    return "\n".join(out)


def add_code_and_workdir(ap: argparse.ArgumentParser) -> None:
    """The options every signalling benchmark shares (cps, soak, concurrency)."""
    ap.add_argument("--code", default="tree",
                    help="softswitch code: 'tree', the working tree as it is (default); a "
                         "git revision such as 'head', exported once with git archive (a "
                         "consistent snapshot while others edit the tree); or a folder "
                         "holding b2bua/, api/ and migrations/")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where sipp/softswitch files go (default: a new /tmp folder)")


def have_sipp() -> bool:
    if shutil.which("sipp") is None:
        print("sipp not found on PATH", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true",
                    help="8 s steps, 2 bisections, no confirmation run, shorter diagnostics")
    ap.add_argument("--step-seconds", type=int, default=None, help="seconds per step (15)")
    ap.add_argument("--hold-ms", type=int, default=1000, help="call hold, sipp -d (1000)")
    ap.add_argument("--systems", default="rig,softswitch,sippy",
                    help="comma-separated subset of rig,softswitch,softswitch-controls,"
                         "softswitch-console,"
                         "softswitch-2w,softswitch-password,softswitch-pg,sippy,kamailio,"
                         "cluster (softswitch-console: the softswitch with two headless "
                         "Chromium signed in to its console, one on the Dashboard, one on "
                         "Live calls, polling, under SCHED_IDLE; softswitch-controls: "
                         "a call-rate limit on the customer and two weighted vendors "
                         "with call-rate limits, none reached; "
                         "softswitch-password: the customer trunk in digest mode; "
                         "softswitch-2w: two signalling workers; softswitch-pg: on a "
                         "PostgreSQL 15 started for the run; kamailio: Debian's kamailio "
                         f"as a stateful record-routing proxy, {KAMAILIO_CHILDREN} UDP "
                         "children, CPU summed over all its processes; cluster: "
                         f"{', '.join(str(n) for n in CLUSTER_SIZES)} softswitch nodes "
                         "behind the kamailio edge on one PostgreSQL and one Redis, one "
                         "search each, with the ratios and the CPU per call by part)")
    ap.add_argument("--kamailio-memory", choices=KAMAILIO_MEMORY, default=KAMAILIO_MEMORY[0],
                    help="kamailio's memory manager, -x/-X, for the kamailio system and "
                         "the cluster's edge (tlsf; qm is Debian's default, built with "
                         "memory debugging)")
    ap.add_argument("--no-diagnostics", action="store_true",
                    help="skip the py-spy profiles and the GC diagnostic runs")
    ap.add_argument("--soak-seconds", type=int, default=None,
                    help="diagnostics: one step this long at the softswitch's ceiling, GC "
                         "logged (45; 0 skips; --quick: 0)")
    ap.add_argument("--soak-at", default="",
                    help="only soak: comma-separated rates, one softswitch step each of "
                         "--soak-seconds (60 here) with the GC logged; no searches")
    ap.add_argument("--budget-min", type=float, default=22.0,
                    help="start no new step after this many minutes (22)")
    ap.add_argument("--fresh-each-step", action="store_true",
                    help="restart the system under test before every step, so that what "
                         "one step leaves in memory does not weigh on the next")
    ap.add_argument("--profile-at", type=int, default=0, metavar="RATE",
                    help="no searches: one step at RATE cps per softswitch system in "
                         "--systems with py-spy attached (--step-seconds long)")
    ap.add_argument("--count-work", type=int, default=0, metavar="RATE",
                    help="no searches: one step at RATE cps for --code and one for --base "
                         "with the event loop under cProfile; prints the Python function "
                         "calls per SIP call of each and where they differ")
    ap.add_argument("--controls", action="store_true",
                    help="with --count-work: the code under test with the carrier controls "
                         "on (as softswitch-controls), the base without")
    ap.add_argument("--base", default=None, metavar="REV",
                    help="also search the softswitch at git revision REV (exported like "
                         "--code REV) right after 'softswitch', in the same run, and print "
                         "the ratio: what a change costs or gains in calls/s")
    ap.add_argument("--fixed-rate", type=int, default=0, metavar="RATE",
                    help="with softswitch-console in --systems: first, --fixed-rounds "
                         "pairs of steps at RATE cps on one softswitch, without and with the "
                         "console's browsers in turn, and the CPU per call of each (the "
                         "engine's and the API's) at equal load; then the searches")
    ap.add_argument("--fixed-rounds", type=int, default=3,
                    help="pairs of steps for --fixed-rate (3)")
    add_code_and_workdir(ap)
    args = ap.parse_args(argv)
    # A SIGTERM unwinds the bench through its finally blocks, as an error does: the
    # system under test is stopped, and with it any console browser, by pid.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    if args.base or args.profile_at or args.count_work:
        # The bench names no gateway by DNS, and an older revision may not know
        # --dns-server: the tests' loopback resolver is left out of every run alike.
        support.NO_DNS.clear()
    if not have_sipp():
        return 2
    step_s = args.step_seconds or (8 if args.quick else 15)
    max_bisect = 2 if args.quick else 4
    confirm = not args.quick
    wanted = {s.strip() for s in args.systems.split(",") if s.strip()}
    if "softswitch-console" in wanted:
        import console_load

        why = console_load.chromium_available()
        if why:
            print(f"softswitch-console: {why}", file=sys.stderr)
            return 2
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-cps-"))
    root.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    deadline = t_start + args.budget_min * 60
    profile_s = max(3, min(10, step_s - 5))
    bench = Bench(root, step_s, args.hold_ms, profile_s=profile_s)
    started = dt.datetime.now().astimezone()
    log(f"cps bench: {step_s} s steps, hold {args.hold_ms} ms, work dir {root}")
    code_root, code = resolve_code(args.code, root)
    log(f"machine: {machine()}; softswitch code: {code}")

    if args.soak_at:
        return soak_only(bench, root, code_root,
                         [int(r) for r in args.soak_at.split(",") if r.strip()],
                         args.soak_seconds or 60)
    if args.count_work:
        return count_work(bench, root, code_root or REPO, args.base, args.count_work,
                          args.controls)
    if args.profile_at:
        return profile_only(bench, root, code_root, wanted, args.profile_at, profile_s)

    if not self_check(bench, root):
        log("self-check FAILED: uac_txn.xml does not absorb a late 1xx; see " + str(root))
        return 1
    log("self-check: uac_txn.xml absorbs a 180 that arrives after the 200 and the ACK")

    ladders = {
        "rig": [500, 1000, 2000, 3000, 4000, 5000, 6000],
        "softswitch": [50, 100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 2500],
        "softswitch-password": [50, 100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500],
        "softswitch-2w": [200, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000],
        "sippy": [50, 100, 200, 300, 400, 500, 600, 800, 1000],
        "kamailio": [500, 1000, 2000, 3000, 4000, 5000, 6000],
        # Through the edge (twice per call: the customer's leg and the vendor's), a node
        # on PostgreSQL and Redis, all on the same cores as the sipps: below the lone
        # softswitch's.
        "cluster": [50, 100, 200, 300, 400, 500, 600, 700, 800, 1000, 1200],
    }
    if args.quick:
        ladders["rig"] = ladders["kamailio"] = [500, 1000, 2000, 3000, 4000]
    ceilings: list[Ceiling] = []
    rig_c = sippy_c = ss_c = pw_c = w2_c = pg_c = kam_c = None
    pg_note = ""
    sippy_note = ""
    kamailio_note = ""
    cluster_note = ""
    cluster_results: list[ClusterResult] = []
    profiles: list[Profile] = []
    gc_steps: list[Step] = []

    fixed: ConsoleRounds | None = None
    if args.fixed_rate:
        if "softswitch-console" in wanted:
            fixed = console_rounds(bench, root, code_root, args.fixed_rate, args.fixed_rounds,
                                   deadline)
        else:
            log("--fixed-rate: only with softswitch-console in --systems; skipped")

    if "rig" in wanted:
        rig = Rig(root / "rig")
        rig.start()
        rig_c = find_ceiling(bench, rig, ladders["rig"], max_bisect, deadline, confirm)
        ceilings.append(rig_c)

    def climb(system: System, ladder: str) -> Ceiling:
        """The ceiling of a system that is up."""
        ceiling = find_ceiling(bench, system, ladders[ladder], max_bisect, deadline,
                               confirm, fresh_each_step=args.fresh_each_step)
        ceilings.append(ceiling)
        return ceiling

    def search(system: System, ladder: str) -> Ceiling:
        """The system's ceiling, started and stopped around the search."""
        system.start()
        try:
            return climb(system, ladder)
        finally:
            system.stop()

    base_c = console_c = None
    if "softswitch" in wanted:
        ss_c = search(SoftswitchSystem(root / "softswitch", code_root=code_root), "softswitch")
    if "softswitch-console" in wanted:
        console_c = search(SoftswitchSystem(root / "softswitch-console", code_root=code_root,
                                            name="softswitch-console", console=True),
                           "softswitch")
    controls_c = None
    if "softswitch-controls" in wanted:
        controls_c = search(SoftswitchSystem(root / "softswitch-controls", code_root=code_root,
                                             name="softswitch-controls", controls=True),
                            "softswitch")
    if "softswitch" in wanted and args.base:
        base_note = export_rev(args.base, root / "code-base")
        log(f"base: {base_note}")
        base_c = search(SoftswitchSystem(root / "softswitch-base", code_root=root / "code-base",
                                         name=f"softswitch at {args.base}"),
                        "softswitch")
    if "softswitch-2w" in wanted:
        w2_c = search(SoftswitchSystem(root / "softswitch-2w", code_root=code_root,
                                       name="softswitch-2w",
                                       extra_args=["--signalling-workers", "2"]),
                      "softswitch-2w")
    if "softswitch-password" in wanted:
        pw_c = search(SoftswitchSystem(root / "softswitch-password", code_root=code_root,
                                       auth_mode="password", name="softswitch-password"),
                      "softswitch-password")
    if "softswitch-pg" in wanted:
        pg_c, pg_note = search_postgres(bench, root, code_root, search, ss_c)
    if "sippy" in wanted:
        if not sippy_available():
            sippy_note = "sippy is not importable in this venv (pip install sippy==2.5.0)"
            log("Sippy B2BUA skipped: " + sippy_note)
        elif time.monotonic() > deadline:
            sippy_note = "skipped: time budget spent"
        else:
            sippy_c = search(SippySystem(root / "sippy"), "sippy")
    if "kamailio" in wanted:
        if not kamailio_version():
            kamailio_note = "kamailio is not installed (apt-get install kamailio)"
            log("kamailio skipped: " + kamailio_note)
        elif time.monotonic() > deadline:
            kamailio_note = "skipped: time budget spent"
        else:
            kam_c = search(KamailioSystem(root / "kamailio", memory=args.kamailio_memory),
                           "kamailio")
    if "cluster" in wanted:
        missing = [tool for tool in ("kamailio", "kamcmd", "redis-server")
                   if shutil.which(tool) is None]
        if missing:
            cluster_note = f"{', '.join(missing)} not installed (scripts/setup)"
            log("cluster skipped: " + cluster_note)
        elif time.monotonic() > deadline:
            cluster_note = "skipped: time budget spent"
        else:
            cluster_results = search_cluster(root, code_root, args.kamailio_memory, deadline,
                                             lambda system: climb(system, "cluster"))

    if (ss_c and ss_c.clean and not args.no_diagnostics
            and time.monotonic() < deadline):
        # (1) where the time goes at the ceiling, and what the cyclic GC does there and
        # at the first failing rate; (2) the ceiling with the cyclic GC switched off,
        # i.e. what the engine's CPU alone would allow.
        probe = SoftswitchSystem(root / "softswitch-gclog", gc_mode="log",
                                 code_root=code_root, name="softswitch (GC logged)")
        probe.start()
        try:
            prof = profile_step(bench, probe, ss_c.clean, "softswitch (GC logged)")
            if prof:
                profiles.append(prof)
                gc_steps.append(prof.step)
            if ss_c.failed and time.monotonic() < deadline:
                probe.restart()
                gc_steps.append(bench.run_step(probe, ss_c.failed))
            soak_s = args.soak_seconds if args.soak_seconds is not None else (
                0 if args.quick else 45)
            if soak_s and time.monotonic() < deadline:
                # The live heap grows until the first transactions expire (64*T1 = 32 s):
                # does the ceiling found with short steps hold once it has?
                probe.restart()
                log(f"soak: {soak_s} s at {ss_c.clean} cps")
                gc_steps.append(bench.run_step(probe, ss_c.clean, seconds=soak_s))
        finally:
            probe.stop()
        if time.monotonic() < deadline:
            off = SoftswitchSystem(root / "softswitch-gcoff", gc_mode="off",
                                   code_root=code_root,
                                   name="softswitch, cyclic GC off (diagnostic)")
            off.start()
            try:
                base = ss_c.clean
                top = rig_c.clean if rig_c and rig_c.clean else 5000
                factors = (1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32)
                ladder = sorted({base, *(int(round(base * f / 10) * 10) for f in factors
                                         if base * f <= top)})
                off_c = find_ceiling(bench, off, ladder, 2 if args.quick else 3, deadline,
                                     confirm=False, fresh_each_step=True)
                ceilings.append(off_c)
                if off_c.clean and time.monotonic() < deadline:
                    prof = profile_step(bench, off, off_c.clean, "softswitch, GC off")
                    if prof:
                        profiles.append(prof)
            finally:
                off.stop()

    elapsed = (time.monotonic() - t_start) / 60
    print()
    print(f"# calls/s with a {args.hold_ms} ms hold, {step_s} s steps, "
          f"{started:%Y-%m-%d %H:%M %Z}, {elapsed:.1f} min")
    print(f"# machine: {machine()}")
    print(f"# softswitch code: {code}")
    print()
    print(table(ceilings, rig_c, sippy_c))
    print()
    if ss_c and rig_c and rig_c.clean:
        print(f"softswitch / rig   = {ss_c.clean} / {rig_c.clean} = "
              f"{ss_c.clean / rig_c.clean:.3f}")
    if ss_c and sippy_c and sippy_c.clean:
        print(f"softswitch / Sippy = {ss_c.clean} / {sippy_c.clean} = "
              f"{ss_c.clean / sippy_c.clean:.2f}")
    if ss_c and base_c and base_c.clean:
        print(f"softswitch / softswitch at {args.base} = {ss_c.clean} / {base_c.clean} = "
              f"{ss_c.clean / base_c.clean:.2f}")
    if controls_c and base_c and base_c.clean:
        print(f"softswitch-controls / softswitch at {args.base} = {controls_c.clean} / "
              f"{base_c.clean} = {controls_c.clean / base_c.clean:.2f}")
    if controls_c and ss_c and ss_c.clean:
        print(f"softswitch-controls / softswitch = {controls_c.clean} / {ss_c.clean} = "
              f"{controls_c.clean / ss_c.clean:.2f}")
    if w2_c and w2_c.clean:
        if ss_c and ss_c.clean:
            print(f"2 signalling workers / 1 = {w2_c.clean} / {ss_c.clean} = "
                  f"{w2_c.clean / ss_c.clean:.2f}")
        if sippy_c and sippy_c.clean:
            print(f"softswitch-2w / Sippy = {w2_c.clean} / {sippy_c.clean} = "
                  f"{w2_c.clean / sippy_c.clean:.2f}")
    if pw_c and ss_c and ss_c.clean:
        print(f"password mode / IP mode = {pw_c.clean} / {ss_c.clean} = "
              f"{pw_c.clean / ss_c.clean:.2f}")
        pw_at = _at_ceiling(pw_c)
        ip_at = _at_ceiling(ss_c)
        if pw_at and ip_at and pw_at.cpu_ms_per_call and ip_at.cpu_ms_per_call:
            print(f"CPU per call, password / IP = {pw_at.cpu_ms_per_call:.2f} / "
                  f"{ip_at.cpu_ms_per_call:.2f} ms = "
                  f"{pw_at.cpu_ms_per_call / ip_at.cpu_ms_per_call:.2f}")
    if pg_c and ss_c and ss_c.clean:
        print(f"PostgreSQL / SQLite = {pg_c.clean} / {ss_c.clean} = "
              f"{pg_c.clean / ss_c.clean:.2f}")
    if kam_c and kam_c.clean:
        if ss_c and ss_c.clean:
            print(f"softswitch / kamailio = {ss_c.clean} / {kam_c.clean} = "
                  f"{ss_c.clean / kam_c.clean:.2f} (calls/s)")
            ss_at, kam_at = _at_ceiling(ss_c), _at_ceiling(kam_c)
            if ss_at and kam_at and ss_at.cpu_ms_per_call and kam_at.cpu_ms_per_call:
                print(f"CPU per call, softswitch / kamailio = {ss_at.cpu_ms_per_call:.2f} / "
                      f"{kam_at.cpu_ms_per_call:.2f} ms = "
                      f"{ss_at.cpu_ms_per_call / kam_at.cpu_ms_per_call:.1f} (each at its "
                      "ceiling; kamailio as a proxy does much less per call than a B2BUA)")
        if rig_c and rig_c.clean:
            print(f"kamailio / rig = {kam_c.clean} / {rig_c.clean} = "
                  f"{kam_c.clean / rig_c.clean:.3f}")
    if pg_note:
        print(f"PostgreSQL: {pg_note}")
    if sippy_note:
        print(f"Sippy: {sippy_note}")
    if kamailio_note:
        print(f"kamailio: {kamailio_note}")
    if cluster_note:
        print(f"cluster: {cluster_note}")
    if cluster_results:
        print()
        print(cluster_report(cluster_results))
    if console_c or fixed:
        print()
        print(console_report(fixed, ss_c, console_c, step_s))
    for c in ceilings:
        first_fail = next((s for s in c.steps if not s.clean), None)
        if first_fail:
            print(f"\n{c.system}: first failing step {first_fail.rate} cps: "
                  + "; ".join(first_fail.reasons))
    for st in gc_steps:
        print_gc(st)
    for p in profiles:
        print_profile(p, 200, profile_s)
    out = root / "results.json"
    out.write_text(json.dumps({
        "started": started.isoformat(), "machine": machine(), "code": code,
        "step_s": step_s, "hold_ms": args.hold_ms, "elapsed_min": round(elapsed, 1),
        "ceilings": [{**asdict(c), "steps": [asdict(s) for s in c.steps]} for c in ceilings],
        "profiles": [{"label": p.label, "rate": p.rate, "summary": p.summary,
                      "step": asdict(p.step)} for p in profiles],
        "gc_steps": [asdict(s) for s in gc_steps],
        "sippy_note": sippy_note,
        "kamailio_note": kamailio_note,
        "cluster": [{"nodes": r.nodes, "ceiling": r.ceiling.clean if r.ceiling else None,
                     "idle_cpu_share": r.idle_cpu_share, "note": r.note}
                    for r in cluster_results],
        "cluster_note": cluster_note,
        "console_fixed": None if fixed is None else {
            "rate": fixed.rate, "order": fixed.order, "note": fixed.note,
            "without": [asdict(s) for s in fixed.without],
            "with": [asdict(s) for s in fixed.with_console]},
    }, indent=1, default=str))
    print(f"\nall steps and files: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
