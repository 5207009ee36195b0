"""The lab's processes: started detached (own session, output to a log), recorded in
pid files, and stopped only by the pids recorded there.

A pid file holds ``PID START_TIME`` (``/proc/PID/stat`` field 22): a pid the kernel has
since reused for another process does not match and is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from b2bua.lab.state import State

STOP_TIMEOUT = 15.0
KILL_TIMEOUT = 5.0
POLL = 0.1


@dataclass(frozen=True, slots=True)
class Running:
    name: str
    pid: int
    start_time: int


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None when it is gone (or a
    zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    # fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_running(proc: Running) -> bool:
    return start_time(proc.pid) == proc.start_time


def start(state: State, name: str, argv: list[str], *, namespace: str | None = None,
          cwd: Path | None = None, stdout: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` (inside ``namespace``) detached from the caller, log to
    ``logs/NAME.log`` (stdout to ``stdout`` when given), and write its pid file."""
    cmd = ["ip", "netns", "exec", namespace, *argv] if namespace else list(argv)
    log_path = state.log(name)
    with open(log_path, "ab") as log:
        out = open(stdout, "ab") if stdout else log  # noqa: SIM115 - closed below
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=log,
                                    cwd=cwd, start_new_session=True)
        finally:
            if stdout:
                out.close()
    record(state, name, proc.pid)
    return proc


def record(state: State, name: str, pid: int) -> None:
    """Write NAME's pid file (``ip netns exec`` execs its command: same pid)."""
    ticks = None
    for _ in range(20):  # the exec may not have happened yet: /proc shows it at once
        ticks = start_time(pid)
        if ticks is not None:
            break
        time.sleep(0.01)
    state.pid_dir.mkdir(parents=True, exist_ok=True)
    state.pid_file(name).write_text(f"{pid} {ticks or 0}\n")


def read(state: State, name: str) -> Running | None:
    try:
        pid_text, ticks_text = state.pid_file(name).read_text().split()[:2]
        return Running(name, int(pid_text), int(ticks_text))
    except (OSError, ValueError):
        return None


def recorded(state: State) -> list[Running]:
    """Every process with a pid file, in name order."""
    if not state.pid_dir.is_dir():
        return []
    found = []
    for path in sorted(state.pid_dir.glob("*.pid")):
        proc = read(state, path.stem)
        if proc is not None:
            found.append(proc)
    return found


def stop(state: State, name: str, timeout: float = STOP_TIMEOUT) -> str | None:
    """SIGTERM the recorded process, SIGKILL it after ``timeout``; remove its pid file.
    Returns what was done, or None when nothing was running."""
    proc = _forget(state, name)
    if proc is None:
        return None
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    if _wait_gone(proc, timeout):
        return f"stopped {name} (pid {proc.pid})"
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return f"stopped {name} (pid {proc.pid})"
    _wait_gone(proc, KILL_TIMEOUT)
    return f"killed {name} (pid {proc.pid}) after {timeout:.0f} s"


def kill(state: State, name: str) -> str | None:
    """SIGKILL the recorded process at once (a node's power cut); remove its pid file.
    Returns what was done, or None when nothing was running."""
    proc = _forget(state, name)
    if proc is None:
        return None
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    _wait_gone(proc, KILL_TIMEOUT)
    return f"killed {name} (pid {proc.pid})"


def _forget(state: State, name: str) -> Running | None:
    """NAME's pid file removed; the process it named, if that one still runs."""
    proc = read(state, name)
    state.pid_file(name).unlink(missing_ok=True)
    return proc if proc is not None and is_running(proc) else None


def _wait_gone(proc: Running, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(proc):
            return True
        time.sleep(POLL)
    return not is_running(proc)


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
