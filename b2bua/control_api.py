"""The engine's control commands (``b2bua/control.py`` serves them on the control
socket): what the API asks of the live engine, and the few things it may change
(lift a suspension, remove a registration). With several signalling workers, worker 0
asks the others the same question and merges their answers (``b2bua/reports.py``).
They read the engine's state; the engine does not depend on them."""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from b2bua import ipc
from b2bua.census import census
from b2bua.control import ControlServer
from b2bua.ladders import UNKNOWN, Ladder
from b2bua.registrar.bindings import Binding
from b2bua.reports import sum_counters
from b2bua.route_dry_run import route_test
from b2bua.stats.tally import merge_snapshots
from b2bua.webhooks.outbox import merge_reports

if TYPE_CHECKING:
    from b2bua.engine import Engine

log = logging.getLogger("b2bua.engine")

# Call-layer objects counted by the "collect" command: after calls end (and their
# transactions' 32 s), none should be left.
CALL_MODULES = ("b2bua.calls.", "b2bua.aio.call_adapter")


class ControlApi:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(self, control: ControlServer) -> None:
        engine = self.engine
        control.register("status", self._status)
        control.register("cluster", lambda _r: engine.cluster_snapshot())
        control.register("calls", self._calls)
        control.register("stats", self._stats)
        control.register("media", self._media_status)
        control.register("collect", self._collect)
        control.register("census", lambda _r: census())
        control.register("gateways", lambda _r: engine.switchboard_now().gateway_status())
        control.register("security", self._security)
        control.register("suspensions", self._suspensions)
        control.register("lift", self._lift)
        control.register("registrations", self._registrations)
        control.register("unregister", self._unregister)
        control.register("mapping_gateways", self._mapping_status)
        control.register("keepalive", lambda _r: engine.keepalive.snapshot())
        control.register("upstream", lambda _r: engine.upstream.snapshot())
        control.register("sip_ladder", self._sip_ladder)
        control.register("route_test", lambda r: route_test(engine, r))
        control.register("quality", self._quality)
        control.register("hangup", self._hang_up)
        control.register("webhooks", self._webhooks)

    async def _suspensions(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        mine = [asdict(s) for s in self.engine.policy.suspensions.active(time.time())]
        for more in await self._ask_workers(request):
            mine.extend(more)
        return mine

    async def _lift(self, request: dict[str, Any]) -> dict[str, int]:
        username = str(request.get("username", ""))
        source_ip = request.get("source_ip")
        lifted = self.engine.policy.suspensions.lift(username,
                                                     str(source_ip) if source_ip else None)
        if lifted:
            log.info("suspension of %s lifted by the API", username)
        lifted += sum(int(more["lifted"]) for more in await self._ask_workers(request))
        return {"lifted": lifted}

    async def _hang_up(self, request: dict[str, Any]) -> dict[str, bool]:
        """An operator's hang-up of call ``call`` (its number in ``calls``), on whichever
        signalling worker carries it."""
        number = request.get("call")
        if not isinstance(number, int) or isinstance(number, bool):
            raise ValueError("call: the call's number")
        if self.engine.switchboard_now().hang_up(number, "operator"):
            log.info("call %d hung up by the API", number)
            return {"found": True}
        return {"found": any(more["found"] for more in await self._ask_workers(request))}

    async def _quality(self, request: dict[str, Any]) -> dict[str, Any]:
        """Each gateway's quality since start, summed over the signalling workers, and
        the stored roll-up's state (worker 0 runs it)."""
        gateways = merge_snapshots([self.engine.quality.snapshot(),
                                    *[more["gateways"] for more in
                                      await self._ask_workers(request)]])
        return {"gateways": gateways, "rollup": self.engine.stats_rollup.snapshot()}

    async def _webhooks(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """Each webhook's delivery state, summed over the signalling workers."""
        return merge_reports([self.engine.webhooks.snapshot(),
                              *await self._ask_workers(request)])

    async def _security(self, request: dict[str, Any]) -> dict[str, Any]:
        mine = self.engine.policy.snapshot(time.time())
        return sum_counters([mine, *await self._ask_workers(request)])

    async def _ask_workers(self, request: dict[str, Any]) -> list[Any]:
        """The other signalling workers' answers to the same control request (none when
        this engine is the only one, or is not worker 0)."""
        if self.engine.workers is None:
            return []
        args = {k: v for k, v in request.items() if k != "op"}
        return await self.engine.workers.ask(str(request["op"]), **args)

    def _collect(self, _request: dict[str, Any]) -> dict[str, Any]:
        garbage: Counter[str] = Counter()
        collected = self.engine.collector.collect(garbage)
        # Also what every collection since start freed (young ones included: a cycle
        # freed there never shows in a full collection).
        total = sum(generation["collected"] for generation in gc.get_stats())
        # Call-layer objects alive now: after the calls end (and their transactions'
        # 32 s), none should be left.
        live = Counter(type(o).__qualname__ for o in gc.get_objects()
                       if type(o).__module__.startswith(CALL_MODULES))
        return {"collected": collected, "collected_since_start": total,
                "types": dict(garbage.most_common(30)), "live_call_objects": dict(live)}

    async def _media_status(self, request: dict[str, Any]) -> dict[str, Any]:
        mine = {**self.engine.media.snapshot(), "engine_loop_lag": self.engine.loop_lag.snapshot(),
                "totals": self.engine.media_totals.snapshot()}
        others = await self._ask_workers(request)
        if not others:
            return mine
        reports = [mine, *others]
        merged = sum_counters(reports)
        # Relay workers numbered across the switch; the lag of the most loaded engine.
        for index, worker in enumerate(merged["workers"]):
            worker["index"] = index
        merged["engine_loop_lag"] = max((r["engine_loop_lag"] for r in reports),
                                        key=lambda lag: lag["mean_ms"])
        return merged

    def _registrations(self, _request: dict[str, Any]) -> list[dict[str, Any]]:
        now = time.time()
        return [self._registration(b) for b in self.engine.bindings.all() if b.expires_at > now]

    def _registration(self, binding: Binding) -> dict[str, Any]:
        gw = self.engine.gateways.mapping.get(binding.mapping_gateway_id or 0)
        return {**binding.snapshot(),
                "mapping_gateway": gw.name if binding.mapping_gateway_id and gw else None}

    def _mapping_status(self, _request: dict[str, Any]) -> list[dict[str, Any]]:
        """Each mapping gateway's live state: its calls, and where it is registered from
        (only password-mode gateways register)."""
        now = time.time()
        registered: dict[int, list[dict[str, Any]]] = {}
        for binding in self.engine.bindings.all():
            if binding.mapping_gateway_id is not None and binding.expires_at > now:
                registered.setdefault(binding.mapping_gateway_id, []).append(
                    self._registration(binding))
        return [
            {"id": gw.id, "name": gw.name, "enabled": gw.enabled, "auth_mode": gw.auth_mode,
             "current_calls": self.engine.counts[("gateway", gw.id)],
             "registrations": registered.get(gw.id, [])}
            for gw in self.engine.gateways.mapping.values()
        ]

    def _unregister(self, request: dict[str, Any]) -> dict[str, int]:
        username = str(request.get("username", ""))
        contact = request.get("contact")
        removed = 0
        for binding in self.engine.bindings.of(username, time.time()):
            if contact is None or binding.contact == contact:
                self.engine.bindings.remove(username, binding.contact)
                removed += 1
        if removed:
            log.info("registration of %s removed by the API", username)
        return {"removed": removed}

    async def _calls(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        calls = self.engine.switchboard_now().active_calls()
        for more in await self._ask_workers(request):
            calls.extend(more)
        return calls

    async def _stats(self, request: dict[str, Any]) -> dict[str, Any]:
        mine = {
            **self.engine.switchboard_now().stats_snapshot(),
            "media_ports_in_use": self.engine.media.in_use,
            "media_ports_free": self.engine.media.available,
            "ladders": self.engine.ladders.snapshot(),
            "hep": self.engine.hep.snapshot(),
        }
        return sum_counters([mine, *await self._ask_workers(request)])

    async def _sip_ladder(self, request: dict[str, Any]) -> dict[str, Any]:
        """A call's SIP ladder, by its number (``call``) or its CDR's ``cdr_uuid``, from
        whichever signalling worker has it; else why none is kept (b2bua/ladders.py)."""
        engine = self.engine
        number, uuid = request.get("call"), request.get("cdr_uuid")
        found = engine.ladders.find(time.time(),
                                    no=int(number) if number is not None else None,
                                    uuid=str(uuid) if uuid is not None else None)
        if isinstance(found, Ladder):
            live = None
            board = engine.switchboard
            adapter = board.calls.get(found.no) if board is not None else None
            if found.ended_at is None and adapter is not None:
                live = {"ringing_at": adapter.call.ringing_at,
                        "answer_at": adapter.call.answer_at}
            return {"found": True, "ladder": engine.ladders.render(found, live)}
        answers = await self._ask_workers(request)
        for answer in answers:
            if answer.get("found"):
                return dict(answer)
        reasons = [found, *(str(answer.get("reason")) for answer in answers)]
        params = engine.params
        return {"found": False,
                "reason": next((r for r in reasons if r != UNKNOWN), UNKNOWN),
                "policy": params["SS_SIP_LADDERS"], "age": params["SS_SIP_LADDERS_AGE"],
                "size": params["SS_SIP_LADDERS_SIZE"]}

    def _status(self, _request: dict[str, Any]) -> dict[str, Any]:
        return {
            "uptime": round(time.time() - self.engine.started_at, 3),
            "sip_listen": str(self.engine.options.sip_listen),
            "params": self.engine.params.values,
            "params_loaded_at": self.engine.params.loaded_at,
            "config_reloads": self.engine.watcher.reloads,
            "mapping_gateways": len(self.engine.gateways.mapping),
            "routing_gateways": len(self.engine.gateways.routing),
            "gc": self.engine.collector.snapshot(),
            "db_writer": self.engine.writer.snapshot(),
            "signalling": (self.engine.workers.snapshot() if self.engine.workers is not None
                           else {"workers": 1, "dispatcher": None, "restarts": []}),
            "malformed_frames": dict(ipc.malformed),
            "cluster": self.engine.cluster_snapshot(),
        }
