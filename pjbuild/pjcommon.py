"""Shared set-up for the pjsua2 helper scripts (check.py and peer.py).

pjsua2 is imported through importlib into an ``Any``-typed name because the
package ships no type information.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import sys
import time
from typing import Any, TextIO

# Requested call limit. pjsua clamps ``uaConfig.maxCalls`` to the compile-time
# PJSUA_MAX_CALLS in pjsua_call_subsys_init(), so asking for more than any
# build supports configures exactly the compiled limit (4 for the
# pjsua2-python wheels). check.py measures the effective value.
REQUESTED_MAX_CALLS = 1024

# pjlib status code PJ_ETOOMANY (PJ_ERRNO_START_STATUS + 10): returned by
# Call.makeCall() when every call slot is taken.
PJ_ETOOMANY = 70010

# Range for the first RTP port of a process (see bind_media).
RTP_PORT_MIN = 20000
RTP_PORT_MAX = 30000

USER_AGENT = "softswitch-pjsua2-peer"


def load_pjsua2() -> Any:
    """Import pjsua2 and its native extension; raise ImportError when absent.

    The package loads its compiled module lazily on first attribute access,
    so an attribute is touched here to surface a broken install at once.
    """
    module = importlib.import_module("pjsua2")
    if not callable(module.Endpoint):
        raise ImportError("pjsua2.Endpoint is not a class")
    return module


class EventWriter:
    """Writes one JSON object per line to the original stdout.

    pjlib writes its log lines to file descriptor 1 from C code (including the
    start-up lines printed by libCreate() before any log configuration takes
    effect). To keep stdout pure JSON, the original stdout descriptor is
    duplicated for events and descriptor 1 is pointed at stderr.
    """

    def __init__(self) -> None:
        sys.stdout.flush()
        json_fd = os.dup(1)
        os.dup2(2, 1)
        self._stream: TextIO = os.fdopen(json_fd, "w", encoding="utf-8")
        sys.stdout = sys.stderr
        self._t0 = time.monotonic()

    def emit(self, event: str, **fields: Any) -> None:
        record: dict[str, Any] = {"event": event}
        record.update(fields)
        record["t"] = round(time.monotonic() - self._t0, 3)
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()

    def line(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()


def create_endpoint(pj: Any, log_level: int = 1) -> Any:
    """Create and initialise an Endpoint for single-threaded use.

    No worker threads: every callback runs inside ``ep.libHandleEvents()``
    in the calling (main) thread. Logging is limited to errors (level 1)
    or switched off (level 0); the start-up lines that libCreate() prints
    before the configuration applies go to stderr (see EventWriter). The
    null audio device is selected since no sound card exists.
    """
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.maxCalls = REQUESTED_MAX_CALLS
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.userAgent = USER_AGENT
    cfg.logConfig.level = log_level
    cfg.logConfig.consoleLevel = log_level
    # Without VAD the stream sends an RTP packet every ptime even though the
    # audio is silence, so media relays see continuous RTP.
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    return ep


def create_transport(pj: Any, ep: Any, kind: str, host: str, port: int) -> tuple[int, str]:
    """Create a SIP transport bound to host:port; return (id, "host:port")."""
    types = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP}
    tcfg = pj.TransportConfig()
    tcfg.boundAddress = host
    tcfg.publicAddress = host
    tcfg.port = port
    tid = int(ep.transportCreate(types[kind], tcfg))
    return tid, str(ep.transportGetInfo(tid).localName)


def bind_media(acc_cfg: Any, host: str) -> None:
    """Bind RTP/RTCP sockets to host so SDP advertises that address.

    Left unset, pjsua binds 0.0.0.0 and advertises the machine's primary
    interface address instead of the loopback address. pjsua also starts
    every process at RTP port 4000 and steps up by 2 on each bind failure
    (logging an error each time), so peers running side by side would keep
    colliding; a random even start port below the kernel's ephemeral range
    avoids that.
    """
    media = acc_cfg.mediaConfig.transportConfig
    media.boundAddress = host
    media.publicAddress = host
    media.port = random.randrange(RTP_PORT_MIN, RTP_PORT_MAX, 2)


def set_codecs(ep: Any, names: str) -> list[str]:
    """Enable only the named codecs, in the given order; return their ids.

    ``names`` is a comma-separated list of codec names or ids matched as a
    case-insensitive prefix of pjsua's ids ("PCMU" matches "PCMU/8000/1");
    "all" keeps pjsua's defaults (which put Speex first).
    """
    if names.strip().lower() == "all":
        return [str(c.codecId) for c in ep.codecEnum2() if int(c.priority) > 0]
    wanted = [n.strip().lower() for n in names.split(",") if n.strip()]
    available = [str(c.codecId) for c in ep.codecEnum2()]
    chosen: list[str] = []
    for name in wanted:
        for codec_id in available:
            if codec_id.lower().startswith(name) and codec_id not in chosen:
                chosen.append(codec_id)
    if not chosen:
        raise ValueError(f"no codec matches {names!r}; available: {', '.join(available)}")
    for codec_id in available:
        ep.codecSetPriority(codec_id, 0)
    for rank, codec_id in enumerate(chosen):
        ep.codecSetPriority(codec_id, 255 - rank)
    return chosen


def destroy_endpoint(pj: Any, ep: Any) -> None:
    """Destroy the library without pjsua's fixed one-second shutdown wait.

    The callers hang up calls and unregister beforehand while still pumping
    events, so nothing is left for libDestroy() to wait for.
    """
    ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)
