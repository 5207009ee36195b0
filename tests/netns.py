"""Test hosts in network namespaces: a phone behind a masquerading NAT.

    root namespace (softswitch on 198.18.2.1)
        | veth 198.18.2.1 <-> 198.18.2.2
    NAT namespace (iptables MASQUERADE toward the softswitch)
        | veth 198.18.1.1 <-> 198.18.1.2
    phone namespace (198.18.1.2, default route via the NAT)

Addresses are in 198.18.0.0/15 (reserved for benchmarking), so nothing here can
reach or be confused with a real network. Everything is removed on exit.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from types import TracebackType

SWITCH_ADDR = "198.18.2.1"
NAT_OUTSIDE = "198.18.2.2"
NAT_INSIDE = "198.18.1.1"
PHONE_ADDR = "198.18.1.2"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@dataclass
class NatLab:
    suffix: str

    @classmethod
    def create(cls) -> NatLab:
        return cls(str(os.getpid() % 100000))

    @property
    def phone_ns(self) -> str:
        return f"ssphone{self.suffix}"

    @property
    def nat_ns(self) -> str:
        return f"ssnat{self.suffix}"

    def exec(self, ns: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def __enter__(self) -> NatLab:
        s = self.suffix
        self.__exit__(None, None, None)
        sh("ip", "netns", "add", self.phone_ns)
        sh("ip", "netns", "add", self.nat_ns)
        sh("ip", "link", "add", f"ssr{s}", "type", "veth", "peer", "name", f"ssn{s}")
        sh("ip", "link", "set", f"ssn{s}", "netns", self.nat_ns)
        sh("ip", "addr", "add", f"{SWITCH_ADDR}/24", "dev", f"ssr{s}")
        sh("ip", "link", "set", f"ssr{s}", "up")
        sh("ip", "link", "add", f"ssi{s}", "type", "veth", "peer", "name", f"ssp{s}")
        sh("ip", "link", "set", f"ssi{s}", "netns", self.nat_ns)
        sh("ip", "link", "set", f"ssp{s}", "netns", self.phone_ns)
        nat = ["ip", "netns", "exec", self.nat_ns]
        sh(*nat, "ip", "addr", "add", f"{NAT_OUTSIDE}/24", "dev", f"ssn{s}")
        sh(*nat, "ip", "addr", "add", f"{NAT_INSIDE}/24", "dev", f"ssi{s}")
        sh(*nat, "ip", "link", "set", f"ssn{s}", "up")
        sh(*nat, "ip", "link", "set", f"ssi{s}", "up")
        sh(*nat, "ip", "link", "set", "lo", "up")
        sh(*nat, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        sh(*nat, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", f"ssn{s}",
           "-j", "MASQUERADE")
        phone = ["ip", "netns", "exec", self.phone_ns]
        sh(*phone, "ip", "addr", "add", f"{PHONE_ADDR}/24", "dev", f"ssp{s}")
        sh(*phone, "ip", "link", "set", f"ssp{s}", "up")
        sh(*phone, "ip", "link", "set", "lo", "up")
        sh(*phone, "ip", "route", "add", "default", "via", NAT_INSIDE)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for cmd in (["ip", "link", "del", f"ssr{self.suffix}"],
                    ["ip", "netns", "del", self.phone_ns],
                    ["ip", "netns", "del", self.nat_ns]):
            subprocess.run(cmd, capture_output=True, check=False, timeout=30)
