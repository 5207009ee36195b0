"""The cluster lab's network: one namespace per host, each on the bridge ``sscl-br0``
through a veth (``b2bua/lab/cluster_plan.py``). Built and removed with ``ip`` and
``sysctl`` only, each command bounded in time (``topology.sh``)."""

from __future__ import annotations

from b2bua.lab import cluster_plan as plan
from b2bua.lab import topology
from b2bua.lab.topology import in_ns, quiet_ipv6, sh, try_sh


def build() -> None:
    """Create the LAN (call ``teardown`` first for a clean slate)."""
    sh("ip", "link", "add", plan.BRIDGE, "type", "bridge")
    quiet_ipv6(plan.BRIDGE)
    sh("ip", "addr", "add", f"{plan.ROOT_ADDR}/{plan.PREFIX_LEN}", "dev", plan.BRIDGE)
    sh("ip", "link", "set", plan.BRIDGE, "up")
    for host in plan.HOSTS:
        ns = host.namespace
        sh("ip", "netns", "add", ns)
        sh(*in_ns(ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"))
        sh(*in_ns(ns, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"))
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
        quiet_ipv6(ns)
        sh("ip", "link", "set", ns, "master", plan.BRIDGE)
        sh("ip", "link", "set", ns, "up")
        sh("ip", "-n", ns, "addr", "add", f"{host.address}/{plan.PREFIX_LEN}", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")


def teardown() -> list[str]:
    """Remove whatever of the LAN exists; returns what was removed."""
    removed: list[str] = []
    for host in plan.HOSTS:
        if try_sh("ip", "link", "del", host.namespace):
            removed.append(f"link {host.namespace}")
    if try_sh("ip", "link", "del", plan.BRIDGE):
        removed.append(f"bridge {plan.BRIDGE}")
    for ns in existing_namespaces():
        if try_sh("ip", "netns", "del", ns):
            removed.append(f"netns {ns}")
    return removed


def existing_namespaces() -> list[str]:
    return topology.existing_namespaces(tuple(h.namespace for h in plan.HOSTS))
