"""RTP payload ciphers for legs with RTP encryption (SS_RTPENCRYPTIONMODE / SS_RTPENCRYPTIONKEY).

Only the payload is touched: the fixed header, the CSRC list and the header extension
go out as they came in, and the packet length never changes. Every mode is a keystream
XORed onto the payload (padding included, as in SRTP), so encryption and decryption are
the same operation, and the keystream of a packet depends only on the shared key and
that packet's SSRC, timestamp and sequence number: any packet decrypts on its own, in
any order, after any loss. No state is kept between packets.

Wire formats (``docs/rtp-encryption.md`` has the full description and test vectors):

* mode 0, none: the packet unchanged.
* mode 1, XOR: ``payload[i] ^= key[i % len(key)]`` from the first payload byte of every
  packet (the key repeats from payload offset 0; no per-packet variation).
* mode 2, RC4: per-packet RC4 key ``BLAKE2s(outlen=16, key=K, data=SSRC|TS|SEQ)``; the
  first 256 keystream bytes are discarded (RC4-drop[256]); the rest is XORed onto the
  payload.
* mode 3, AES128: AES-128-CTR with the 16-byte initial counter block
  ``SSRC(4) | TS(4) | SEQ(2) | 000000000000``, the last 6 bytes counting the 16-byte
  blocks of the payload (big-endian). Identical to AES-CTR with that IV.

Packets that are not well-formed RTP (see :mod:`b2bua.media.rtp`), and RTCP multiplexed
on the RTP port, are passed through unchanged by :meth:`PayloadCipher.encrypt` and
:meth:`PayloadCipher.decrypt` and counted in ``malformed`` / ``rtcp``; nothing here
raises on packet content. The relay drops malformed packets before they get here.

Performance (see the anchors): no cipher object is built per packet except RC4's, whose
key schedule is the algorithm; AES uses one long-lived ECB context applied to the counter
blocks, XOR and the keystream application use ``int.from_bytes`` on the whole packet
(the keystream integer is smaller than 2**(8*payload_len), so the header bits are XORed
with zero and come out unchanged).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from b2bua.media.rtp import payload_offset

__all__ = [
    "MODE_AES128",
    "MODE_NAMES",
    "MODE_NONE",
    "MODE_RC4",
    "MODE_XOR",
    "Aes128Cipher",
    "NullCipher",
    "PayloadCipher",
    "Rc4Cipher",
    "XorCipher",
    "make_cipher",
]

MODE_NONE = 0
MODE_XOR = 1
MODE_RC4 = 2
MODE_AES128 = 3
MODE_NAMES = {MODE_NONE: "none", MODE_XOR: "XOR", MODE_RC4: "RC4", MODE_AES128: "AES128"}

RC4_DROP = 256  # keystream bytes discarded after each per-packet RC4 key schedule
RC4_MAX_KEY = 32  # BLAKE2s key limit
XOR_MAX_KEY = 256  # SS_RTPENCRYPTIONKEY's max_length

# Bounded caches of per-length keystream material (RTP streams use a handful of sizes).
_CACHE_ENTRIES = 64
_CACHE_MAX_BYTES = 2048

_from_bytes = int.from_bytes


class PayloadCipher:
    """Mode 0 (and the interface): whole RTP packet in, whole packet out.

    :meth:`apply` is the relay's fast path: it takes the payload offset the caller has
    already validated. :meth:`encrypt` / :meth:`decrypt` validate first.
    """

    mode: int = MODE_NONE

    def __init__(self, key: bytes = b"") -> None:
        self.key = key
        self.malformed = 0  # packets passed through unchanged: not well-formed RTP
        self.rtcp = 0  # RTCP multiplexed on the RTP port, passed through unchanged

    @property
    def name(self) -> str:
        return MODE_NAMES[self.mode]

    @property
    def identity(self) -> bool:
        """True when the cipher never changes a packet (mode 0)."""
        return self.mode == MODE_NONE

    def same_keystream(self, other: PayloadCipher) -> bool:
        """True when both produce the same keystream (then decrypt+encrypt is a no-op)."""
        return self.mode == other.mode and (self.mode == MODE_NONE or self.key == other.key)

    def apply(self, packet: bytes, offset: int) -> bytes:
        """XOR this packet's keystream onto ``packet[offset:]``; ``offset`` must be valid."""
        return packet

    def encrypt(self, packet: bytes) -> bytes:
        off = payload_offset(packet)
        if off is None:
            if len(packet) >= 2 and 192 <= packet[1] <= 223 and packet[0] & 0xC0 == 0x80:
                self.rtcp += 1
            else:
                self.malformed += 1
            return packet
        return self.apply(packet, off)

    def decrypt(self, packet: bytes) -> bytes:
        # A keystream XOR is its own inverse.
        return self.encrypt(packet)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} mode={self.mode} ({self.name})>"


class NullCipher(PayloadCipher):
    """Mode 0: no encryption."""


