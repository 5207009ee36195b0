"""Start-up options of ``softswitch run`` (addresses and paths; everything else is a parameter)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from b2bua.storage import is_postgres, sqlite_path

# The engine's own files when its database is a server (a SQLite database keeps them in
# its own folder).
DEFAULT_VAR_DIR = Path("var")


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        host = host.strip("[]")
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError(f"port out of range in {text!r}")
        return cls(host, number)

    @classmethod
    def parse_default(cls, text: str, port: int) -> HostPort:
        """``HOST[:PORT]``: an address alone (IPv6 too) takes ``port``."""
        try:
            ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            return cls.parse(text)
        return cls(text.strip("[]"), port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PortRange:
    low: int
    high: int

    @classmethod
    def parse(cls, text: str) -> PortRange:
        low, sep, high = text.partition("-")
        if not sep:
            raise ValueError(f"expected LOW-HIGH, got {text!r}")
        lo, hi = int(low), int(high)
        if not 1024 <= lo < hi <= 65535:
            raise ValueError("media ports must satisfy 1024 <= LOW < HIGH <= 65535")
        return cls(lo, hi)


@dataclass(frozen=True, slots=True)
class EngineOptions:
    database: Path | str  # a SQLite file, or a postgresql:// URL
    sip_listen: HostPort
    media_ports: PortRange
    public_address: str | None
    control_path: Path
    var_dir: Path  # the engine's own files: control sockets, writes saved at a locked stop
    media_workers: int = 0  # relay worker processes; 0: relay in the engine's own loop
    relay_ciphers: str = "c"  # "c": RTP ciphers in the relay's C loop; "python": not
    signalling_workers: int = 1  # engine processes sharing SIP by Call-ID (docs/scaling.md)
    worker_index: int = 0  # this engine's place among them; 0 reads the socket and the API
    dns_server: HostPort | None = None  # for DNS-named vendors; None: resolv.conf's
    node: str = ""  # this node's name in a cluster (docs/cluster.md); "": on its own
    api_address: str = ""  # where the API listens (listed for the other nodes)
    redis: str = ""  # redis://... for the cluster's live counters; "": none

    def for_worker(self, index: int) -> EngineOptions:
        """What signalling worker ``index`` runs with: its share of the relay workers, its
        slice of the media ports, and (all but worker 0) a control socket of its own."""
        count = self.signalling_workers
        if count == 1:
            return self
        low, high = split_ports(self.media_ports.low, self.media_ports.high, count,
                                "signalling workers")[index]
        relays = self.media_workers // count + (1 if index < self.media_workers % count else 0)
        control = self.control_path if index == 0 else worker_control_path(self.control_path,
                                                                         index)
        return replace(self, media_ports=PortRange(low, high), media_workers=relays,
                       control_path=control, worker_index=index)

    def advertised_host(self) -> str:
        """The address put in Via, Contact and SDP when none was given explicitly."""
        if self.public_address:
            return self.public_address
        if self.sip_listen.host in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return self.sip_listen.host


def default_media_workers() -> int:
    """One relay worker per core; none on a single core, where a worker could only
    compete with the signalling for the same CPU."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return cores if cores > 1 else 0


def var_dir_for(database: Path | str) -> Path:
    """Where the engine keeps its own files (control socket, admin token, writes saved
    at a locked stop) unless told: beside a SQLite database, else ``var/``."""
    return DEFAULT_VAR_DIR if is_postgres(database) else sqlite_path(database).parent


def control_path_for(database: Path | str, var_dir: Path | None = None) -> Path:
    """The engine's control socket: in ``var_dir``, by default beside a SQLite database."""
    return (var_dir if var_dir is not None else var_dir_for(database)) / "engine.sock"


def worker_control_path(control_path: Path, index: int) -> Path:
    """Signalling worker ``index``'s own control socket, beside worker 0's."""
    return control_path.with_name(f"{control_path.stem}-{index}{control_path.suffix}")


def split_ports(low: int, high: int, parts: int, what: str = "relay workers"
                ) -> list[tuple[int, int]]:
    """``parts`` contiguous slices of ``[low, high]``, each starting on an even port so no
    RTP/RTCP pair straddles two of them; every slice holds at least one pair."""
    first = low + (low & 1)
    pairs = (high - first + 1) // 2
    if parts < 1 or pairs < parts:
        raise ValueError(f"media ports {low}-{high} hold {pairs} pairs: too few for "
                         f"{parts} {what}")
    out = []
    for i in range(parts):
        start = first + 2 * (pairs * i // parts)
        end = first + 2 * (pairs * (i + 1) // parts) - 1
        out.append((start, end))
    return out


def with_redis_password(url: str, password: str) -> str:
    """``url`` with ``password`` in it (``redis://:PASSWORD@HOST...``), so the password
    can be kept in a file rather than on the command line (docs/cluster.md). ValueError
    when the URL is not redis:// or rediss://, or already carries a password."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"not a redis:// URL: {url!r}")
    if parts.password is not None:
        raise ValueError("the URL already has a password: give it once")
    user = quote(parts.username or "", safe="")
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

