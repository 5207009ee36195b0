"""``softswitch lab up|down|status|call``: the lab of ``docs/lab.md`` (as root).

    softswitch lab up [--state-dir var/lab] [--encryption-mode 3] [--keepalive-period 10]
    softswitch lab call [--to 4420001] [--hold 3] [--json]
    softswitch lab status
    softswitch lab down

Exit status: 0 done (``status``: the whole lab is up; ``call``: the call was answered and
its CDR says 200), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from b2bua.lab import plan
from b2bua.lab.state import DEFAULT_STATE_DIR, State


def register(sub: Any) -> None:
    """Add the ``lab`` command to ``softswitch``."""
    lab = sub.add_parser("lab", help="a carrier network on this machine (network namespaces; "
                                     "root): docs/lab.md")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)

    def leaf(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = lab_sub.add_parser(name, help=text)
        parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                            help=f"pid files, databases, logs, lab.json (default "
                                 f"{DEFAULT_STATE_DIR})")
        return parser

    up = leaf("up", "build the lab (tearing down any previous one) and start its peers")
    up.add_argument("--encryption-mode", type=int, choices=sorted(plan.CIPHER_NAMES),
                    default=3, help="SS_RTPENCRYPTIONMODE between A and B: 1 XOR, 2 RC4, "
                                    "3 AES128 (default 3)")
    up.add_argument("--keepalive-period", type=int, default=plan.KEEPALIVE_PERIOD,
                    help=f"SS_SIP_NAT_KEEP_ALIVE_PERIOD on A, s (default "
                         f"{plan.KEEPALIVE_PERIOD})")
    leaf("down", "stop the lab's processes and remove its namespaces")
    leaf("status", "show what is up")
    call = leaf("call", "place one scripted call from the customer trunk and show its CDRs")
    call.add_argument("--to", default=plan.VENDOR_NUMBER,
                      help=f"number to call: {plan.VENDOR_NUMBER} (default) goes to the "
                           f"vendors, {plan.PHONE_USER} to the phone behind NAT")
    call.add_argument("--hold", type=float, default=3.0,
                      help="seconds the call stays up with RTP (default 3)")
    call.add_argument("--timeout", type=float, default=30.0,
                      help="bound on the call's signalling, s (default 30)")
    call.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from b2bua.lab.lifecycle import LabError

    state = State(args.state_dir)
    commands: dict[str, Callable[[State, argparse.Namespace], int]] = {
        "up": _up, "down": _down, "status": _status, "call": _call}
    try:
        return commands[args.lab_command](state, args)
    except LabError as exc:
        print(f"softswitch lab {args.lab_command}: {exc}", file=sys.stderr)
        return 1


def _say(line: str) -> None:
    print(line, flush=True)


def _up(state: State, args: argparse.Namespace) -> int:
    from b2bua.lab import lifecycle

    if args.keepalive_period < 10:
        raise lifecycle.LabError("--keepalive-period is at least 10 s")
    options = lifecycle.UpOptions(args.encryption_mode, args.keepalive_period)
    lifecycle.up(state, options, _say)
    print(f"lab up; details in {state.info_path}; place a call with "
          f"`softswitch lab call{_state_arg(state)}`")
    return 0


def _down(state: State, args: argparse.Namespace) -> int:
    from b2bua.lab import lifecycle

    lifecycle.check_root()
    done = lifecycle.down(state)
    for line in done:
        print(line)
    print("lab down" if done else "lab down (nothing was up)")
    return 0


def _status(state: State, args: argparse.Namespace) -> int:
    from b2bua.lab import lifecycle

    lifecycle.check_root()
    all_up, lines = lifecycle.status(state)
    print("\n".join(lines))
    return 0 if all_up else 1


def _call(state: State, args: argparse.Namespace) -> int:
    from b2bua.lab import call, lifecycle
    from b2bua.lab.api import Api, ApiError

    lifecycle.check_host()
    info = state.read_info()
    if info is None:
        raise lifecycle.LabError(f"no lab is up here ({state.info_path} missing): "
                                 f"run `softswitch lab up{_state_arg(state)}` first")
    a_api = Api(info["a"]["api"], info["a"]["token"])
    b_api = Api(info["b"]["api"], info["b"]["token"])
    try:
        result = call.place(state, a_api, b_api, args.to, args.hold, args.timeout)
    except ApiError as exc:
        raise lifecycle.LabError(str(exc)) from None
    if args.json:
        print(json.dumps(result.as_json(), indent=2, sort_keys=True))
    else:
        print(call.describe(result))
    return 0 if result.ok else 1


def _state_arg(state: State) -> str:
    return "" if state.root == DEFAULT_STATE_DIR.resolve() else f" --state-dir {state.root}"


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"lab": run}
