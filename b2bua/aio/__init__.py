"""The asyncio adapters: the only code that touches sockets, the event loop's timers and
tasks for the SIP side. Everything they drive is sans-IO and unit-tested without them.

- ``transport``: the UDP and TCP SIP transports (datagrams and framed streams in,
  bytes out).
- ``dispatched``: a signalling worker's datagram channel from the dispatcher, and the
  shared SIP socket it sends on.
- ``timers``: the event loop's timers for the transaction layer (long waits swept) and
  for calls.
- ``call_adapter``: one call's adapter: carries out the actions of the call's core
  (``b2bua/calls/call.py``) and feeds it what comes of them.
"""
