"""``softswitch lab up|down|status|call`` and ``softswitch lab cluster ...``: the labs of
``docs/lab.md`` (as root).

    softswitch lab up [--state-dir var/lab] [--encryption-mode 3] [--keepalive-period 10]
    softswitch lab call [--to 4420001] [--hold 3] [--json]
    softswitch lab status
    softswitch lab down
    softswitch lab cluster up [--state-dir var/lab-cluster] [--nodes 3] [--capacity N]
    softswitch lab cluster call [--to 4420001] [--hold 3] [--json]
    softswitch lab cluster load [--rate 30] [--seconds 10] [--hold 2] [--json]
    softswitch lab cluster kill NODE | start NODE | status | down

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

from b2bua.lab import cluster_plan, plan
from b2bua.lab.state import DEFAULT_STATE_DIR, State

CLUSTER_STATE_DIR = Path("var/lab-cluster")


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
    _register_cluster(lab_sub)


def _register_cluster(lab_sub: Any) -> None:
    cluster = lab_sub.add_parser("cluster", help="nodes behind the kamailio edge sharing "
                                                 "PostgreSQL and Redis (docs/lab.md)")
    sub = cluster.add_subparsers(dest="cluster_command", required=True)

    def leaf(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=text)
        parser.add_argument("--state-dir", type=Path, default=CLUSTER_STATE_DIR,
                            help=f"pid files, logs, lab.json (default {CLUSTER_STATE_DIR})")
        return parser

    nodes = [h.name for h in cluster_plan.NODES]
    up = leaf("up", "build the cluster lab (tearing down any previous one)")
    up.add_argument("--nodes", type=int, choices=range(1, len(nodes) + 1), default=3,
                    help="softswitch nodes behind the edge (default 3)")
    up.add_argument("--capacity", type=int, default=None,
                    help="the customer trunk's capacity, shared by the nodes (default none)")
    call = leaf("call", "one call from the customer trunk through the edge")
    call.add_argument("--to", default=cluster_plan.VENDOR_NUMBER,
                      help=f"{cluster_plan.VENDOR_NUMBER} (default) goes to the vendor, "
                           f"{cluster_plan.PHONE_USER} to the phone")
    call.add_argument("--hold", type=float, default=3.0, help="seconds up, with RTP")
    call.add_argument("--timeout", type=float, default=30.0, help="bound on the call, s")
    call.add_argument("--json", action="store_true")
    load = leaf("load", "calls at a rate through the edge; their CDRs by node and code")
    load.add_argument("--rate", type=float, default=30.0, help="calls/s (default 30)")
    load.add_argument("--seconds", type=float, default=10.0, help="for how long (default 10)")
    load.add_argument("--hold", type=float, default=2.0, help="each call up, s (default 2)")
    load.add_argument("--json", action="store_true")
    for name, text in (("kill", "cut a node's power (SIGKILL)"),
                       ("start", "start a node again")):
        leaf(name, text).add_argument("node", choices=nodes)
    leaf("status", "what is up, and the cluster as a node sees it")
    leaf("down", "stop everything and remove the namespaces")


def run(args: argparse.Namespace) -> int:
    from b2bua.lab.lifecycle import LabError

    if args.lab_command == "cluster":
        try:
            return _cluster(State(args.state_dir), args)
        except LabError as exc:
            print(f"softswitch lab cluster {args.cluster_command}: {exc}", file=sys.stderr)
            return 1
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


def _cluster(state: State, args: argparse.Namespace) -> int:
    from b2bua.lab import call, cluster, lifecycle
    from b2bua.lab.api import ApiError

    command = args.cluster_command
    if command == "down":
        lifecycle.check_root()
        done = cluster.down(state)
        print("\n".join([*done, "cluster lab down" if done else
                          "cluster lab down (nothing was up)"]))
        return 0
    if command == "status":
        lifecycle.check_root()
        healthy, lines = cluster.status(state)
        print("\n".join(lines))
        return 0 if healthy else 1
    cluster.check_host()
    try:
        if command == "up":
            cluster.up(state, cluster.ClusterOptions(args.nodes, args.capacity), _say)
            print(f"cluster lab up; details in {state.info_path}")
            return 0
        if command == "kill":
            print(cluster.kill(state, args.node))
            return 0
        if command == "start":
            cluster.start_node(state, args.node, cluster.read_info(state)["token"])
            print(f"node {args.node} started")
            return 0
        if command == "call":
            result = cluster.place_call(state, args.to, args.hold, args.timeout)
            if args.json:
                print(json.dumps(result.as_json(), indent=2, sort_keys=True))
            else:
                print(call.describe(result, cluster_plan.CUSTOMER.address, "cluster"))
            return 0 if result.ok else 1
        loaded = cluster.load(state, args.rate, args.seconds, args.hold)
    except ApiError as exc:
        raise lifecycle.LabError(str(exc)) from None
    if args.json:
        print(json.dumps(loaded.as_json(), indent=2, sort_keys=True))
    else:
        customer = loaded.at_customer
        print(f"{loaded.offered} calls offered: {customer.get('successful', '?')} completed, "
              f"{customer.get('failed', '?')} failed at the customer (sipp exit "
              f"{loaded.sipp_exit}, logs in {loaded.log_dir})\n{len(loaded.cdrs)} CDRs; by "
              f"node {loaded.by_node}; by final code {loaded.by_code}")
    return 0 if len(loaded.cdrs) == loaded.offered else 1


def _state_arg(state: State) -> str:
    return "" if state.root == DEFAULT_STATE_DIR.resolve() else f" --state-dir {state.root}"


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"lab": run}
