"""The policy stage: who is this request from, and may it hear anything back?

Runs on every new out-of-dialog request before anything is sent, including before
any ``100 Trying``. Classification order, most specific first:

1. a mapping gateway in ``ip_port`` mode whose IP and port both match the source;
2. a mapping gateway in ``ip`` mode whose IP list holds the source IP;
3. a routing gateway whose host is the source IP (a vendor calling us, or a vendor's
   OPTIONS ping);
4. unknown.

Among several gateways of the same class on one address, the lowest id wins.
An unknown source gets 403 when ``SS_REPLY_UNAUTHORIZED`` is On and not one byte
when it is Off.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from b2bua.routing.gateways import GatewayDirectory, MappingGateway, RoutingGateway
from b2bua.sip.transport import Peer


class SourceKind(Enum):
    MAPPING_GATEWAY = "mapping_gateway"
    ROUTING_GATEWAY = "routing_gateway"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Classification:
    kind: SourceKind
    mapping: MappingGateway | None = None
    routing: RoutingGateway | None = None


UNKNOWN = Classification(SourceKind.UNKNOWN)


def classify(source: Peer, gateways: GatewayDirectory) -> Classification:
    candidates = gateways.mapping_by_ip.get(source.host, ())
    by_port = [gw for gw in candidates
               if gw.enabled and gw.auth_mode == "ip_port" and gw.port == source.port]
    if by_port:
        return Classification(SourceKind.MAPPING_GATEWAY, mapping=by_port[0])
    by_ip = [gw for gw in candidates if gw.enabled and gw.auth_mode == "ip"]
    if by_ip:
        return Classification(SourceKind.MAPPING_GATEWAY, mapping=by_ip[0])
    vendors = [gw for gw in gateways.routing_by_ip.get(source.host, ()) if gw.enabled]
    if vendors:
        return Classification(SourceKind.ROUTING_GATEWAY, routing=vendors[0])
    return UNKNOWN
