"""Every stream of a call through the relay, with sipp at both ends: audio and video
relayed each on its own ports (RTP counted per stream), then a T.38 re-INVITE that turns
the audio stream into UDPTL (not RTP: relayed as it is) and disables the video. Plain,
and with AES128 toward the vendor: every RTP stream is ciphered in the relay's C loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pcapgen
import pytest
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until

SCENARIOS = Path(__file__).parent / "sipp"
AUDIO, VIDEO, IMAGE = 50, 40, 30  # packets each capture plays


def scenario(tmp_path: Path) -> str:
    """The caller's scenario with this test's capture files filled in."""
    files = {
        "AUDIO": pcapgen.write(tmp_path / "audio.pcap",
                               [pcapgen.rtp(i, 8, 0xA0D10) for i in range(AUDIO)]),
        "VIDEO": pcapgen.write(tmp_path / "video.pcap",
                               [pcapgen.rtp(i, 96, 0xF1DE0, 600) for i in range(VIDEO)]),
        "IMAGE": pcapgen.write(tmp_path / "image.pcap",
                               [pcapgen.udptl(i) for i in range(IMAGE)]),
    }
    text = (SCENARIOS / "uac_audio_video_t38.xml").read_text()
    for name, path in files.items():
        text = text.replace("{{" + name + "}}", str(path))
    out = tmp_path / "uac_audio_video_t38.xml"
    out.write_text(text)
    return str(out)


@pytest.mark.parametrize("mode", [0, 3])
def test_audio_video_then_t38_each_stream_relayed(tmp_path: Path, softswitch: Softswitch,
                                                   mode: int) -> None:
    api = softswitch.api
    api.put("/api/v1/parameters/SS_MEDIAPROXYMODE", {"value": "On"})
    if mode:
        api.put("/api/v1/parameters/SS_RTPENCRYPTIONKEY", {"value": "0123456789abcdef"})
        api.put("/api/v1/parameters/SS_RTPENCRYPTIONMODE", {"value": mode})
    vendor_port = free_port(VENDOR_IP)
    api.post("/api/v1/mapping-gateways", {"name": "in", "ips": [CUSTOMER_IP]})
    # The vendor echoes what it gets: ciphered by the relay toward it, deciphered back.
    api.post("/api/v1/routing-gateways", {"name": "out", "host": VENDOR_IP,
                                          "port": vendor_port, "rtp_encryption": bool(mode)})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)
    vendor = sipp(str(SCENARIOS / "uas_audio_video_t38.xml"), tmp_path, VENDOR_IP,
                  vendor_port, extra=["-rtp_echo", "-mi", VENDOR_IP,
                                      "-mp", str(free_port(VENDOR_IP) & ~3)])
    caller = sipp(scenario(tmp_path), tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                  f"127.0.0.1:{softswitch.sip_port}",
                  extra=["-mi", CUSTOMER_IP, "-mp", str(free_port(CUSTOMER_IP) & ~3)])
    try:
        assert caller.wait(40) == 0, caller.output() + softswitch.log()[-3000:]
        assert vendor.wait(10) == 0, vendor.output()
    finally:
        caller.stop()
        vendor.stop()
    items = wait_until(lambda: api.get("/api/v1/cdrs")["items"], timeout=5)
    media: dict[str, Any] = json.loads(items[-1]["media"])
    first, second = media["streams"]
    # Stream 0: the audio, then the fax on the same m= line, relayed as it is.
    assert (first["media"], first["rtp"]) == ("image", False), first
    assert first["caller_to_callee_packets"] == AUDIO + IMAGE, first
    assert first["callee_to_caller_packets"] == AUDIO + IMAGE, first  # echoed back
    assert first["malformed"] == 0
    # Stream 1: the video on its own ports, until the re-INVITE disabled it.
    assert second["media"] == "video" and second["ports"] != first["ports"], second
    assert second["caller_to_callee_packets"] == VIDEO, second
    assert second["callee_to_caller_packets"] == VIDEO, second
    assert media["caller_to_callee_packets"] == AUDIO + IMAGE + VIDEO
    assert media["encryption_mode"] == mode
    assert second["encryption_mode"] == mode  # the video; the fax stream is never ciphered
    assert first["encryption_mode"] == 0
    # Both streams were relayed in C once latched (ciphered or not), nothing dropped.
    assert first["packets_in_c"] > 0 and second["packets_in_c"] > 0, media
    assert media["cipher_errors"] == 0
