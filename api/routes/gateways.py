"""Mapping gateways (customer trunks) and routing gateways (vendor trunks)."""

from __future__ import annotations

from api.control_schemas import CONTROL_JSON_COLUMNS
from api.gateway_schemas import (
    MappingGatewaySchema,
    RoutingGatewaySchema,
    check_mapping_gateway,
    check_routing_gateway,
)
from api.number_schemas import NUMBER_BOOL_COLUMNS, NUMBER_JSON_COLUMNS
from api.resources import Resource
from b2bua.storage import gateway_registrations

mapping_gateways = Resource(
    name="mapping-gateways",
    table="mapping_gateways",
    schema=MappingGatewaySchema,
    json_columns=frozenset({"ips"}) | NUMBER_JSON_COLUMNS | CONTROL_JSON_COLUMNS,
    bool_columns=NUMBER_BOOL_COLUMNS | {"rtp_encryption"},
    write_only=frozenset({"password"}),
    check=check_mapping_gateway,
    summary="mapping gateways (customer trunks)",
)

routing_gateways = Resource(
    name="routing-gateways",
    table="routing_gateways",
    schema=RoutingGatewaySchema,
    json_columns=frozenset({"prefixes", "stop_switch_codes"}) | NUMBER_JSON_COLUMNS
    | CONTROL_JSON_COLUMNS,
    bool_columns=frozenset({"switch_after_ringing", "stop_switch_after_invite_timeout",
                            "stop_switch_after_sdp", "stop_switch_after_rtp_start",
                            "stop_switch_after_busy", "rtp_encryption"}) | NUMBER_BOOL_COLUMNS,
    check=check_routing_gateway,
    summary="routing gateways (vendor trunks)",
    on_delete=gateway_registrations.delete,
)
