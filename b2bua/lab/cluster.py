"""The cluster lab (docs/lab.md, "The cluster lab"): up to three softswitch nodes behind
the kamailio edge as shipped (``deploy/kamailio/edge.cfg``), sharing PostgreSQL and
Redis, with a customer trunk, a vendor and a phone, each in a network namespace of its
own (``cluster_plan.py``). ``up`` builds it and configures the cluster through node
n1's API as an operator would; ``call`` and ``load`` send calls through the edge;
``kill`` cuts a node's power (SIGKILL) and ``start`` brings it back; ``down`` removes
everything.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b2bua.lab import assets, call, cluster_net, peers, provision
from b2bua.lab import cluster_plan as plan
from b2bua.lab.api import Api, ApiError, wait_for
from b2bua.lab.lifecycle import BUILD_ERRORS, PEER_SCRIPT, LabError, build_or_clean, check_root
from b2bua.lab.state import State
from b2bua.storage.backend import StorageError, UnavailableError
from b2bua.storage.postgres import create_database

DEFAULT_STATE_DIR = Path("var/lab-cluster")
EDGE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "kamailio" / "edge.cfg"
START_TIMEOUT = 40.0
PHONE_LIFETIME = 7 * 86400
# Stopped in this order: traffic first, the nodes before the engines they share.
STOP_ORDER = ("load", "call", "phone", "n1", "n2", "n3", "edge", "vendor", "redis",
              "postgres")
PG_SETTINGS = {  # a lab's throwaway database: no durability, little memory
    "listen_addresses": plan.DATA.address, "fsync": "off", "synchronous_commit": "off",
    "full_page_writes": "off", "shared_buffers": "32MB", "max_connections": "100",
    "log_min_messages": "warning",
}


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    nodes: int = 3
    capacity: int | None = None  # the customer trunk's, shared by the nodes through Redis


def check_host() -> None:
    check_root()
    tools = ("ip", "sipp", "kamailio", "kamcmd", "redis-server", "setpriv")
    missing = [tool for tool in tools if not shutil.which(tool)]
    missing += [str(plan.PG_BIN / b) for b in ("initdb", "postgres")
                if not os.access(plan.PG_BIN / b, os.X_OK)]
    if missing:
        raise LabError(f"missing {', '.join(missing)}: run ./scripts/setup (as root)")
    if not EDGE_CONFIG.is_file() or not PEER_SCRIPT.is_file():
        raise LabError("the cluster lab runs from a checkout of the project (it needs "
                       f"{EDGE_CONFIG} and {PEER_SCRIPT}) after ./scripts/setup")


def up(state: State, options: ClusterOptions, say: Callable[[str], None]) -> dict[str, Any]:
    """Build the lab; on any failure tear down what was built and raise ``LabError``."""
    check_host()
    if not 1 <= options.nodes <= len(plan.NODES):
        raise LabError(f"--nodes is 1 to {len(plan.NODES)}")
    return build_or_clean(lambda: _up(state, options, say), lambda: down(state), say,
                          (*BUILD_ERRORS, StorageError))


def _up(state: State, options: ClusterOptions, say: Callable[[str], None]) -> dict[str, Any]:
    for folder in (state.pid_dir, state.log_dir, state.asset_dir, state.root / "edge",
                   state.root / "redis", *(state.root / h.name for h in plan.NODES)):
        folder.mkdir(parents=True, exist_ok=True)
    assets.install(state.asset_dir)
    cluster_net.build()
    say(f"network: bridge {plan.BRIDGE} ({plan.ROOT_ADDR}/{plan.PREFIX_LEN}), namespaces "
        f"{', '.join(h.namespace for h in plan.HOSTS)}")
    _start_postgres(state)
    _start_redis(state)
    say(f"PostgreSQL {plan.DATA.address}:{plan.PG_PORT}, Redis "
        f"{plan.DATA.address}:{plan.REDIS_PORT} (namespace {plan.DATA.namespace})")
    token = provision.create_token(plan.pg_url())
    nodes = plan.NODES[:options.nodes]
    for host in nodes:
        start_node(state, host.name, token)
        say(f"node {host.name}: SIP {host.address}:{plan.SIP_PORT}, API {plan.api_base(host)}")
    peers.start(state, "vendor", _vendor_argv(state), namespace=plan.VENDOR.namespace,
                cwd=state.asset_dir, stdout=Path(os.devnull))
    api = Api(plan.api_base(nodes[0]), token)
    _configure(api, options)
    for host in nodes:  # the configuration is in the shared database: every node has it
        if not wait_for(_configured(Api(plan.api_base(host), token)), 10):
            raise LabError(f"node {host.name} did not load the configuration")
    _start_edge(state, nodes)
    if not wait_for(lambda: set(dispatcher(state).values()) == {"AP"}
                    and len(dispatcher(state)) == len(nodes), 10):
        raise LabError(f"the edge does not see every node up: {dispatcher(state)}\n"
                       f"{peers.tail(state.log('edge'))}")
    say(f"edge {plan.edge_address()}: {len(nodes)} nodes active")
    peers.start(state, "phone", _phone_argv(), namespace=plan.PHONE.namespace,
                cwd=state.root, stdout=state.log_dir / "phone-events.jsonl")
    if not wait_for(lambda: api.get(f"/api/v1/registrations?username={plan.PHONE_USER}")
                    ["items"], 20):
        raise LabError(f"phone {plan.PHONE_USER} did not register through the edge:\n"
                       f"{peers.tail(state.log('phone'))}")
    say(f"phone {plan.PHONE_USER} ({plan.PHONE.address}) registered through the edge")
    info = {
        "state_dir": str(state.root.resolve()), "started_at": time.time(), "token": token,
        "nodes": {h.name: {"sip": f"{h.address}:{plan.SIP_PORT}", "api": plan.api_base(h),
                           "namespace": h.namespace} for h in nodes},
        "edge": plan.edge_address(), "database": plan.pg_url(), "redis": plan.redis_url(),
        "customer": plan.CUSTOMER.address, "vendor": f"{plan.VENDOR.address}:{plan.SIP_PORT}",
        "phone": {"username": plan.PHONE_USER, "password": plan.PHONE_PASSWORD,
                  "address": plan.PHONE.address},
        "capacity": options.capacity,
    }
    state.write_info(info)
    return info


# -- the shared engines ----------------------------------------------------------------


def _as_postgres() -> list[str]:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise LabError("no postgres user: run ./scripts/setup (the postgresql package "
                       "creates it)") from None
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups",
            "--reset-env", "--"]


def _start_postgres(state: State) -> None:
    """A new database cluster, its server in the data namespace, the lab's database."""
    user = pwd.getpwnam("postgres")
    shutil.rmtree(plan.PG_ROOT, ignore_errors=True)
    (plan.PG_ROOT / "socket").mkdir(parents=True)
    for path in (plan.PG_ROOT, plan.PG_ROOT / "socket"):
        os.chown(path, user.pw_uid, user.pw_gid)
    data = plan.PG_ROOT / "data"
    done = subprocess.run(
        [*_as_postgres(), str(plan.PG_BIN / "initdb"), "-D", str(data), "-U", plan.PG_USER,
         "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
        capture_output=True, text=True, timeout=120, cwd=plan.PG_ROOT, check=False)
    if done.returncode != 0:
        raise LabError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
    # Trust on the lab's own LAN only: nothing outside the namespaces can reach it.
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {plan.ROOT_ADDR}/{plan.PREFIX_LEN} trust\n")
    options = [f"--{name.replace('_', '-')}={value}" for name, value in PG_SETTINGS.items()]
    server = peers.start(state, "postgres", [
        *_as_postgres(), str(plan.PG_BIN / "postgres"), "-D", str(data),
        "-p", str(plan.PG_PORT), "-k", str(plan.PG_ROOT / "socket"), *options],
        namespace=plan.DATA.namespace, cwd=plan.PG_ROOT)

    def connected() -> bool:
        if server.poll() is not None:
            raise LabError(f"postgres exited {server.returncode}:\n"
                           f"{peers.tail(state.log('postgres'))}")
        try:
            create_database(plan.pg_admin_url(), plan.PG_DATABASE)
            return True
        except UnavailableError:
            return False

    if not wait_for(connected, 30):
        raise LabError(f"postgres did not start:\n{peers.tail(state.log('postgres'))}")


def _start_redis(state: State) -> None:
    server = peers.start(state, "redis", [
        "redis-server", "--bind", plan.DATA.address, "--port", str(plan.REDIS_PORT),
        "--save", "", "--appendonly", "no", "--protected-mode", "no",
        "--dir", str((state.root / "redis").resolve())], namespace=plan.DATA.namespace)

    def answers() -> bool:
        if server.poll() is not None:
            raise LabError(f"redis-server exited {server.returncode}:\n"
                           f"{peers.tail(state.log('redis'))}")
        try:
            with socket.create_connection((plan.DATA.address, plan.REDIS_PORT), 0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    if not wait_for(answers, 10):
        raise LabError(f"redis-server did not start:\n{peers.tail(state.log('redis'))}")


def _start_edge(state: State, nodes: tuple[plan.Host, ...]) -> None:
    folder = (state.root / "edge").resolve()
    rundir = folder / "run"
    rundir.mkdir(parents=True, exist_ok=True)
    node_list = folder / "nodes.list"
    node_list.write_text("".join(f"1 sip:{h.address}:{plan.SIP_PORT} 0 0\n" for h in nodes))
    text = EDGE_CONFIG.read_text()
    for name, value in (("LISTEN", plan.edge_address()), ("NODES_LIST", str(node_list)),
                        ("RUNDIR", str(rundir))):
        text = text.replace("{{" + name + "}}", value)
    config = folder / "edge.cfg"
    config.write_text(text)
    edge = peers.start(state, "edge", [
        "kamailio", "-f", str(config), "-DD", "-E", "-m", "32", "-M", "8",
        "-Y", str(rundir), "-P", str(rundir / "kamailio.pid")],
        namespace=plan.EDGE.namespace, cwd=folder)
    if not wait_for(lambda: edge.poll() is None and bool(dispatcher(state)), 15):
        raise LabError(f"kamailio did not start:\n{peers.tail(state.log('edge'))}")


def dispatcher(state: State) -> dict[str, str]:
    """Each node's URI at the edge and its dispatcher flags (``AP`` active, ``IP``
    inactive); empty when the edge does not answer."""
    control = (state.root / "edge" / "run" / "kamailio_ctl").resolve()
    try:
        out = subprocess.run(["kamcmd", "-s", f"unix:{control}", "dispatcher.list"],
                             capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    uris = [line.split(":", 1)[1].strip() for line in out.splitlines()
            if line.strip().startswith("URI:")]
    flags = [line.split(":", 1)[1].strip() for line in out.splitlines()
             if line.strip().startswith("FLAGS:")]
    return dict(zip(uris, flags, strict=False))


# -- the nodes -------------------------------------------------------------------------


def _node_argv(state: State, host: plan.Host) -> list[str]:
    return [sys.executable, "-m", "b2bua.cli", "run", "--db", plan.pg_url(),
            "--node", host.name, "--redis", plan.redis_url(),
            "--sip-listen", f"{host.address}:{plan.SIP_PORT}",
            "--api-listen", f"{host.address}:{plan.API_PORT}",
            "--media-ports", plan.MEDIA_PORTS, "--public-address", host.address,
            "--var-dir", str((state.root / host.name).resolve())]


def start_node(state: State, name: str, token: str) -> None:
    """Start node ``name`` (again) and wait until its engine answers."""
    host = plan.node(name)
    proc = peers.start(state, name, _node_argv(state, host), namespace=host.namespace,
                       cwd=state.root / name)
    api = Api(plan.api_base(host), token)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"node {name} exited {proc.returncode}:\n"
                           f"{peers.tail(state.log(name))}")
        if api.engine_up():
            return
        time.sleep(0.2)
    raise LabError(f"node {name} did not start within {START_TIMEOUT:.0f} s:\n"
                   f"{peers.tail(state.log(name))}")


def _configure(api: Api, options: ClusterOptions) -> None:
    """The cluster's configuration, through one node's API (it is the database's)."""
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [plan.CUSTOMER.address],
                                          "capacity": options.capacity})
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": plan.VENDOR.address,
                                          "port": plan.SIP_PORT})
    api.post("/api/v1/phones", {"username": plan.PHONE_USER, "password": plan.PHONE_PASSWORD})
    for name, value in (("SS_EDGE_ADDRESSES", plan.EDGE.address),
                        ("SS_OUTBOUND_PROXY", plan.edge_address()),
                        ("SS_REPLY_UNAUTHORIZED", "Off"),
                        ("SS_MEDIAPROXYMODE", "On")):
        api.put(f"/api/v1/parameters/{name}", {"value": value})


