"""The lab: a carrier network on one machine, built from network namespaces.

``softswitch lab up|down|status|call`` (``b2bua/lab/cli.py``) builds the topology of
``docs/lab.md``: a customer trunk, a phone behind a masquerading NAT, a dead vendor and a
second softswitch reached over RTP-encrypted legs that hands calls to a live vendor, all
around the softswitch under test in the root namespace.

Modules: ``plan`` (names, addresses, ports), ``topology`` (namespaces, links, NAT),
``peers`` (processes and their pid files), ``state`` (the state folder and ``lab.json``),
``api`` (a small REST client), ``provision`` (configuring both softswitches),
``assets`` (sipp scenarios and the test tone), ``lifecycle`` (up, down, status),
``call`` (the scripted call), ``cli`` (the ``lab`` command).
"""
