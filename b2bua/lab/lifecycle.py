"""``lab up``, ``lab down`` and ``lab status``: the topology, the processes in it, and
the configuration of both softswitches, in that order (and the reverse)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from b2bua.lab import assets, peers, plan, provision, topology
from b2bua.lab.api import Api, ApiError, wait_for
from b2bua.lab.state import State

T = TypeVar("T")
START_TIMEOUT = 40.0
REGISTER_TIMEOUT = 20.0
PHONE_LIFETIME = 7 * 86400  # s; the pjsua2 peer's own bound on its run time
# Stopped in this order: the phone unregisters through A, so it goes before A.
STOP_ORDER = ("call", "phone", "a", "b", "vendor")
PEER_SCRIPT = Path(__file__).resolve().parents[2] / "pjbuild" / "peer.py"
ACTIVE_MARKER = Path("/run/softswitch-lab")  # the state folder of the lab that is up


class LabError(Exception):
    """The lab could not do what was asked; the message says why."""


@dataclass(frozen=True, slots=True)
class UpOptions:
    encryption_mode: int = 3
    keepalive_period: int = plan.KEEPALIVE_PERIOD


def check_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab builds network namespaces: run it as root")


def check_host() -> None:
    """Root and the tools the lab runs."""
    check_root()
    missing = [tool for tool in ("ip", "iptables", "sysctl", "sipp") if not shutil.which(tool)]
    if missing:
        raise LabError(f"missing {', '.join(missing)}: run ./scripts/setup (as root)")
    if not PEER_SCRIPT.is_file():
        raise LabError(f"the phone needs the pjsua2 peer {PEER_SCRIPT}: run the lab from a "
                       "checkout of the project after ./scripts/setup")


def up(state: State, options: UpOptions, say: Callable[[str], None]) -> dict[str, Any]:
    """Build the lab; on any failure, tear down what was built and raise ``LabError``."""
    check_host()
    return build_or_clean(lambda: _up(state, options, say), lambda: down(state), say)


# What a failed build raises, reported to the operator as the lab's error.
BUILD_ERRORS: tuple[type[BaseException], ...] = (
    LabError, topology.TopologyError, provision.ProvisionError, ApiError, OSError,
    subprocess.SubprocessError)


def build_or_clean(build: Callable[[], T], tear_down: Callable[[], list[str]],
                   say: Callable[[str], None],
                   errors: tuple[type[BaseException], ...] = BUILD_ERRORS) -> T:
    """Tear down any leftover, then ``build``; on any failure tear down what was built
    and raise ``LabError`` (an error of ``errors``) or the failure itself."""
    for line in tear_down():
        say(f"leftover: {line}")
    try:
        return build()
    except BaseException as exc:  # Ctrl-C included: never leave half a lab behind
        for line in tear_down():
            say(f"cleanup: {line}")
        if isinstance(exc, errors):
            raise LabError(str(exc)) from None
        raise


def _up(state: State, options: UpOptions, say: Callable[[str], None]) -> dict[str, Any]:
    state.prepare()
    with contextlib.suppress(OSError):
        ACTIVE_MARKER.write_text(f"{state.root.resolve()}\n")
    assets.install(state.asset_dir)
    topology.build()
    say(f"network: bridge {plan.BRIDGE} ({plan.A_ADDR}), namespaces "
        f"{', '.join(plan.NAMESPACES)}")
    a_token = provision.create_token(state.db("a"))
    b_token = provision.create_token(state.db("b"))
    a_proc = peers.start(state, "a", _softswitch(state, "a", plan.A_ADDR,
                                                 f"{plan.A_API_HOST}:{plan.A_API_PORT}",
                                                 plan.A_MEDIA_PORTS),
                         cwd=state.root / "a")
    b_proc = peers.start(state, "b", _softswitch(state, "b", plan.B_ADDR,
                                                 f"{plan.B_API_HOST}:{plan.B_API_PORT}",
                                                 plan.B_MEDIA_PORTS),
                         namespace=plan.SW2_NS, cwd=state.root / "b")
    vendor = peers.start(state, "vendor", _vendor_argv(state), namespace=plan.VENDOR_NS,
                         cwd=state.asset_dir, stdout=Path(os.devnull))
    a_api = Api(plan.a_api_base(), a_token)
    b_api = Api(plan.b_api_base(), b_token)
    _wait_started("softswitch A", a_proc, a_api, state.log("a"))
    _wait_started("softswitch B", b_proc, b_api, state.log("b"))
    if vendor.poll() is not None:
        raise LabError(f"the vendor (sipp) exited {vendor.returncode}:\n"
                       f"{peers.tail(state.log('vendor'))}")
    say(f"softswitch A: SIP {plan.A_ADDR}:{plan.SIP_PORT}, API {plan.a_api_base()}")
    say(f"softswitch B: SIP {plan.B_ADDR}:{plan.SIP_PORT}, API {plan.b_api_base()} "
        f"(namespace {plan.SW2_NS})")
    provision.configure_a(a_api, options.encryption_mode, options.keepalive_period)
    provision.configure_b(b_api, options.encryption_mode)
    say(f"configured: A routes to dead-vendor ({plan.DEAD_ADDR}) then softswitch-b; "
        f"A <-> B media {plan.CIPHER_NAMES[options.encryption_mode]}")
    phone = peers.start(state, "phone", _phone_argv(), namespace=plan.PHONE_NS,
                        cwd=state.root, stdout=state.log_dir / "phone-events.jsonl")
    registration = wait_for(lambda: _phone_registration(a_api), REGISTER_TIMEOUT)
    if not registration:
        alive = "running" if phone.poll() is None else f"exited {phone.returncode}"
        raise LabError(f"phone {plan.PHONE_USER} did not register within "
                       f"{REGISTER_TIMEOUT:.0f} s ({alive}):\n{peers.tail(state.log('phone'))}")
    say(f"phone {plan.PHONE_USER} ({plan.PHONE_ADDR}) registered from "
        f"{registration['source']} (behind NAT: {registration['nat']})")
    info = _info(state, options, a_token, b_token)
    state.write_info(info)
    return info


def _softswitch(state: State, name: str, sip: str, api: str, media: str) -> list[str]:
    return [sys.executable, "-m", "b2bua.cli", "run", "--db", str(state.db(name).resolve()),
            "--sip-listen", f"{sip}:{plan.SIP_PORT}", "--api-listen", api,
            "--media-ports", media, "--public-address", sip]


def _vendor_argv(state: State) -> list[str]:
    logs = state.log_dir.resolve()
    return ["sipp", "-sf", str(state.asset_dir.resolve() / "vendor_answer.xml"),
            "-i", plan.VENDOR_ADDR, "-p", str(plan.SIP_PORT),
            "-mi", plan.VENDOR_ADDR, "-mp", str(plan.RTP_PORT), "-rtp_echo",
            "-nostdin", "-trace_err", "-error_file", str(logs / "vendor-errors.log"),
            "-trace_msg", "-message_file", str(logs / "vendor-messages.log")]


def _phone_argv() -> list[str]:
    return [sys.executable, str(PEER_SCRIPT), "register",
            "--local", f"{plan.PHONE_ADDR}:{plan.SIP_PORT}",
            "--registrar", f"sip:{plan.A_ADDR}:{plan.SIP_PORT}",
            "--username", plan.PHONE_USER, "--password", plan.PHONE_PASSWORD,
            "--expires", "300", "--answer", "--hold", str(PHONE_LIFETIME),
            "--timeout", str(PHONE_LIFETIME), "--no-nat-rewrite"]


def _wait_started(label: str, proc: subprocess.Popen[bytes], api: Api, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"{label} exited {proc.returncode}:\n{peers.tail(log)}")
        if api.engine_up():
            return
        time.sleep(0.2)
    raise LabError(f"{label} did not start within {START_TIMEOUT:.0f} s:\n{peers.tail(log)}")


def _phone_registration(api: Api) -> dict[str, Any] | None:
    items = api.get(f"/api/v1/registrations?username={plan.PHONE_USER}")["items"]
    return items[0] if items else None


def _info(state: State, options: UpOptions, a_token: str, b_token: str) -> dict[str, Any]:
    processes = {p.name: p.pid for p in peers.recorded(state)}
    mode = options.encryption_mode
    return {
        "state_dir": str(state.root.resolve()),
        "started_at": time.time(),
        "a": {"sip": f"{plan.A_ADDR}:{plan.SIP_PORT}", "api": plan.a_api_base(),
              "token": a_token, "db": str(state.db("a").resolve()),
              "media_ports": plan.A_MEDIA_PORTS},
        "b": {"sip": f"{plan.B_ADDR}:{plan.SIP_PORT}", "api": plan.b_api_base(),
              "token": b_token, "db": str(state.db("b").resolve()),
              "media_ports": plan.B_MEDIA_PORTS, "namespace": plan.SW2_NS},
        "customer": {"namespace": plan.CUST_NS, "address": plan.CUSTOMER_ADDR},
        "phone": {"namespace": plan.PHONE_NS, "address": plan.PHONE_ADDR,
                  "nat_namespace": plan.NAT_NS, "nat_public": plan.NAT_PUBLIC,
                  "username": plan.PHONE_USER, "password": plan.PHONE_PASSWORD},
        "dead_vendor": {"namespace": plan.DEAD_NS, "address": plan.DEAD_ADDR},
        "vendor": {"namespace": plan.VENDOR_NS, "address": plan.VENDOR_ADDR},
        "encryption": {"mode": mode, "cipher": plan.CIPHER_NAMES[mode],
                       "key": plan.CIPHER_KEYS[mode]},
        "keepalive_period": options.keepalive_period,
        "bridge": plan.BRIDGE,
        "namespaces": list(plan.NAMESPACES),
        "processes": processes,
    }


def down(state: State) -> list[str]:
    """Stop the lab's processes (by their pid files), remove the topology and
    ``lab.json``. Nothing up: nothing to do, no error.

    A lab built from another state folder (the machine has one set of lab names) is
    stopped too: ``ACTIVE_MARKER`` names the folder of the last ``lab up``."""
    done: list[str] = []
    for folder in _states(state):
        names = [p.name for p in peers.recorded(folder)]
        for name in [*STOP_ORDER, *sorted(set(names) - set(STOP_ORDER))]:
            if name in names:
                outcome = peers.stop(folder, name)
                if outcome:
                    done.append(outcome if folder == state else f"{outcome} in {folder.root}")
        if folder.info_path.exists():
            folder.clear_info()
    done += topology.teardown()
    ACTIVE_MARKER.unlink(missing_ok=True)
    return done


def _states(state: State) -> list[State]:
    try:
        active = Path(ACTIVE_MARKER.read_text().strip())
    except OSError:
        return [state]
    if not active.is_dir() or active == state.root.resolve():
        return [state]
    return [state, State(active)]


def status(state: State) -> tuple[bool, list[str]]:
    """Whether the whole lab is up, and what is (or is not) up, for an operator."""
    info = state.read_info()
    namespaces = topology.existing_namespaces()
    procs = peers.recorded(state)
    lines = [f"state: {state.root.resolve()} ({'lab.json present' if info else 'no lab.json'})",
             f"namespaces: {' '.join(namespaces) or '-'} "
             f"({len(namespaces)}/{len(plan.NAMESPACES)})",
             f"root links: {' '.join(topology.root_links()) or '-'}"]
    running = {p.name: peers.is_running(p) for p in procs}
    lines.append("processes: " + (", ".join(
        f"{p.name} {p.pid} {'running' if running[p.name] else 'GONE'}" for p in procs) or "-"))
    healthy = True
    if info:
        a_api = Api(info["a"]["api"], info["a"]["token"], timeout=3)
        b_api = Api(info["b"]["api"], info["b"]["token"], timeout=3)
        a_up, b_up = a_api.engine_up(), b_api.engine_up()
        healthy = a_up and b_up
        lines.append(f"softswitch A {info['a']['sip']}: engine {'up' if a_up else 'DOWN'}, "
                     f"API {info['a']['api']}")
        lines.append(f"softswitch B {info['b']['sip']}: engine {'up' if b_up else 'DOWN'}, "
                     f"API {info['b']['api']} (namespace {info['b']['namespace']})")
        if a_up:
            lines += _a_details(a_api)
    others = [other.root for other in _states(state) if other != state]
    if others:
        lines.append(f"the lab was brought up with --state-dir {others[0]}")
    all_up = (bool(info) and healthy and len(namespaces) == len(plan.NAMESPACES)
              and all(running.get(name) for name in ("a", "b", "vendor", "phone")))
    lines.insert(0, "lab: up" if all_up else ("lab: down" if not (info or namespaces or procs)
                                              else "lab: partly up"))
    return all_up, lines


def _a_details(api: Api) -> list[str]:
    lines = []
    try:
        regs = api.get("/api/v1/registrations")["items"]
        keepalive = api.get("/api/v1/keepalive")
        gateways = api.get("/api/v1/routing-gateways/status")
    except ApiError as exc:
        return [f"softswitch A: {exc}"]
    for reg in regs:
        lines.append(f"phone {reg['username']}: contact {reg['contact']} from {reg['source']}"
                     f" (behind NAT: {reg['nat']})")
    if not regs:
        lines.append("phone: not registered")
    lines.append("NAT keep-alive: " + ", ".join(
        f"{key} {keepalive[key]}" for key in ("cycles", "sent", "phones_last_cycle")
        if key in keepalive))
    for gw in gateways["items"]:
        lines.append(f"routing gateway {gw['name']}: {gw['current_calls']} calls now, "
                     f"{gw['total_calls']} since start")
    return lines