def _configured(api: Api) -> Callable[[], bool]:
    return lambda: bool(api.get("/api/v1/engine")["routing_gateways"] == 1)


def _vendor_argv(state: State) -> list[str]:
    logs = state.log_dir.resolve()
    return ["sipp", "-sf", str(state.asset_dir.resolve() / "vendor_answer.xml"),
            "-i", plan.VENDOR.address, "-p", str(plan.SIP_PORT),
            "-mi", plan.VENDOR.address, "-mp", str(plan.RTP_PORT), "-rtp_echo",
            "-nostdin", "-trace_err", "-error_file", str(logs / "vendor-errors.log")]


def _phone_argv() -> list[str]:
    return [sys.executable, str(PEER_SCRIPT), "register",
            "--local", f"{plan.PHONE.address}:{plan.SIP_PORT}",
            "--registrar", f"sip:{plan.edge_address()}",
            "--username", plan.PHONE_USER, "--password", plan.PHONE_PASSWORD,
            "--expires", "300", "--answer", "--hold", str(PHONE_LIFETIME),
            "--timeout", str(PHONE_LIFETIME), "--no-nat-rewrite"]


# -- what an operator does with it -----------------------------------------------------


def read_info(state: State) -> dict[str, Any]:
    info = state.read_info()
    if info is None:
        raise LabError(f"no cluster lab is up here ({state.info_path} missing): run "
                       "`softswitch lab cluster up` first")
    return info