class XorCipher(PayloadCipher):
    """Mode 1: the key repeated from the first payload byte of every packet."""

    mode = MODE_XOR

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("XOR (mode 1) needs a non-empty key")
        if len(key) > XOR_MAX_KEY:
            raise ValueError(f"XOR (mode 1) key is {len(key)} bytes; at most {XOR_MAX_KEY}")
        super().__init__(key)
        self._masks: dict[int, int] = {}

    def _mask(self, n: int) -> int:
        key = self.key
        mask = _from_bytes((key * (n // len(key) + 1))[:n], "big")
        if n <= _CACHE_MAX_BYTES and len(self._masks) < _CACHE_ENTRIES:
            self._masks[n] = mask
        return mask

    def apply(self, packet: bytes, offset: int) -> bytes:
        total = len(packet)
        n = total - offset
        if n <= 0:
            return packet
        mask = self._masks.get(n)
        if mask is None:
            mask = self._mask(n)
        return (_from_bytes(packet, "big") ^ mask).to_bytes(total, "big")


class Rc4Cipher(PayloadCipher):
    """Mode 2: RC4-drop[256] re-keyed per packet with BLAKE2s-128(K, SSRC|TS|SEQ)."""

    mode = MODE_RC4

    def __init__(self, key: bytes) -> None:
        if not 1 <= len(key) <= RC4_MAX_KEY:
            raise ValueError(
                f"RC4 (mode 2) needs a key of 1 to {RC4_MAX_KEY} bytes; it has {len(key)}"
            )
        super().__init__(key)
        self._drop = bytes(RC4_DROP)

    def packet_key(self, packet: bytes) -> bytes:
        """The per-packet RC4 key: BLAKE2s, 16-byte digest, keyed with K, over SSRC|TS|SEQ."""
        return hashlib.blake2s(
            packet[8:12] + packet[4:8] + packet[2:4], digest_size=16, key=self.key
        ).digest()

    def apply(self, packet: bytes, offset: int) -> bytes:
        if offset >= len(packet):
            return packet
        k = hashlib.blake2s(
            packet[8:12] + packet[4:8] + packet[2:4], digest_size=16, key=self.key
        ).digest()
        return packet[:offset] + Cipher(ARC4(k), None).encryptor().update(
            self._drop + packet[offset:]
        )[RC4_DROP:]


class Aes128Cipher(PayloadCipher):
    """Mode 3: AES-128-CTR, counter block SSRC|TS|SEQ|block-index(6), from one ECB context."""

    mode = MODE_AES128

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ValueError(f"AES128 (mode 3) needs a key of exactly 16 bytes; it has {len(key)}")
        super().__init__(key)
        # ECB on whole blocks is stateless per call: one context serves every packet.
        self._ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        # nblocks -> (R, IDX): counter blocks for prefix P are P*R + IDX (see _layout).
        self._layouts: dict[int, tuple[int, int]] = {}

    def _layout(self, nblocks: int) -> tuple[int, int]:
        # Block i (0-based, most significant first) is P << 48 | i, P = SSRC|TS|SEQ (80 bits).
        shift = 128 * (nblocks - 1)
        r = 0
        idx = 0
        for i in range(nblocks):  # bounded: nblocks <= 4096 (a 64 KiB datagram)
            r |= 1 << (shift - 128 * i + 48)
            idx |= i << (shift - 128 * i)
        if nblocks * 16 <= _CACHE_MAX_BYTES and len(self._layouts) < _CACHE_ENTRIES:
            self._layouts[nblocks] = (r, idx)
        return r, idx

    def keystream(self, packet: bytes, length: int) -> bytes:
        """``length`` keystream bytes for this packet's SSRC, timestamp and sequence."""
        nblocks = (length + 15) >> 4
        layout = self._layouts.get(nblocks)
        if layout is None:
            layout = self._layout(nblocks)
        r, idx = layout
        prefix = _from_bytes(packet[8:12] + packet[4:8] + packet[2:4], "big")
        blocks = (prefix * r + idx).to_bytes(nblocks << 4, "big")
        return self._ecb.update(blocks)[:length]

    def apply(self, packet: bytes, offset: int) -> bytes:
        total = len(packet)
        n = total - offset
        if n <= 0:
            return packet
        nblocks = (n + 15) >> 4
        layout = self._layouts.get(nblocks)
        if layout is None:
            layout = self._layout(nblocks)
        r, idx = layout
        prefix = _from_bytes(packet[8:12] + packet[4:8] + packet[2:4], "big")
        ks = self._ecb.update((prefix * r + idx).to_bytes(nblocks << 4, "big"))
        return (_from_bytes(packet, "big") ^ _from_bytes(ks[:n], "big")).to_bytes(total, "big")


def make_cipher(mode: int, key: bytes | str = b"") -> PayloadCipher:
    """The payload cipher for SS_RTPENCRYPTIONMODE ``mode`` and SS_RTPENCRYPTIONKEY ``key``.

    A ``str`` key is UTF-8 encoded (as the registry measures it). Raises ``ValueError``
    for an unknown mode or a key the mode cannot use: AES128 needs exactly 16 bytes, RC4
    1 to 32 bytes, XOR 1 to 256 bytes; mode 0 ignores the key.
    """
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if mode == MODE_NONE:
        return NullCipher()
    if mode == MODE_XOR:
        return XorCipher(raw)
    if mode == MODE_RC4:
        return Rc4Cipher(raw)
    if mode == MODE_AES128:
        return Aes128Cipher(raw)
    raise ValueError(
        f"unknown RTP encryption mode {mode!r}; expected 0 none, 1 XOR, 2 RC4, 3 AES128"
    )
