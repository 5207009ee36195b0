"""Calls: what the softswitch does between a caller and its destinations.

- ``switchboard``: the SIP stack's application; new calls and in-dialog dispatch.
- ``call``: one bridged call, the caller's leg and its outbound attempts.
- ``attempt``, ``attempt_state``: one INVITE to one destination, and its state table.
- ``failover``: the gateway switching rules, pure decisions.
- ``endpoints``: where a call comes from and where an attempt goes.
- ``anchor``: the media relay of a call and the SDP rewritten around it.
- ``liveness``: session timers and the liveness re-INVITE.
- ``counts``: capacities and holds, exact across signalling workers.
- ``cdr``, ``recovery``: the call's record, and the records of calls a crash cut.
"""