def live_api(info: dict[str, Any]) -> Api:
    """The API of the first node whose engine answers (any node shows the cluster)."""
    for node in info["nodes"].values():
        api = Api(node["api"], info["token"], timeout=5)
        if api.engine_up():
            return api
    raise LabError("no node of the cluster answers")


@dataclass
class LoadResult:
    offered: int
    sipp_exit: int
    log_dir: Path
    cdrs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def at_customer(self) -> dict[str, int]:
        """The customer's own count (sipp's statistics): calls completed as scripted, and
        failed (refused, or ended by the switch: a node's calls when it died)."""
        try:
            header, *_, last = (self.log_dir / "stats.csv").read_text().splitlines()
        except (OSError, ValueError):
            return {}
        row = dict(zip(header.split(";"), last.split(";"), strict=False))
        return {name: int(row.get(f"{column}(C)", "0") or 0)
                for name, column in (("successful", "SuccessfulCall"),
                                     ("failed", "FailedCall"))}

    @property
    def by_node(self) -> dict[str, int]:
        return dict(sorted(Counter(str(c.get("node")) for c in self.cdrs).items()))

    @property
    def by_code(self) -> dict[int, int]:
        return dict(sorted(Counter(int(c.get("final_code") or 0) for c in self.cdrs).items()))

    def as_json(self) -> dict[str, Any]:
        return {"offered": self.offered, "sipp_exit": self.sipp_exit,
                "log_dir": str(self.log_dir), "cdrs": len(self.cdrs),
                "at_customer": self.at_customer,
                "by_node": self.by_node, "by_code": self.by_code}


