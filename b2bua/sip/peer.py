"""Where a SIP message came from or goes to: a value, shared by the transports that
fill it in and the layers above that decide on it (dialogs, the policy, calls)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to."""

    transport: str  # "udp" or "tcp"
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport == "tcp"

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"
