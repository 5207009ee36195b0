"""The lab's state folder: databases, logs, pid files, sipp assets and ``lab.json``.

    STATE/lab.json          addresses, ports, API bases and tokens (mode 600)
    STATE/a/, STATE/b/      each softswitch's database, admin-token and control socket
    STATE/pids/NAME.pid     "PID START_TIME" of every process the lab started
    STATE/logs/             one log per process, one folder per scripted call
    STATE/assets/           the sipp scenarios and the caller's test tone
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path("var/lab")


@dataclass(frozen=True, slots=True)
class State:
    root: Path

    @property
    def info_path(self) -> Path:
        return self.root / "lab.json"

    @property
    def pid_dir(self) -> Path:
        return self.root / "pids"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def asset_dir(self) -> Path:
        return self.root / "assets"

    def db(self, switch: str) -> Path:
        return self.root / switch / "softswitch.db"

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def prepare(self) -> None:
        """Folders for a new lab; the previous lab's databases are removed, logs kept."""
        for folder in (self.pid_dir, self.log_dir, self.asset_dir, self.root / "a",
                       self.root / "b"):
            folder.mkdir(parents=True, exist_ok=True)
        for switch in ("a", "b"):
            for name in ("softswitch.db", "softswitch.db-wal", "softswitch.db-shm",
                         "admin-token", "engine.sock"):
                (self.root / switch / name).unlink(missing_ok=True)

    def write_info(self, info: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.info_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh, indent=2, sort_keys=True)
            fh.write("\n")
        tmp.replace(self.info_path)

    def read_info(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def clear_info(self) -> None:
        self.info_path.unlink(missing_ok=True)
