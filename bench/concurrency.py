"""Most simultaneous calls held with no failure, and memory per call: the softswitch
against Sippy B2BUA, in the same run.

Run from the repository root::

    .venv/bin/python bench/concurrency.py --code head            # 1000, 2000, 4000 calls
    .venv/bin/python bench/concurrency.py --ladder 500,1000 --hold 20 --systems softswitch

A step is N calls placed at ``--rate`` calls/s (sipp ``-m N -l N``), each held
``--hold`` seconds (60) then hung up by the caller, through the system to a sipp vendor,
on a freshly started system. It is *clean* when both sipp sides exit 0 and report every
call successful and none failed, and all N calls were up at once (the ramp takes
N / rate seconds, well under the hold). The ladder goes up until a step fails or the
time budget is spent; the highest clean N is the result.

Memory per call: the resident set (VmRSS) of the system's processes sampled every
second while all N calls are up (the median of those samples), minus the same just
before the step, divided by N. For the softswitch that is the engine process (``softswitch
run``: SIP, calls, CDR writer) and, separately, the engine plus its relay worker processes
(which hold the relay sessions of relayed calls; the API server is not counted); for
Sippy its one process. Calls through the softswitch are relayed only when the gateways
or ``SS_MEDIAPROXYMODE`` ask for it (sipp on loopback: not by default); the relay ports
in use are printed.

Bounded: every sipp has ``-timeout``; every step a wall-clock limit; no step starts
after ``--budget-min``. Only loopback addresses; only processes started here are
stopped, by pid.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cps
from cps import (
    CUSTOMER_IP,
    UAC_XML,
    UAS_XML,
    VENDOR_IP,
    SippySystem,
    SoftswitchSystem,
    add_code_and_workdir,
    have_sipp,
    judge,
    log,
    machine,
    parse_stats,
    resolve_code,
    start_sipp,
    wait_bound,
)
from support import free_port  # cps puts tests/ on the path

SAMPLE_S = 1.0


def rss_kib(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def relay_workers(pid: int | None) -> list[int]:
    """The engine's relay worker processes (its children running b2bua.media.worker)."""
    if pid is None:
        return []
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == pid and b"b2bua.media.worker" in (entry / "cmdline").read_bytes():
                out.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return out


@dataclass
class Sample:
    t: float
    main_kib: int
    workers_kib: int
    active: int | None  # calls up, from the softswitch's API


@dataclass
class Step:
    system: str
    calls: int
    clean: bool
    reasons: list[str]
    idle_main_kib: int
    idle_workers_kib: int
    up_main_kib: int | None = None
    up_workers_kib: int | None = None
    kib_per_call_main: float | None = None
    kib_per_call_total: float | None = None
    most_up_seen: int | None = None
    relay_ports_in_use: int | None = None
    wall_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    run_dir: str = ""


def _api(system: Any, path: str) -> Any:
    switch = getattr(system, "switch", None)
    if switch is None:
        return None
    try:
        return switch.api.get(path)
    except (OSError, AssertionError):
        return None