def _sipp_customer(state: State, name: str, scenario: str, run_dir: Path,
                   extra: list[str], timeout: float) -> int:
    argv = ["sipp", "-sf", str(state.asset_dir.resolve() / scenario),
            "-i", plan.CUSTOMER.address, "-p", str(plan.SIP_PORT),
            "-mi", plan.CUSTOMER.address, "-mp", str(plan.RTP_PORT), *extra,
            "-timeout", f"{int(timeout)}s", "-timeout_error", "-nostdin",
            "-trace_err", "-error_file", str(run_dir / "errors.log"),
            "-trace_stat", "-stf", str(run_dir / "stats.csv"), plan.edge_address()]
    proc = peers.start(state, name, argv, namespace=plan.CUSTOMER.namespace, cwd=run_dir,
                       stdout=run_dir / "sipp.out")
    try:
        return proc.wait(timeout + 15)
    except subprocess.TimeoutExpired:
        peers.stop(state, name, timeout=2)
        return -1
    finally:
        state.pid_file(name).unlink(missing_ok=True)


def place_call(state: State, number: str, hold: float, timeout: float) -> call.CallResult:
    """One call from the customer trunk through the edge, with a tone as RTP."""
    info = read_info(state)
    api = live_api(info)
    after = call.last_cdr_id(api)
    run_dir = state.log_dir / f"call-{time.strftime('%Y%m%d-%H%M%S')}-{number}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / assets.TONE).write_bytes((state.asset_dir / assets.TONE).read_bytes())
    code = _sipp_customer(state, "call", "customer_call.xml", run_dir,
                          ["-m", "1", "-s", number, "-d", str(int(hold * 1000))], timeout)
    result = call.CallResult(number, code, run_dir)
    result.cdr = call.new_cdr(api, after)
    if result.cdr is None:
        result.errors.append("no CDR for the call")
    return result


