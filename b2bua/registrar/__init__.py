"""Phones: accounts, registrations (bindings), NAT detection and NAT keep-alive."""
