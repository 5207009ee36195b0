"""Installing the project prints no warning: the editable install ``./scripts/setup``
does, and a wheel as a packager builds it, with the pip the project's venv runs (pip 25
and newer show the build backend's warnings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import clean_copy

# This machine's pip configuration names local package folders that may not exist;
# pip says so for every package it looks up. That is the machine's, not the project's.
MACHINE_NOTE = "is ignored: it is neither a file nor a directory"


def pip_says(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in (done.stdout + done.stderr).splitlines()
            if line.strip() and MACHINE_NOTE not in line]


@pytest.mark.parametrize("how", ["editable", "wheel"])
def test_install_prints_no_warning(tmp_path: Path, how: str) -> None:
    source = clean_copy(tmp_path / "softswitch")
    if how == "editable":
        said = pip_says("install", "-q", "--no-deps", "-e", str(source),
                        "--target", str(tmp_path / "site"))
        assert (tmp_path / "site" / "__editable__.softswitch-0.1.0.pth").exists()
    else:
        said = pip_says("wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source))
        assert list((tmp_path / "dist").glob("softswitch-0.1.0-*.whl"))
    assert said == []