def load(state: State, rate: float, seconds: float, hold: float) -> LoadResult:
    """``rate`` calls/s for ``seconds`` through the edge, each held ``hold`` s; the CDRs
    they left, by node and final code."""
    if not (0 < rate <= 200 and 0 < seconds <= 600 and 0 <= hold <= 600):
        raise LabError("load: --rate 0-200 calls/s, --seconds 0-600, --hold 0-600")
    info = read_info(state)
    api = live_api(info)
    after = call.last_cdr_id(api)
    offered = max(1, round(rate * seconds))
    run_dir = state.log_dir / f"load-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    code = _sipp_customer(state, "load", "customer_load.xml", run_dir,
                          ["-m", str(offered), "-r", f"{rate:g}", "-l", str(offered),
                           "-s", plan.VENDOR_NUMBER, "-d", str(int(hold * 1000)),
                           "-max_recv_loops", "1000"],
                          seconds + hold + 60)
    result = LoadResult(offered, code, run_dir)
    api = live_api(info)  # the node asked first may be the one killed meanwhile

    def written() -> bool:
        result.cdrs = _cdrs_after(api, after)
        return len(result.cdrs) >= offered

    wait_for(written, 10)
    return result


def _cdrs_after(api: Api, after: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page: list[dict[str, Any]] = api.get(
            f"/api/v1/cdrs?after_id={after}&limit=500")["items"]
        found += page
        if len(page) < 500:
            return found
        after = int(page[-1]["id"])


def kill(state: State, name: str) -> str:
    plan.node(name)  # a node's name, or KeyError
    outcome = peers.kill(state, name)
    if outcome is None:
        raise LabError(f"node {name} is not running")
    return outcome


def status(state: State) -> tuple[bool, list[str]]:
    """Whether the whole lab is up, and what is (or is not), for an operator."""
    info = state.read_info()
    namespaces = cluster_net.existing_namespaces()
    procs = peers.recorded(state)
    running = {p.name: peers.is_running(p) for p in procs}
    lines = [f"state: {state.root.resolve()} ({'lab.json present' if info else 'no lab.json'})",
             f"namespaces: {len(namespaces)}/{len(plan.HOSTS)}",
             "processes: " + (", ".join(f"{p.name} {p.pid} "
                                         f"{'running' if running[p.name] else 'GONE'}"
                                         for p in procs) or "-")]
    healthy = bool(info) and len(namespaces) == len(plan.HOSTS)
    if info:
        lines.append("edge dispatcher: " + (", ".join(
            f"{uri} {flags}" for uri, flags in dispatcher(state).items()) or "no answer"))
        try:
            view = live_api(info).get("/api/v1/cluster")
        except (LabError, ApiError) as exc:
            lines.append(f"cluster: {exc}")
            healthy = False
        else:
            lines.append(f"cluster (asked of {view.get('node')}): redis {view.get('redis')}, "
                         f"{view.get('redis_live_nodes')} live in Redis")
            for node in view.get("nodes", []):
                lines.append(f"  node {node.get('name')}: {node.get('state')}")
                healthy &= node.get("state") in ("self", "alive")
        healthy &= all(running.get(name) for name in
                       ("postgres", "redis", "edge", "vendor", "phone", *info["nodes"]))
    lines.insert(0, "cluster lab: up" if healthy else (
        "cluster lab: down" if not (info or namespaces or procs) else "cluster lab: partly up"))
    return healthy, lines


def down(state: State) -> list[str]:
    """Stop the lab's processes (by their pid files), remove its network, its database
    cluster and ``lab.json``; nothing up is no error."""
    done: list[str] = []
    names = [p.name for p in peers.recorded(state)]
    for name in [*STOP_ORDER, *sorted(set(names) - set(STOP_ORDER))]:
        if name in names:
            outcome = peers.stop(state, name)
            if outcome:
                done.append(outcome)
    done += cluster_net.teardown()
    if plan.PG_ROOT.exists():
        shutil.rmtree(plan.PG_ROOT, ignore_errors=True)
        done.append(f"removed {plan.PG_ROOT}")
    state.clear_info()
    return done
