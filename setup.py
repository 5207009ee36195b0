"""Builds the C parts: the relay's receive loop (``b2bua/media/_pump.c``), the SIP
dispatcher (``b2bua/sip/_dispatch.c``) and the counters the signalling workers share
(``b2bua/_tally.c``); everything else is in ``pyproject.toml``."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra"]

setup(ext_modules=[
    Extension("b2bua.media._pump", ["b2bua/media/_pump.c"], extra_compile_args=FLAGS),
    Extension("b2bua._tally", ["b2bua/_tally.c"], extra_compile_args=FLAGS),
    Extension("b2bua.sip._dispatch", ["b2bua/sip/_dispatch.c"], extra_compile_args=FLAGS,
              libraries=["pthread"]),
])
