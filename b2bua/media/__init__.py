"""Media plane: RTP header parsing, payload ciphers, SDP rewriting and the RTP relay.

* :mod:`b2bua.media.rtp`: RTP header length and validity.
* :mod:`b2bua.media.cipher`: ``make_cipher(mode, key)`` for SS_RTPENCRYPTIONMODE 0-3.
* :mod:`b2bua.media.sdp`: SDP connection/port extraction and rewrite toward the relay.
* :mod:`b2bua.media.relay`: ``PortAllocator``, ``RelaySession`` / ``RelayLeg`` (data plane).
"""
