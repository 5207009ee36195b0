"""Building and removing the lab's network: namespaces, the bridge, veths, routes, NAT.

Only ``ip``, ``sysctl`` and ``iptables`` are used, each command bounded in time. The
iptables rules live inside the lab's namespaces (the NAT's MASQUERADE, the dead vendor's
DROP) and go away with them; the root namespace gets the bridge, its ports and one
``unreachable 198.19.0.0/16`` route so that nothing addressed to the lab's private LANs
can leave through the machine's real interfaces.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from b2bua.lab import plan

COMMAND_TIMEOUT = 30.0


class TopologyError(Exception):
    """A command that builds the topology failed."""


def sh(*args: str) -> None:
    """Run one command; raise ``TopologyError`` with its stderr when it fails."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TopologyError(f"{' '.join(args)}: {exc}") from None
    if proc.returncode != 0:
        raise TopologyError(f"{' '.join(args)}: {proc.stderr.strip() or proc.returncode}")


def try_sh(*args: str) -> bool:
    """Run one command, ignoring failure (tearing down what may not exist)."""
    try:
        proc = subprocess.run(args, capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def in_ns(namespace: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *args]


def build() -> None:
    """Create the whole topology (call ``teardown`` first for a clean slate)."""
    for ns in plan.NAMESPACES:
        sh("ip", "netns", "add", ns)
        sh(*in_ns(ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"))
        sh(*in_ns(ns, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"))
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", plan.BRIDGE, "type", "bridge")
    quiet_ipv6(plan.BRIDGE)
    sh("ip", "addr", "add", f"{plan.A_ADDR}/{plan.CARRIER_PREFIX_LEN}", "dev", plan.BRIDGE)
    sh("ip", "link", "set", plan.BRIDGE, "up")
    sh("ip", "route", "add", "unreachable", plan.LAB_NET)
    for port in plan.BRIDGE_PORTS:
        sh("ip", "link", "add", port.port, "type", "veth", "peer", "name", "eth0",
           "netns", port.namespace)
        quiet_ipv6(port.port)
        sh("ip", "link", "set", port.port, "master", plan.BRIDGE)
        sh("ip", "link", "set", port.port, "up")
        sh("ip", "-n", port.namespace, "addr", "add",
           f"{port.address}/{plan.CARRIER_PREFIX_LEN}", "dev", "eth0")
        sh("ip", "-n", port.namespace, "link", "set", "eth0", "up")
    for link in plan.PRIVATE_LINKS:
        sh("ip", "-n", link.gateway_ns, "link", "add", "eth1", "type", "veth", "peer", "name",
           "eth0", "netns", link.host_ns)
        sh("ip", "-n", link.gateway_ns, "addr", "add", f"{link.gateway_addr}/24", "dev", "eth1")
        sh("ip", "-n", link.gateway_ns, "link", "set", "eth1", "up")
        sh("ip", "-n", link.host_ns, "addr", "add", f"{link.host_addr}/24", "dev", "eth0")
        sh("ip", "-n", link.host_ns, "link", "set", "eth0", "up")
        sh("ip", "-n", link.host_ns, "route", "add", "default", "via", link.gateway_addr)
    # The NAT: forwards between its LAN and the carrier LAN, masquerading outbound.
    sh(*in_ns(plan.NAT_NS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"))
    sh(*in_ns(plan.NAT_NS, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0",
              "-j", "MASQUERADE"))
    # The dead vendor: a host that is there (ARP answers) but never answers anything,
    # not even with an ICMP port unreachable.
    sh(*in_ns(plan.DEAD_NS, "iptables", "-A", "INPUT", "-j", "DROP"))


def quiet_ipv6(interface: str) -> None:
    """No IPv6 router solicitations or MLD on the lab's root-side interfaces."""
    path = Path("/proc/sys/net/ipv6/conf") / interface / "disable_ipv6"
    with contextlib.suppress(OSError):
        path.write_text("1\n")


def teardown() -> list[str]:
    """Remove whatever of the topology exists; returns what was removed."""
    removed: list[str] = []
    for port in plan.BRIDGE_PORTS:
        if try_sh("ip", "link", "del", port.port):
            removed.append(f"link {port.port}")
    if try_sh("ip", "link", "del", plan.BRIDGE):
        removed.append(f"bridge {plan.BRIDGE}")
    if try_sh("ip", "route", "del", "unreachable", plan.LAB_NET):
        removed.append(f"route unreachable {plan.LAB_NET}")
    for ns in existing_namespaces():
        if try_sh("ip", "netns", "del", ns):
            removed.append(f"netns {ns}")
    _wait_links_gone()
    return removed


def _wait_links_gone(timeout: float = 5.0) -> None:
    """Link removal can lag behind the command; wait (bounded) until the names are free."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not root_links():
            return
        time.sleep(0.1)


def existing_namespaces(wanted: tuple[str, ...] = plan.NAMESPACES) -> list[str]:
    """Those of ``wanted`` (the lab's namespaces) that exist now."""
    try:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    return [ns for ns in wanted if ns in names]


def root_links() -> list[str]:
    """The lab's interfaces in the root namespace that exist now."""
    try:
        out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    ours = {plan.BRIDGE, *(p.port for p in plan.BRIDGE_PORTS)}
    found = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            name = parts[1].strip().split("@", 1)[0]
            if name in ours:
                found.append(name)
    return found
