"""The control op ``route_test``: the routing dry run (``calls/dryrun.py``) on the
engine's live configuration, counts and Retry-After holds. It changes nothing.

With several signalling workers, worker 0 answers alone: the counts and holds it reads
are the shared table every worker routes by (``calls/counts.py``), and on a cluster node
they include the other nodes' (``docs/cluster.md``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from b2bua.calls.dryrun import Admission, explain_call
from b2bua.calls.endpoints import Origin
from b2bua.control import ControlError

if TYPE_CHECKING:
    from b2bua.engine import Engine


def route_test(engine: Engine, request: dict[str, Any]) -> dict[str, Any]:
    """``{"origin": "mapping_gateway", "origin_id": ID}`` or ``{"origin": "phone",
    "origin_id": USERNAME}``, with ``caller`` and ``callee``. An origin this engine has not
    loaded answers ``{"unknown": ORIGIN}``."""
    kind = request.get("origin")
    key = request.get("origin_id")
    if kind == "mapping_gateway" and isinstance(key, int):
        gateway = engine.gateways.mapping.get(key)
        if gateway is None:
            return {"unknown": kind}
        origin, enabled = Origin.gateway(gateway), gateway.enabled
    elif kind == "phone" and isinstance(key, str):
        account = engine.phones.by_username.get(key)
        if account is None:
            return {"unknown": kind}
        origin, enabled = Origin.phone(account), account.enabled
    else:
        raise ControlError("route_test: origin must be a mapping_gateway id or a phone")
    board = engine.switchboard_now()
    admission = Admission(enabled, engine.counts[origin.key], board.overloaded())
    return explain_call(board, origin, str(request.get("caller", "")),
                        str(request.get("callee", "")), time.time(), admission)
