"""RTP header parsing and the payload ciphers (SS_RTPENCRYPTIONMODE 0-3).

The VECTORS below are the ones published in docs/rtp-encryption.md; each is also
checked against an independent reference implementation written here.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.media.cipher import Aes128Cipher, Rc4Cipher, make_cipher
from b2bua.media.rtp import is_rtcp, is_rtp, parse_header, payload_offset

H1 = "800012340001e240deadbeef"  # V=2, PT 0, seq 0x1234, ts 123456, SSRC 0xdeadbeef
# V=2, X=1, CC=1, seq 0x1235, ts 123616, SSRC 0xdeadbeef, CSRC 0x01020304,
# one-byte header extension (0xBEDE, 1 word: 10 aa 00 00).
H2 = "910012350001e2e0deadbeef01020304bede000110aa0000"
PLAIN = "000102030405060708090a0b0c0d0e0f10111213"

XOR_KEY = "566f734b6579"  # "VosKey"
RC4_KEY = "30313233343536373839616263646566"  # "0123456789abcdef"
AES_KEY = "000102030405060708090a0b0c0d0e0f"

# (mode, key hex, header hex, plaintext payload hex, ciphertext payload hex)
VECTORS = [
    (0, "", H1, PLAIN, PLAIN),
    (1, XOR_KEY, H1, PLAIN, "566e7148617c50687b426f725a627d447568447c"),
    (1, XOR_KEY, H2, PLAIN, "566e7148617c50687b426f725a627d447568447c"),
    (2, RC4_KEY, H1, PLAIN, "4eda016332a27cf061b20396c8db0cf902d0a9b4"),
    (2, RC4_KEY, H2, PLAIN, "7b886574840040d2d080f29436a88ea9a71fa3f2"),
    (3, AES_KEY, H1, PLAIN, "ecedb699f48029f8cfee3be1dc13d10d02b1387c"),
    (3, AES_KEY, H2, PLAIN, "370c54d4b3e35e750b9c605e085701393bcb46a3"),
]


# -- independent references ----------------------------------------------------------------

def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) & 0xFF])
    return bytes(out)


def reference(mode: int, key: bytes, packet: bytes) -> bytes:
    off = payload_offset(packet)
    assert off is not None
    header, payload = packet[:off], packet[off:]
    nonce = packet[8:12] + packet[4:8] + packet[2:4]  # SSRC | TS | SEQ
    if mode == 0:
        return packet
    if mode == 1:
        return header + bytes(b ^ key[i % len(key)] for i, b in enumerate(payload))
    if mode == 2:
        k = hashlib.blake2s(nonce, digest_size=16, key=key).digest()
        return header + _rc4(k, bytes(256) + payload)[256:]
    ctr = Cipher(algorithms.AES(key), modes.CTR(nonce + bytes(6))).encryptor()
    return header + ctr.update(payload)


def rtp(seq: int, ts: int, ssrc: int, payload: bytes, *, pt: int = 0, csrc: int = 0,
        ext: bytes | None = None, padding: bool = False) -> bytes:
    b0 = 0x80 | csrc | (0x10 if ext is not None else 0) | (0x20 if padding else 0)
    out = bytes([b0, pt]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big")
    out += ssrc.to_bytes(4, "big") + b"".join(i.to_bytes(4, "big") for i in range(1, csrc + 1))
    if ext is not None:
        assert len(ext) % 4 == 0
        out += b"\xbe\xde" + (len(ext) // 4).to_bytes(2, "big") + ext
    return out + payload


KEYS = {0: b"", 1: b"VosKey", 2: b"0123456789abcdef", 3: bytes(range(16))}
MODES = [1, 2, 3]


# -- rtp.py ----------------------------------------------------------------------------------

def test_payload_offset_plain_csrc_extension() -> None:
    assert payload_offset(bytes.fromhex(H1) + b"x") == 12
    assert payload_offset(bytes.fromhex(H2) + b"x") == 24
    assert payload_offset(bytes.fromhex(H1)) == 12  # empty payload is valid
    assert payload_offset(rtp(1, 2, 3, b"abc", csrc=15)) == 12 + 60
    assert payload_offset(rtp(1, 2, 3, b"abc", ext=b"")) == 16
    assert payload_offset(rtp(1, 2, 3, b"abc", csrc=2, ext=bytes(8))) == 12 + 8 + 4 + 8
    hdr = parse_header(bytes.fromhex(H2) + b"pay")
    assert hdr is not None
    assert (hdr.sequence, hdr.timestamp, hdr.ssrc, hdr.csrc_count) == (0x1235, 123616,
                                                                        0xDEADBEEF, 1)
    assert hdr.extension and not hdr.padding and hdr.payload_offset == 24


MALFORMED = {
    "empty": b"",
    "short": bytes.fromhex(H1)[:11],
    "version 0": bytes.fromhex("00" + H1[2:]) + b"p",
    "version 1": bytes.fromhex("40" + H1[2:]) + b"p",
    "version 3": bytes.fromhex("c0" + H1[2:]) + b"p",
    "csrc past end": bytes.fromhex("8f" + H1[2:]) + bytes(20),
    "extension header cut": bytes.fromhex("90" + H1[2:]) + b"\xbe\xde",
    "extension length past end": bytes.fromhex("90" + H1[2:]) + b"\xbe\xde\x00\x05" + bytes(8),
    "csrc and extension past end": bytes.fromhex("93" + H1[2:]) + bytes(12) + b"\xbe\xde",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_is_not_rtp(name: str) -> None:
    data = MALFORMED[name]
    assert payload_offset(data) is None
    assert not is_rtp(data)
    assert parse_header(data) is None


def test_rtcp_on_rtp_port_is_not_rtp() -> None:
    sr = bytes.fromhex("80c8000600000001") + bytes(20)  # sender report
    assert is_rtcp(sr)
    assert not is_rtp(sr)
    assert is_rtp(rtp(1, 2, 3, b"x", pt=0x7F))  # PT 127 with marker clear is RTP


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=120))
def test_payload_offset_never_raises(data: bytes) -> None:
    off = payload_offset(data)
    assert off is None or 12 <= off <= len(data)


# -- vectors -------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "key", "header", "plain", "cipher"), VECTORS)
def test_vectors(mode: int, key: str, header: str, plain: str, cipher: str) -> None:
    c = make_cipher(mode, bytes.fromhex(key))
    packet = bytes.fromhex(header + plain)
    encrypted = c.encrypt(packet)
    assert encrypted.hex() == header + cipher
    assert c.decrypt(encrypted) == packet
    assert reference(mode, bytes.fromhex(key), packet).hex() == header + cipher


def test_vectors_are_the_ones_in_the_doc() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "rtp-encryption.md").read_text()
    names = {H1: "H1", H2: "H2"}
    keys = {"": "(none)", XOR_KEY: "XOR key", RC4_KEY: "RC4 key", AES_KEY: "AES key"}
    for mode, key, header, _plain, cipher in VECTORS:
        row = f"| {mode} | {keys[key]} | {names[header]} | `{cipher}` |"
        assert row in doc, row
    for value in (H1, H2, PLAIN, XOR_KEY, RC4_KEY, AES_KEY):
        assert f"`{value}`" in doc
    assert "`be7312774db01297c585f974b38a4a45`" in doc
    assert "`9299d264ba4b0f332e239e5bd08315f4`" in doc


def test_intermediate_values_in_the_doc() -> None:
    rc4 = make_cipher(2, bytes.fromhex(RC4_KEY))
    assert isinstance(rc4, Rc4Cipher)
    assert rc4.packet_key(bytes.fromhex(H1)).hex() == "be7312774db01297c585f974b38a4a45"
    assert rc4.packet_key(bytes.fromhex(H2)).hex() == "9299d264ba4b0f332e239e5bd08315f4"
    aes = make_cipher(3, bytes.fromhex(AES_KEY))
    assert isinstance(aes, Aes128Cipher)
    assert aes.keystream(bytes.fromhex(H1), 32).hex() == (
        "ececb49af0852fffc7e731ead01edf02" "12a02a6f983b8559d87dd3db62a9a15f")


# -- properties ----------------------------------------------------------------------------

def _stream(n: int, seed: int = 1, ssrc: int = 0x11223344) -> list[bytes]:
    rnd = random.Random(seed)
    ts0 = rnd.getrandbits(32)
    seq0 = rnd.getrandbits(16)
    sizes = [0, 1, 15, 16, 17, 31, 32, 33, 160, 172, 320, 1400]
    out = []
    for i in range(n):
        size = sizes[i % len(sizes)]
        payload = rnd.randbytes(size)
        kw: dict[str, object] = {}
        if i % 5 == 1:
            kw["csrc"] = 2
        if i % 7 == 3:
            kw["ext"] = rnd.randbytes(8)
        out.append(rtp((seq0 + i) & 0xFFFF, (ts0 + 160 * i) & 0xFFFFFFFF, ssrc, payload,
                       pt=rnd.choice([0, 8, 18, 101]), **kw))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("mode", [0, *MODES])
def test_round_trip_header_untouched_length_preserved(mode: int) -> None:
    c = make_cipher(mode, KEYS[mode])
    for packet in _stream(200):
        off = payload_offset(packet)
        assert off is not None
        encrypted = c.encrypt(packet)
        assert len(encrypted) == len(packet)
        assert encrypted[:off] == packet[:off]
        assert encrypted == reference(mode, KEYS[mode], packet)
        if mode and len(packet) - off >= 8:
            assert encrypted[off:] != packet[off:]
        assert c.decrypt(encrypted) == packet
    assert c.malformed == 0


@pytest.mark.parametrize("mode", MODES)
def test_each_packet_decrypts_alone(mode: int) -> None:
    sender = make_cipher(mode, KEYS[mode])
    plain = _stream(300, seed=7)
    encrypted = [sender.encrypt(p) for p in plain]
    order = list(range(len(plain)))
    random.Random(3).shuffle(order)
    kept = order[: len(order) * 2 // 3]  # a third lost, the rest reordered
    receiver = make_cipher(mode, KEYS[mode])  # a separate instance: no shared state
    for i in kept:
        assert receiver.decrypt(encrypted[i]) == plain[i]


@pytest.mark.parametrize("mode", MODES)
def test_key_mismatch_garbles(mode: int) -> None:
    wrong_key = bytes(reversed(KEYS[mode]))
    if mode == 1:
        wrong_key = b"VosKez"
    sender = make_cipher(mode, KEYS[mode])
    receiver = make_cipher(mode, wrong_key)
    for packet in _stream(50, seed=9):
        off = payload_offset(packet)
        assert off is not None
        out = receiver.decrypt(sender.encrypt(packet))
        assert out[:off] == packet[:off]
        if len(packet) - off >= 16:
            assert out[off:] != packet[off:]


@pytest.mark.parametrize("mode", MODES)
def test_keystream_varies_per_packet(mode: int) -> None:
    c = make_cipher(mode, KEYS[mode])
    payload = bytes(160)
    a = c.encrypt(rtp(1, 160, 5, payload))[12:]
    b = c.encrypt(rtp(2, 320, 5, payload))[12:]
    if mode == 1:
        assert a == b  # XOR: the same repeating key on every packet (VOS-style)
    else:
        assert a != b
        assert c.encrypt(rtp(1, 160, 6, payload))[12:] != a  # SSRC is in the nonce


@pytest.mark.parametrize("mode", [0, *MODES])
def test_malformed_passed_through_unchanged_and_counted(mode: int) -> None:
    c = make_cipher(mode, KEYS[mode])
    for data in MALFORMED.values():
        assert c.encrypt(data) == data
        assert c.decrypt(data) == data
    assert c.malformed == 2 * len(MALFORMED)
    sr = bytes.fromhex("80c8000600000001") + bytes(20)
    assert c.encrypt(sr) == sr  # RTCP is never encrypted
    assert c.rtcp == 1


@pytest.mark.parametrize("mode", MODES)
def test_padding_is_encrypted_with_the_payload(mode: int) -> None:
    c = make_cipher(mode, KEYS[mode])
    packet = rtp(9, 99, 999, b"abcdefgh" + b"\x00\x00\x00\x04", padding=True)
    out = c.encrypt(packet)
    assert out[:12] == packet[:12] and out[12:] != packet[12:]
    assert c.decrypt(out) == packet


@pytest.mark.parametrize("mode", MODES)
def test_large_payloads_beyond_the_caches(mode: int) -> None:
    c = make_cipher(mode, KEYS[mode])
    for size in (2047, 2048, 2049, 9000, 65000):
        packet = rtp(size & 0xFFFF, size, 77, random.Random(size).randbytes(size))
        out = c.encrypt(packet)
        assert out == reference(mode, KEYS[mode], packet)
        assert c.decrypt(out) == packet


def test_many_lengths_do_not_grow_caches_unbounded() -> None:
    for mode in MODES:
        c = make_cipher(mode, KEYS[mode])
        for size in range(0, 3000, 7):
            p = rtp(size, size, 1, bytes(size))
            assert c.decrypt(c.encrypt(p)) == p
        caches = [v for v in vars(c).values() if isinstance(v, dict)]
        assert all(len(cache) <= 64 for cache in caches)


# -- construction --------------------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 1, 15, 17, 32])
def test_aes_needs_16_bytes(length: int) -> None:
    with pytest.raises(ValueError, match="exactly 16 bytes"):
        make_cipher(3, bytes(length))


def test_bad_keys_and_modes() -> None:
    with pytest.raises(ValueError, match="unknown RTP encryption mode"):
        make_cipher(4, b"k")
    with pytest.raises(ValueError, match="XOR"):
        make_cipher(1, b"")
    with pytest.raises(ValueError, match="RC4"):
        make_cipher(2, b"")
    with pytest.raises(ValueError, match="RC4"):
        make_cipher(2, bytes(33))


def test_str_key_is_utf8_and_mode_zero_is_identity() -> None:
    assert make_cipher(3, "0123456789abcdef").key == b"0123456789abcdef"
    with pytest.raises(ValueError):
        make_cipher(3, "0123456789abcdeé")  # 17 bytes in UTF-8
    null = make_cipher(0, "ignored")
    assert null.identity
    packet = rtp(1, 2, 3, b"payload")
    assert null.encrypt(packet) is packet
    for length in (2, 5, 7, 8, 10, 16, 20, 24, 32):  # the registry's RC4 lengths all work
        c = make_cipher(2, bytes(range(length)))
        assert c.decrypt(c.encrypt(packet)) == packet


def test_same_keystream() -> None:
    a = make_cipher(3, bytes(16))
    assert a.same_keystream(make_cipher(3, bytes(16)))
    assert not a.same_keystream(make_cipher(3, bytes(15) + b"\x01"))
    assert not a.same_keystream(make_cipher(2, bytes(16)))
    assert make_cipher(0).same_keystream(make_cipher(0, b"x"))
