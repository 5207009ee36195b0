"""The relay's ciphers in C (b2bua/media/rtpcipher.c, as ``_pump.NativeCipher``) against
the Python ciphers (b2bua/media/cipher.py): the same bytes for every mode, key and
packet shape; RC4 against RFC 6229's vectors; AES128 against the published vectors of
docs/rtp-encryption.md and against ``cryptography``'s AES-CTR."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.media._pump import NativeCipher, rc4_keystream
from b2bua.media.cipher import make_cipher

H1 = bytes.fromhex("800012340001e240deadbeef")
H2 = bytes.fromhex("910012350001e2e0deadbeef01020304bede000110aa0000")
PLAIN = bytes(range(20))

# docs/rtp-encryption.md, "Test vectors": (mode, key, header, ciphertext payload).
PUBLISHED = [
    (1, b"VosKey", H1, "566e7148617c50687b426f725a627d447568447c"),
    (1, b"VosKey", H2, "566e7148617c50687b426f725a627d447568447c"),
    (2, b"0123456789abcdef", H1, "4eda016332a27cf061b20396c8db0cf902d0a9b4"),
    (2, b"0123456789abcdef", H2, "7b886574840040d2d080f29436a88ea9a71fa3f2"),
    (3, bytes(range(16)), H1, "ecedb699f48029f8cfee3be1dc13d10d02b1387c"),
    (3, bytes(range(16)), H2, "370c54d4b3e35e750b9c605e085701393bcb46a3"),
]

# RFC 6229, section 2: the keystream at each offset for the keys 0x0102...
RFC6229_OFFSETS = [0, 16, 240, 256, 496, 512, 752, 768, 1008, 1024, 1520, 1536, 2032, 2048,
                   3056, 3072, 4080, 4096]
RFC6229 = {
    "0102030405": """
        b2396305f03dc027ccc3524a0a1118a8 6982944f18fc82d589c403a47a0d0919
        28cb1132c96ce286421dcaadb8b69eae 1cfcf62b03eddb641d77dfcf7f8d8c93
        42b7d0cdd918a8a33dd51781c81f4041 6459844432a7da923cfb3eb4980661f6
        ec10327bde2beefd18f9277680457e22 eb62638d4f0ba1fe9fca20e05bf8ff2b
        45129048e6a0ed0b56b490338f078da5 30abbcc7c20b01609f23ee2d5f6bb7df
        3294f744d8f9790507e70f62e5bbceea d8729db41882259bee4f825325f5a130
        1eb14a0c13b3bf47fa2a0ba93ad45b8b cc582f8ba9f265e2b1be9112e975d2d7
        f2e30f9bd102ecbf75aaade9bc35c43c ec0e11c479dc329dc8da7968fe965681
        068326a2118416d21f9d04b2cd1ca050 ff25b58995996707e51fbdf08b34d875""",
    "0102030405060708090a0b0c0d0e0f10": """
        9ac7cc9a609d1ef7b2932899cde41b97 5248c4959014126a6e8a84f11d1a9e1c
        065902e4b620f6cc36c8589f66432f2b d39d566bc6bce30107681515 49f3873f
        b6d1e6c4a5e4771cad79538df295fb11 c68c1d5c559a974123df1dbc52a43b89
        c5ecf88de897fd57fed301701b82a259 eccbe13de1fcc91c11a0b26c0bc8fa4d
        e7a72574f8782ae26aabcf9ebcd66065 bdf0324e6083dcc6d3cedd3ca8c53c16
        b40110c4190b5622a96116b0017ed297 ffa0b514647ec04f6306b892ae661181
        d03d1bc03cd33d70dff9fa5d71963ebd 8a44126411eaa78bd51e8d87a8879bf5
        fabeb76028ade2d0e48722e46c4615a3 c05d88abd50357f935a63c59ee537623
        ff38265c1642c1abe8d3c2fe5e572bf8 a36a4c301ae8ac13610ccbc12256cacc""",
    "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20": """
        eaa6bd25880bf93d3f5d1e4ca2611d91 cfa45c9f7e714b54bdfa80027cb14380
        114ae344ded71b35f2e60febad727fd8 02e1e7056b0f623900496422943e97b6
        91cb93c787964e10d9527d999c6f936b 49b18b42f8e8367cbeb5ef104ba1c7cd
        87084b3ba700bade955610672745b374 e7a7b9e9ec540d5ff43bdb12792d1b35
        c799b596738f6b018c76c74b1759bd90 7fec5bfd9f9b89ce6548309092d7e958
        40f250b26d1f096a4afd4c340a588815 3e34135c79db010200767651cf263073
        f656abccf88dd827027b2ce917d464ec 18b62503bfbc077fbabb98f20d98ab34
        8aed95ee5b0dcbfbef4eb21d3a3f52f9 625a1ab00ee39a5327346bddb01a9c18
        a13a7c79c7e119b5ab0296ab28c300b9 f3e4c0a2e02d1d01f7f0a74618af2b48""",
}


@pytest.mark.parametrize(("key", "table"), RFC6229.items())
def test_rc4_matches_rfc_6229(key: str, table: str) -> None:
    expected = bytes.fromhex("".join(table.split()))
    stream = rc4_keystream(bytes.fromhex(key), 4096 + 16)
    for n, offset in enumerate(RFC6229_OFFSETS):
        assert stream[offset:offset + 16] == expected[16 * n:16 * n + 16], offset


@pytest.mark.parametrize(("mode", "key", "header", "cipher"), PUBLISHED)
def test_the_published_vectors(mode: int, key: bytes, header: bytes, cipher: str) -> None:
    native = NativeCipher(mode, key)
    assert native.apply(header + PLAIN) == header + bytes.fromhex(cipher)
    assert native.apply(header + bytes.fromhex(cipher)) == header + PLAIN


def test_bad_modes_and_keys_are_refused_as_the_python_ciphers_refuse_them() -> None:
    for mode, key in ((4, b"k"), (1, b""), (1, bytes(257)), (2, b""), (2, bytes(33)),
                      (3, bytes(15)), (3, bytes(17))):
        with pytest.raises(ValueError):
            NativeCipher(mode, key)
        with pytest.raises(ValueError):
            make_cipher(mode, key)
    with pytest.raises(ValueError):
        NativeCipher(0, b"k")  # mode 0 changes nothing: the relay builds no cipher for it


def test_an_injected_failure_raises_and_the_next_packet_is_ciphered() -> None:
    native = NativeCipher(3, bytes(range(16)))
    native._inject_failures(1)
    with pytest.raises(RuntimeError):
        native.apply(H1 + PLAIN)
    assert native.apply(H1 + PLAIN) == H1 + bytes.fromhex(PUBLISHED[4][3])


# -- the C path against the Python path on random packets ----------------------------------

KEYS = {1: st.binary(min_size=1, max_size=256), 2: st.binary(min_size=1, max_size=32),
        3: st.binary(min_size=16, max_size=16)}


@st.composite
def rtp_packets(draw: st.DrawFn) -> bytes:
    """Well-formed RTP of every shape: CSRC lists, header extensions, padding, any
    payload length (block multiples and not, empty, up to a jumbo datagram)."""
    cc = draw(st.integers(0, 15))
    ext = draw(st.booleans())
    padding = draw(st.booleans())
    pt = draw(st.sampled_from([0, 8, 18, 96, 101, 127]))  # never an RTCP type
    marker = draw(st.booleans())
    head = bytes([0x80 | (0x20 if padding else 0) | (0x10 if ext else 0) | cc,
                  (0x80 if marker else 0) | pt])
    head += draw(st.binary(min_size=10, max_size=10))  # SEQ, TS, SSRC
    head += draw(st.binary(min_size=4 * cc, max_size=4 * cc))
    if ext:
        words = draw(st.integers(0, 8))
        head += draw(st.binary(min_size=2, max_size=2)) + words.to_bytes(2, "big")
        head += draw(st.binary(min_size=4 * words, max_size=4 * words))
    size = draw(st.one_of(st.integers(0, 64), st.sampled_from([160, 320, 1200, 8000])))
    payload = bytearray(draw(st.binary(min_size=size, max_size=size)))
    if padding and payload:
        payload[-1] = draw(st.integers(1, min(255, len(payload))))  # a readable pad count
    return head + bytes(payload)


@st.composite
def not_rtp(draw: st.DrawFn) -> bytes:
    """What the ciphers pass unchanged: short, version not 2, RTCP multiplexed on the
    port, a CSRC list or header extension running past the end."""
    kind = draw(st.sampled_from(["short", "version", "rtcp", "csrc", "ext"]))
    if kind == "short":
        return draw(st.binary(max_size=11))
    body = draw(st.binary(min_size=10, max_size=40))
    if kind == "version":
        return bytes([draw(st.sampled_from([0x00, 0x40, 0xC0])), 0]) + body
    if kind == "rtcp":
        return bytes([0x80, draw(st.integers(192, 223))]) + body
    if kind == "csrc":
        return bytes([0x8F, 0]) + body[:10] + bytes(4)  # 15 CSRCs announced, 1 present
    return bytes([0x90, 0]) + body[:10] + b"\xbe\xde\x00\x10"  # 16 words, none there


@settings(max_examples=1500, deadline=None)
@given(mode=st.sampled_from([1, 2, 3]), data=st.data(), packet=rtp_packets())
def test_c_and_python_give_the_same_bytes(mode: int, data: st.DataObject, packet: bytes
                                          ) -> None:
    key = data.draw(KEYS[mode])
    native, python = NativeCipher(mode, key), make_cipher(mode, key)
    out = native.apply(packet)
    assert out == python.encrypt(packet)
    assert len(out) == len(packet)
    assert native.apply(out) == packet  # its own inverse


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from([1, 2, 3]), data=st.data(), packet=not_rtp())
def test_what_is_not_rtp_passes_unchanged(mode: int, data: st.DataObject, packet: bytes
                                          ) -> None:
    key = data.draw(KEYS[mode])
    assert NativeCipher(mode, key).apply(packet) == packet == make_cipher(mode, key).encrypt(
        packet)


@settings(max_examples=300, deadline=None)
@given(key=KEYS[2], packet=rtp_packets())
def test_rc4_is_blake2s_keyed_rc4_drop_256(key: bytes, packet: bytes) -> None:
    """Against an independent composition: hashlib's BLAKE2s and cryptography's ARC4."""
    off = _offset(packet)
    nonce = packet[8:12] + packet[4:8] + packet[2:4]
    k = hashlib.blake2s(nonce, digest_size=16, key=key).digest()
    stream = Cipher(ARC4(k), None).encryptor().update(bytes(256 + len(packet) - off))[256:]
    expected = packet[:off] + bytes(a ^ b for a, b in zip(packet[off:], stream, strict=True))
    assert NativeCipher(2, key).apply(packet) == expected


@settings(max_examples=300, deadline=None)
@given(key=KEYS[3], packet=rtp_packets())
def test_aes128_is_aes_ctr_from_the_nonce(key: bytes, packet: bytes) -> None:
    """Against cryptography's AES-CTR with the initial counter block nonce | 0 (48 bits)."""
    off = _offset(packet)
    iv = packet[8:12] + packet[4:8] + packet[2:4] + bytes(6)
    ctr = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    assert NativeCipher(3, key).apply(packet) == packet[:off] + ctr.update(packet[off:])


def _offset(packet: bytes) -> int:
    off = 12 + 4 * (packet[0] & 15)
    if packet[0] & 0x10:
        off += 4 + 4 * int.from_bytes(packet[off + 2:off + 4], "big")
    return off
