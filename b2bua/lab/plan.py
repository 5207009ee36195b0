"""The lab's fixed plan: namespace and interface names, addresses, ports, accounts.

Every address is in 198.19.0.0/16 (part of 198.18.0.0/15, reserved for benchmarking), so
nothing in the lab can reach or be mistaken for a real network. The names start with
``sslab-``; one lab runs per machine.

    carrier LAN 198.19.0.0/24, bridge sslab-br0 in the root namespace
      198.19.0.1   softswitch A (root namespace), the one under test
      198.19.0.10  sslab-cust   customer trunk (sipp UAC)
      198.19.0.20  sslab-nat    NAT, public side; private side 198.19.100.1
      198.19.0.30  sslab-dead   dead vendor (drops everything)
      198.19.0.40  sslab-sw2    softswitch B; vendor side 198.19.200.1
    198.19.100.2   sslab-phone  phone 2001 (pjsua2), behind the NAT
    198.19.200.2   sslab-vend   live vendor (sipp UAS, RTP echo), behind B
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "sslab-"
LAB_NET = "198.19.0.0/16"
BRIDGE = "sslab-br0"
CARRIER_PREFIX_LEN = 24

A_ADDR = "198.19.0.1"
CUSTOMER_ADDR = "198.19.0.10"
NAT_PUBLIC = "198.19.0.20"
NAT_PRIVATE = "198.19.100.1"
PHONE_ADDR = "198.19.100.2"
DEAD_ADDR = "198.19.0.30"
B_ADDR = "198.19.0.40"
B_VENDOR_SIDE = "198.19.200.1"
VENDOR_ADDR = "198.19.200.2"

CUST_NS = "sslab-cust"
NAT_NS = "sslab-nat"
PHONE_NS = "sslab-phone"
DEAD_NS = "sslab-dead"
SW2_NS = "sslab-sw2"
VENDOR_NS = "sslab-vend"
NAMESPACES = (CUST_NS, NAT_NS, PHONE_NS, DEAD_NS, SW2_NS, VENDOR_NS)

SIP_PORT = 5060
RTP_PORT = 6000  # sipp's media port in the customer and vendor namespaces
A_API_HOST, A_API_PORT = "127.0.0.1", 8089
B_API_HOST, B_API_PORT = B_ADDR, 8090
# Apart from the test suite's relay (40000-49999) and pjsua2's RTP (20000-30000).
A_MEDIA_PORTS = "50000-50999"
B_MEDIA_PORTS = "51000-51999"

PHONE_USER = "2001"
PHONE_PASSWORD = "lab-phone-2001"
VENDOR_NUMBER = "4420001"  # any number that is not a phone goes to the vendors
DEAD_INVITE_TIMEOUT = 2  # s without any answer before A fails over
KEEPALIVE_PERIOD = 10  # s, SS_SIP_NAT_KEEP_ALIVE_PERIOD (its minimum)

CIPHER_NAMES = {1: "XOR", 2: "RC4", 3: "AES128"}
CIPHER_KEYS = {1: "lab-xor-key", 2: "lab-rc4-key-16by", 3: "lab-aes-key-0016"}


@dataclass(frozen=True, slots=True)
class BridgePort:
    """A namespace on the carrier LAN: ``port`` in the root namespace (on the bridge),
    ``eth0`` with ``address`` inside ``namespace``."""

    port: str
    namespace: str
    address: str


@dataclass(frozen=True, slots=True)
class PrivateLink:
    """A LAN behind a namespace: ``eth1`` in ``gateway_ns`` holds ``gateway_addr``,
    ``eth0`` in ``host_ns`` holds ``host_addr`` with its default route via the gateway."""

    gateway_ns: str
    gateway_addr: str
    host_ns: str
    host_addr: str


# The root-side port of each namespace has the namespace's name: ``tshark -i sslab-sw2``
# sees exactly the A <-> B hop.
BRIDGE_PORTS = (
    BridgePort(CUST_NS, CUST_NS, CUSTOMER_ADDR),
    BridgePort(NAT_NS, NAT_NS, NAT_PUBLIC),
    BridgePort(DEAD_NS, DEAD_NS, DEAD_ADDR),
    BridgePort(SW2_NS, SW2_NS, B_ADDR),
)
PRIVATE_LINKS = (
    PrivateLink(NAT_NS, NAT_PRIVATE, PHONE_NS, PHONE_ADDR),
    PrivateLink(SW2_NS, B_VENDOR_SIDE, VENDOR_NS, VENDOR_ADDR),
)


def a_api_base() -> str:
    return f"http://{A_API_HOST}:{A_API_PORT}"


def b_api_base() -> str:
    return f"http://{B_API_HOST}:{B_API_PORT}"
