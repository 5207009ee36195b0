"""Calls: what the softswitch does between a caller and its destinations.

The core is sans-IO: events and ``now`` in, actions out (``docs/architecture.md``, "The
call"). Its asyncio adapter is ``b2bua/aio/call_adapter.py``.

- ``switchboard``: the SIP stack's application; new calls and in-dialog dispatch, and
  the answers to what a call asks of the switch (``context``).
- ``call``: the core of one bridged call, the caller's leg and its outbound attempts;
  ``call_state``: its state table.
- ``events``, ``actions``: what the core takes and what it returns.
- ``context``: the read-only questions a call asks (routing plans, gateway state, a
  phone's binding, parameters).
- ``attempt``, ``attempt_state``: one INVITE to one destination, and its state table.
- ``failover``: the gateway switching rules, pure decisions.
- ``endpoints``: where a call comes from and where an attempt goes.
- ``anchor``: the media relay of a call and the SDP rewritten around it.
- ``liveness``: session timers and the liveness re-INVITE.
- ``counts``: capacities and holds, exact across signalling workers.
- ``cdr``, ``recovery``: the call's record, and the records of calls a crash cut.
"""
