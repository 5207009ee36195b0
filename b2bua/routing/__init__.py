"""Gateways and the order calls are routed in."""
