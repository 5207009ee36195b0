"""Fixtures: a running softswitch per test (integration) and per-test databases (unit)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import Softswitch


@pytest.fixture
def softswitch(tmp_path: Path) -> Iterator[Softswitch]:
    switch = Softswitch(tmp_path).start()
    try:
        yield switch
    finally:
        code = switch.stop()
        assert code == 0, f"softswitch exit code {code}\n{switch.log()[-3000:]}"
