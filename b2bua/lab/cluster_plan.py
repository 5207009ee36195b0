"""The cluster lab's fixed plan (docs/lab.md, "The cluster lab"): names, addresses,
ports, accounts.

One LAN, 198.18.0.0/24 (part of 198.18.0.0/15, reserved for benchmarking), on the bridge
``sscl-br0`` in the root namespace; every host is a namespace of its own on it:

    198.18.0.1    root namespace: the operator's shell, the nodes' APIs reached from here
    198.18.0.5    sscl-data   PostgreSQL 15 (:5432) and Redis 7 (:6379)
    198.18.0.10   sscl-edge   kamailio, deploy/kamailio/edge.cfg (:5060)
    198.18.0.21   sscl-n1     softswitch node n1 (SIP :5060, API :8080)
    198.18.0.22   sscl-n2     node n2
    198.18.0.23   sscl-n3     node n3
    198.18.0.30   sscl-cust   customer trunk (sipp UAC)
    198.18.0.40   sscl-vend   vendor (sipp UAS, RTP echo)
    198.18.0.50   sscl-phone  phone 3001 (pjsua2), registered through the edge

The names start with ``sscl-`` (the two-switch lab's are ``sslab-``, on 198.19.0.0/16:
both labs can be up at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BRIDGE = "sscl-br0"
PREFIX_LEN = 24
ROOT_ADDR = "198.18.0.1"


@dataclass(frozen=True, slots=True)
class Host:
    """A namespace on the LAN: ``eth0`` with ``address`` inside it, the veth's other end
    named ``namespace`` too, on the bridge in the root namespace."""

    name: str
    namespace: str
    address: str


DATA = Host("data", "sscl-data", "198.18.0.5")
EDGE = Host("edge", "sscl-edge", "198.18.0.10")
NODES = tuple(Host(f"n{i}", f"sscl-n{i}", f"198.18.0.{20 + i}") for i in (1, 2, 3))
CUSTOMER = Host("customer", "sscl-cust", "198.18.0.30")
VENDOR = Host("vendor", "sscl-vend", "198.18.0.40")
PHONE = Host("phone", "sscl-phone", "198.18.0.50")
HOSTS = (DATA, EDGE, *NODES, CUSTOMER, VENDOR, PHONE)

SIP_PORT = 5060
RTP_PORT = 6000  # sipp's media port in the customer and vendor namespaces
API_PORT = 8080
PG_PORT = 5432
REDIS_PORT = 6379
MEDIA_PORTS = "50000-50999"  # each node in its own namespace: the same range on each
PG_USER = "softswitch"
PG_DATABASE = "softswitch"
# The database cluster: volatile, as the lab is (a new one at every ``up``); under /run
# because the server runs as Debian's ``postgres`` user, who must reach the folder.
PG_ROOT = Path("/run/softswitch-lab-cluster")
PG_BIN = Path("/usr/lib/postgresql/15/bin")

PHONE_USER = "3001"
PHONE_PASSWORD = "lab-phone-3001"
VENDOR_NUMBER = "4420001"


def node(name: str) -> Host:
    for host in NODES:
        if host.name == name:
            return host
    raise KeyError(name)


def pg_url() -> str:
    return f"postgresql://{PG_USER}@{DATA.address}:{PG_PORT}/{PG_DATABASE}"


def pg_admin_url() -> str:
    return f"postgresql://{PG_USER}@{DATA.address}:{PG_PORT}/postgres"


def redis_url() -> str:
    return f"redis://{DATA.address}:{REDIS_PORT}/0"


def api_base(host: Host) -> str:
    return f"http://{host.address}:{API_PORT}"


def edge_address() -> str:
    return f"{EDGE.address}:{SIP_PORT}"
