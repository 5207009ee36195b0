"""Files the lab's sipp peers use: the scenarios shipped in ``b2bua/lab/scenarios/`` and
a generated test tone (``tone.pcmu``, raw G.711 mu-law) that the customer plays as RTP.

They are copied into ``STATE/assets/`` at ``lab up``, where sipp runs, so operators can
read and change them there.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

SCENARIOS = ("customer_call.xml", "customer_load.xml", "vendor_answer.xml")
TONE = "tone.pcmu"
TONE_HZ = 440
TONE_SECONDS = 1
RATE = 8000


def install(folder: Path) -> None:
    """Write the scenarios and the tone into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = resources.files("b2bua.lab").joinpath("scenarios")
    for name in SCENARIOS:
        (folder / name).write_bytes(source.joinpath(name).read_bytes())
    (folder / TONE).write_bytes(tone())


def tone(hz: int = TONE_HZ, seconds: int = TONE_SECONDS) -> bytes:
    """A sine tone as raw G.711 mu-law (8 kHz, no header): what a PCMU stream carries.
    sipp cuts it into 160-byte RTP payloads as it is (it would send a WAV header too)."""
    return bytes(ulaw(round(8000 * math.sin(2 * math.pi * hz * i / RATE)))
                 for i in range(RATE * seconds))


def ulaw(sample: int) -> int:
    """One 16-bit linear sample as a G.711 mu-law byte."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF
