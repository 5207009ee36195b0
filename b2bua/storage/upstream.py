"""The registrations to vendors the engine keeps (b2bua/upstream/manager.py)."""

from __future__ import annotations

from b2bua.storage.backend import Database
from b2bua.upstream.manager import VendorRegistration


def vendor_registrations(database: Database) -> list[VendorRegistration]:
    """The enabled registrations of enabled routing gateways."""
    rows = database.rows(
        "SELECT r.*, g.name AS gw_name, g.host AS gw_host, g.port AS gw_port, "
        "g.transport AS gw_transport, g.enabled AS gw_enabled "
        "FROM gateway_registrations r JOIN routing_gateways g "
        "ON g.id = r.routing_gateway_id")
    return [
        VendorRegistration(
            gateway_id=int(r["routing_gateway_id"]),
            gateway_name=str(r["gw_name"]),
            gateway_host=str(r["gw_host"]),
            gateway_port=None if r["gw_port"] is None else int(r["gw_port"]),
            gateway_transport=str(r["gw_transport"]),
            registrar=r["registrar"],
            username=str(r["username"]),
            auth_username=r["auth_username"],
            password=r["password"],
            host_name=r["host_name"],
            expire=r["expire"],
        )
        for r in rows if r["enabled"] and r["gw_enabled"]
    ]
