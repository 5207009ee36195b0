"""Check that the pjsua2 bindings work and report the compiled call limit.

Prints one JSON line, e.g. ``{"pjsua2": "2.15.1", "max_calls": 4, ...}``,
and exits 0. Exits 1 with a message on stderr when pjsua2 cannot be imported.

How ``max_calls`` is determined: ``EpConfig().uaConfig.maxCalls`` defaults
to min(PJSUA_MAX_CALLS, 4) in pjsua_config_default(), so the default is only
a lower bound of the compile-time limit. The limit itself is measured: the
endpoint is initialised with a request far above any build's limit (pjsua
clamps it to PJSUA_MAX_CALLS), then outgoing calls are placed towards a
local UDP socket that never answers until Call.makeCall() fails with
PJ_ETOOMANY. The number of calls that could be created is the limit.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pjcommon import (
    PJ_ETOOMANY,
    EventWriter,
    bind_media,
    create_endpoint,
    create_transport,
    destroy_endpoint,
    load_pjsua2,
)

HOST = "127.0.0.1"
PROBE_CEILING = 512


def probe_max_calls(pj: Any, ep: Any) -> int:
    """Count how many simultaneous calls the library accepts."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((HOST, 0))
    sink_port = sink.getsockname()[1]
    acc = pj.Account()
    acc_cfg = pj.AccountConfig()
    acc_cfg.idUri = f"sip:probe@{HOST}"
    bind_media(acc_cfg, HOST)
    acc.create(acc_cfg)
    calls: list[Any] = []
    try:
        for index in range(PROBE_CEILING):
            call = pj.Call(acc)
            try:
                call.makeCall(f"sip:probe{index}@{HOST}:{sink_port}", pj.CallOpParam(True))
            except pj.Error as exc:
                if int(exc.status) == PJ_ETOOMANY:
                    break
                raise
            calls.append(call)
        return len(calls)
    finally:
        ep.hangupAllCalls()
        ep.libHandleEvents(50)
        calls.clear()
        acc.shutdown()
        sink.close()


def main() -> int:
    out = EventWriter()
    try:
        pj = load_pjsua2()
    except ImportError as exc:
        print(
            f"pjsua2 cannot be imported by {sys.executable}: {exc}\n"
            "Install it with: bash pjbuild/install.sh",
            file=sys.stderr,
        )
        return 1
    wheel = str(getattr(pj, "__version__", "unknown"))
    default_max_calls = int(pj.EpConfig().uaConfig.maxCalls)
    # Log level 0: the probe's expected PJ_ETOOMANY would otherwise be logged
    # as an error; real failures still surface as pj.Error exceptions.
    ep = create_endpoint(pj, log_level=0)
    try:
        create_transport(pj, ep, "udp", HOST, 0)
        ep.libStart()
        version = str(ep.libVersion().full)
        max_calls = probe_max_calls(pj, ep)
    finally:
        destroy_endpoint(pj, ep)
    del ep
    out.line(
        {
            "pjsua2": version,
            "max_calls": max_calls,
            "default_max_calls": default_max_calls,
            "wheel": wheel,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
