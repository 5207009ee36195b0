"""What a call may ask of the switch while it runs: read-only questions (routing plans,
whether a gateway is usable, a phone's binding, parameters), the identifiers it needs
for new dialogs, and its relay session. The switchboard answers them in the engine; a
unit test answers them with plain objects. Nothing here sends, waits or writes."""

from __future__ import annotations

from typing import Protocol

from b2bua.calls.anchor import MediaAnchor
from b2bua.calls.endpoints import Destination, Origin
from b2bua.config.live import Params
from b2bua.controls.rates import CallRate
from b2bua.numbers.rules import NumberTables
from b2bua.routing.dns import Plan
from b2bua.routing.gateways import RoutingGateway
from b2bua.routing.select import RoutePlan
from b2bua.sip.message import Request


class CallStatsLike(Protocol):
    refused_by_lists: int
    dns_failures: int


class CallContext(Protocol):
    params: Params
    numbers: NumberTables
    node: str  # this node's name in a cluster ("" for a switch on its own)

    @property
    def stats(self) -> CallStatsLike: ...

    @property
    def advertised_host(self) -> str: ...

    @property
    def sent_by(self) -> str: ...

    def contact(self, transport: str) -> str: ...

    def new_call_id(self) -> str: ...

    def phone_destination(self, callee: str, now: float
                          ) -> tuple[Destination | None, int, str] | None: ...

    def plan_route(self, callee: str, now: float) -> RoutePlan: ...

    def gateway_usable(self, gw: RoutingGateway, now: float) -> bool: ...

    def vendor_plan(self, gw: RoutingGateway) -> Plan: ...

    def reservation(self, hop: Destination | RoutingGateway
                    ) -> tuple[tuple[str, int], int | None, CallRate | None] | None:
        """What to ask before dialling ``hop``: its counter, the capacity to reserve a
        place under (a cluster node's vendor or phone with a capacity) and the call rate
        to pass (a vendor with a limit); None: dial at once."""
        ...

    def duration_limit(self, origin: Origin) -> int:
        """A new call's longest talk time in seconds (0: none), drawn in its origin's
        range, else the system's."""
        ...

    def origin_media_check(self, origin: Origin) -> str: ...

    def new_media(self, invite: Request, origin: Origin, caller_nat: bool
                  ) -> MediaAnchor | None:
        """The media anchor of a call whose media is relayed (its streams not bound
        yet), None when this engine has no relay."""
        ...
