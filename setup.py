"""Builds the relay's C receive loop (``b2bua/media/_pump.c``); everything else is in
``pyproject.toml``."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("b2bua.media._pump", ["b2bua/media/_pump.c"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra"])])
