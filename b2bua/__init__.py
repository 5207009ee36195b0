"""Carrier SIP softswitch engine: a B2BUA with trunk authentication, registrar and routing."""
