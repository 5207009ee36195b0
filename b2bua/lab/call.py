"""The scripted call: sipp in the customer namespace places one call through softswitch
A, playing a tone as RTP; then the call's CDR on A (with its attempts: the dead vendor's
timeout, then softswitch B) and on B (when the call went there) are read back through
the APIs.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b2bua.lab import peers, plan
from b2bua.lab.api import Api, ApiError, wait_for
from b2bua.lab.assets import TONE
from b2bua.lab.state import State

CDR_WAIT = 10.0


@dataclass
class CallResult:
    number: str
    sipp_exit: int
    log_dir: Path
    cdr: dict[str, Any] | None = None
    b_cdr: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.sipp_exit == 0 and self.cdr is not None
                and self.cdr.get("final_code") == 200)

    def as_json(self) -> dict[str, Any]:
        return {"number": self.number, "ok": self.ok, "sipp_exit": self.sipp_exit,
                "log_dir": str(self.log_dir), "cdr": self.cdr, "b_cdr": self.b_cdr,
                "errors": self.errors}


def last_cdr_id(api: Api) -> int:
    items = api.get("/api/v1/cdrs?tail=1")["items"]
    return int(items[-1]["id"]) if items else 0


def new_cdr(api: Api, after: int, timeout: float = CDR_WAIT) -> dict[str, Any] | None:
    """The first CDR written after id ``after``, with its attempts."""

    def fetch() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = api.get(f"/api/v1/cdrs?after_id={after}&limit=1")["items"]
        return items

    items = wait_for(fetch, timeout)
    if not items:
        return None
    detail: dict[str, Any] = api.get(f"/api/v1/cdrs/{items[0]['id']}")
    return detail


def place(state: State, a_api: Api, b_api: Api, number: str, hold: float,
          timeout: float) -> CallResult:
    """One call from the customer trunk to ``number``; sipp hangs up after ``hold`` s."""
    a_after = last_cdr_id(a_api)
    try:
        b_after: int | None = last_cdr_id(b_api)
    except ApiError:
        b_after = None
    run_dir = state.log_dir / f"call-{time.strftime('%Y%m%d-%H%M%S')}-{number}"
    run_dir.mkdir(parents=True, exist_ok=True)
    assets = state.asset_dir
    (run_dir / TONE).write_bytes((assets / TONE).read_bytes())
    argv = [
        "sipp", "-sf", str(assets / "customer_call.xml"),
        "-i", plan.CUSTOMER_ADDR, "-p", str(plan.SIP_PORT),
        "-mi", plan.CUSTOMER_ADDR, "-mp", str(plan.RTP_PORT),
        "-m", "1", "-s", number, "-d", str(int(hold * 1000)),
        "-timeout", f"{int(timeout)}s", "-timeout_error", "-nostdin",
        "-trace_err", "-error_file", str(run_dir / "errors.log"),
        "-trace_msg", "-message_file", str(run_dir / "messages.log"),
        "-trace_stat", "-stf", str(run_dir / "stats.csv"),
        f"{plan.A_ADDR}:{plan.SIP_PORT}",
    ]
    proc = peers.start(state, "call", argv, namespace=plan.CUST_NS, cwd=run_dir,
                       stdout=run_dir / "sipp.out")
    try:
        code = proc.wait(timeout + 15)
    except subprocess.TimeoutExpired:
        peers.stop(state, "call", timeout=2)
        code = -1
    finally:
        state.pid_file("call").unlink(missing_ok=True)
    result = CallResult(number, code, run_dir)
    try:
        result.cdr = new_cdr(a_api, a_after)
    except ApiError as exc:
        result.errors.append(f"softswitch A: {exc}")
    if result.cdr is None:
        result.errors.append("softswitch A wrote no CDR for the call")
    went_to_b = any(att.get("routing_gateway") == "softswitch-b"
                    for att in (result.cdr or {}).get("attempts", []))
    if went_to_b and b_after is not None:
        try:
            result.b_cdr = new_cdr(b_api, b_after)
        except ApiError as exc:
            result.errors.append(f"softswitch B: {exc}")
    return result


def describe(result: CallResult, customer: str = plan.CUSTOMER_ADDR,
             label: str = "softswitch A") -> str:
    """The outcome for an operator."""
    lines = [f"call to {result.number} from the customer trunk {customer}: "
             f"{'answered' if result.ok else 'FAILED'} (sipp exit {result.sipp_exit}, "
             f"logs in {result.log_dir})"]
    if result.cdr is not None:
        lines += _describe_cdr(label, result.cdr)
    if result.b_cdr is not None:
        lines += _describe_cdr("softswitch B", result.b_cdr)
    lines += [f"error: {e}" for e in result.errors]
    return "\n".join(lines)


def _describe_cdr(label: str, cdr: dict[str, Any]) -> list[str]:
    source = cdr.get("mapping_gateway") or cdr.get("phone") or cdr.get("source")
    target = cdr.get("callee_phone") and f"phone {cdr['callee_phone']}"
    target = target or cdr.get("routing_gateway") or "-"
    node = f" (node {cdr['node']})" if cdr.get("node") else ""
    lines = [f"{label} CDR {cdr['id']}{node}: {cdr.get('final_code')} "
             f"{cdr.get('final_reason') or ''} from {source} to {target}, "
             f"{cdr.get('duration') or 0:.1f} s, hangup by {cdr.get('hangup_by')}"]
    phone = f"phone {cdr['callee_phone']}" if cdr.get("callee_phone") else "-"
    for att in cdr.get("attempts", []):
        lines.append(f"  attempt {att.get('seq')}: {att.get('routing_gateway') or phone:<14}"
                     f" {att.get('outcome') or '-':<15} final {att.get('final_code') or '-'}")
    lines.append(f"  media: {_describe_media(cdr.get('media'))}")
    return lines


def _describe_media(raw: Any) -> str:
    try:
        media = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        media = None
    if not isinstance(media, dict):
        return "-"
    if not media.get("relayed"):
        return "not relayed"
    mode = int(media.get("encryption_mode") or 0)
    legs = [name for name in ("caller", "callee") if media.get(f"{name}_encrypted")]
    cipher = (f"{plan.CIPHER_NAMES.get(mode, mode)} (mode {mode}) on the {' and '.join(legs)}"
              f" leg" if mode else "no encryption")
    return (f"relayed, {cipher}; caller->callee {media.get('caller_to_callee_packets')} "
            f"packets, callee->caller {media.get('callee_to_caller_packets')} packets")