def run_step(root: Path, system: Any, calls: int, rate: int, hold_s: int,
             step_no: int) -> Step:
    system.restart()
    time.sleep(2.0)  # let the fresh process settle before the idle baseline
    pid = system.pid
    is_switch = isinstance(system, SoftswitchSystem)
    idle_main = rss_kib(pid)
    idle_workers = sum(rss_kib(w) for w in relay_workers(pid)) if is_switch else 0
    run_dir = root / f"{step_no:02d}-{system.name.split()[0].lower()}-{calls}"
    ramp_s = calls / rate
    timeout_s = int(ramp_s + hold_s + 40)
    # The vendor waits the whole hold for the BYE: its receive timeout must outlast it.
    recv_ms = (hold_s + 20) * 1000
    uas = start_sipp("uas", run_dir / "uas", UAS_XML, VENDOR_IP, system.vendor_port, calls,
                     rate, 0, timeout_s + 10, recv_timeout_ms=recv_ms)
    if not wait_bound(VENDOR_IP, system.vendor_port):
        log("warning: UAS did not bind in 3 s")
    uac = start_sipp("uac", run_dir / "uac", UAC_XML, CUSTOMER_IP,
                     free_port(CUSTOMER_IP, socket.SOCK_DGRAM), calls, rate, hold_s * 1000,
                     timeout_s, remote=system.target, extra=["-l", str(calls)],
                     recv_timeout_ms=recv_ms)
    t0 = time.monotonic()
    step = Step(system.name, calls, False, [], idle_main, idle_workers, run_dir=str(run_dir))
    limit = t0 + timeout_s + 15
    while uac.proc.poll() is None and time.monotonic() < limit:
        stats = _api(system, "/api/v1/stats") if is_switch else None
        step.samples.append(Sample(
            round(time.monotonic() - t0, 1), rss_kib(pid),
            sum(rss_kib(w) for w in relay_workers(pid)) if is_switch else 0,
            None if stats is None else int(stats["active"])))
        if is_switch and step.relay_ports_in_use is None and time.monotonic() - t0 > ramp_s + 3:
            media = _api(system, "/api/v1/media")
            step.relay_ports_in_use = None if media is None else int(media["ports_in_use"])
        time.sleep(SAMPLE_S)
    uac_code = uac.wait(0.1)
    if uac_code is None:
        log("UAC overran its bound; stopping it")
        uac_code = uac.stop()
    uas_code = uas.wait(10)
    if uas_code is None:
        uas_code = uas.stop()
    step.wall_s = round(time.monotonic() - t0, 1)
    uac_stats = parse_stats(run_dir / "uac" / "stats.csv", "uac", uac_code, calls)
    uas_stats = parse_stats(run_dir / "uas" / "stats.csv", "uas", uas_code, calls)
    step.reasons = judge(uac_stats, uas_stats, calls, rate, check_rate=False)
    # All N up at once: between the end of the ramp (+2 s for the last answers) and the
    # first hang-up (hold seconds after the first call).
    plateau = [s for s in step.samples if ramp_s + 2 <= s.t <= hold_s - 1]
    if is_switch:
        seen = [s.active for s in step.samples if s.active is not None]
        step.most_up_seen = max(seen, default=0)
        if step.most_up_seen < calls:
            step.reasons.append(f"at most {step.most_up_seen} of {calls} calls up at once")
    if plateau:
        step.up_main_kib = int(statistics.median(s.main_kib for s in plateau))
        step.up_workers_kib = int(statistics.median(s.workers_kib for s in plateau))
        step.kib_per_call_main = round((step.up_main_kib - idle_main) / calls, 2)
        step.kib_per_call_total = round(
            (step.up_main_kib + step.up_workers_kib - idle_main - idle_workers) / calls, 2)
    else:
        step.reasons.append("no sample with every call up (ramp longer than the hold?)")
    step.clean = not step.reasons
    per_call = "" if step.kib_per_call_main is None else (
        f" RSS {idle_main / 1024:.0f} -> {(step.up_main_kib or 0) / 1024:.0f} MB, "
        f"{step.kib_per_call_main:.1f} KiB/call")
    if is_switch and step.kib_per_call_total is not None:
        per_call += f" ({step.kib_per_call_total:.1f} with relay workers)"
    log(f"{system.name:<20} {calls:>6} calls held {hold_s} s: "
        f"{'CLEAN' if step.clean else 'FAIL'}{per_call}"
        + ("" if step.clean else "\n    " + "; ".join(step.reasons)))
    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--ladder", default="1000,2000,4000",
                    help="comma-separated call counts, tried upwards (1000,2000,4000)")
    ap.add_argument("--hold", type=int, default=60, help="seconds each call is held (60)")
    ap.add_argument("--rate", type=int, default=150,
                    help="calls/s while ramping up (150: under both systems' ceilings)")
    ap.add_argument("--systems", default="softswitch,sippy",
                    help="comma-separated subset of softswitch,sippy")
    ap.add_argument("--budget-min", type=float, default=10.0,
                    help="start no new step after this many minutes (10)")
    ap.add_argument("--relay", action="store_true",
                    help="softswitch: relay every call's media (SS_MEDIAPROXYMODE On); "
                         "4 relay ports per call")
    ap.add_argument("--media-ports", default="40000-49999",
                    help="softswitch relay port range (40000-49999: 2500 relayed calls)")
    add_code_and_workdir(ap)
    args = ap.parse_args(argv)
    if not have_sipp():
        return 2
    ladder = sorted(int(n) for n in args.ladder.split(",") if n.strip())
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    root.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now().astimezone()
    t_start = time.monotonic()
    deadline = t_start + args.budget_min * 60
    code_root, code = resolve_code(args.code, root)
    log(f"concurrency bench: ladder {ladder}, hold {args.hold} s, ramp {args.rate} cps, "
        f"work dir {root}")
    log(f"machine: {machine()}; softswitch code: {code}")
    steps: list[Step] = []
    best: dict[str, int] = {}
    notes: dict[str, str] = {}
    no = 0
    for name in wanted:
        system: Any
        if name == "softswitch":
            system = SoftswitchSystem(
                root / "softswitch", code_root=code_root,
                params={"SS_MEDIAPROXYMODE": "On"} if args.relay else {},
                extra_args=["--media-ports", args.media_ports])
        elif name == "sippy":
            if not cps.sippy_available():
                notes[name] = "not importable (pip install sippy==2.5.0)"
                continue
            system = SippySystem(root / "sippy")
        else:
            raise SystemExit(f"unknown system {name}")
        system.start()
        try:
            best[system.name] = 0
            for calls in ladder:
                if time.monotonic() > deadline:
                    notes[system.name] = f"time budget spent before {calls} calls"
                    break
                no += 1
                step = run_step(root, system, calls, args.rate, args.hold, no)
                steps.append(step)
                if not step.clean:
                    break
                best[system.name] = calls
        finally:
            system.stop()

    elapsed = (time.monotonic() - t_start) / 60
    print()
    print(f"# simultaneous calls held {args.hold} s (ramp {args.rate} cps"
          f"{', softswitch relaying media' if args.relay else ''}), "
          f"{started:%Y-%m-%d %H:%M %Z}, {elapsed:.1f} min")
    print(f"# machine: {machine()}")
    print(f"# softswitch code: {code}")
    print()
    print("| system | calls | result | RSS idle -> all up, MB | KiB per call | "
          "KiB per call incl. relay workers | relay ports in use |")
    print("|---|---|---|---|---|---|---|")
    for st in steps:
        mem = "-" if st.up_main_kib is None else (
            f"{st.idle_main_kib / 1024:.1f} -> {st.up_main_kib / 1024:.1f}")
        result = "clean" if st.clean else "FAIL: " + "; ".join(st.reasons)[:120]
        total = "-" if st.kib_per_call_total is None or st.system == "Sippy B2BUA 2.5.0" \
            else f"{st.kib_per_call_total:.1f}"
        ports = "-" if st.relay_ports_in_use is None else str(st.relay_ports_in_use)
        per = "-" if st.kib_per_call_main is None else f"{st.kib_per_call_main:.1f}"
        print(f"| {st.system} | {st.calls} | {result} | {mem} | {per} | {total} | {ports} |")
    print()
    for name, n in best.items():
        top = " (the top of the ladder)" if n == ladder[-1] else ""
        print(f"{name}: most calls held with no failure = {n}{top}"
              + (f"; {notes[name]}" if name in notes else ""))
    ss = best.get("softswitch")
    sp = best.get("Sippy B2BUA 2.5.0")
    if ss and sp:
        print(f"softswitch / Sippy, most calls held = {ss} / {sp} = {ss / sp:.2f}")
    # Memory per call at the largest N both held cleanly: the comparison at equal load.
    common = [n for n in ladder
              if any(s.calls == n and s.clean and s.system == "softswitch" for s in steps)
              and any(s.calls == n and s.clean and s.system.startswith("Sippy") for s in steps)]
    if common:
        n = common[-1]
        a = next(s for s in steps if s.calls == n and s.system == "softswitch")
        b = next(s for s in steps if s.calls == n and s.system.startswith("Sippy"))
        if a.kib_per_call_main and b.kib_per_call_main:
            print(f"memory per call at {n} calls, softswitch engine / Sippy = "
                  f"{a.kib_per_call_main:.1f} / {b.kib_per_call_main:.1f} KiB = "
                  f"{a.kib_per_call_main / b.kib_per_call_main:.2f}")
    for name, note in notes.items():
        if name not in best:
            print(f"{name}: {note}")
    out = root / "results.json"
    out.write_text(json.dumps({
        "started": started.isoformat(), "machine": machine(), "code": code,
        "hold_s": args.hold, "rate": args.rate, "ladder": ladder, "best": best,
        "notes": notes, "steps": [asdict(s) for s in steps]}, indent=1))
    print(f"\nall steps and files: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
