"""Builds the C parts: the relay's receive loop and its ciphers (``b2bua/media/_pump.c``,
``rtpcipher.c``), the SIP dispatcher (``b2bua/sip/_dispatch.c``) and the counters the
signalling workers share (``b2bua/_tally.c``); everything else is in ``pyproject.toml``."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra"]

setup(ext_modules=[
    # The relay's ciphers use libcrypto (Debian's libssl-dev to build, libssl3 to run).
    Extension("b2bua.media._pump", ["b2bua/media/_pump.c", "b2bua/media/rtpcipher.c"],
              depends=["b2bua/media/rtpcipher.h"], extra_compile_args=FLAGS,
              libraries=["crypto"]),
    Extension("b2bua._tally", ["b2bua/_tally.c"], extra_compile_args=FLAGS),
    Extension("b2bua.sip._dispatch", ["b2bua/sip/_dispatch.c"], extra_compile_args=FLAGS,
              libraries=["pthread"]),
])
