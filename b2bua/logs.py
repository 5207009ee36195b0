"""One log line per event, key=value style, to stderr."""

from __future__ import annotations

import logging
import sys


def setup(level: str = "INFO", worker: int | None = None) -> None:
    """``worker``: with several signalling workers, each line says whose it is (``w1``)."""
    handler = logging.StreamHandler(sys.stderr)
    tag = "" if worker is None else f"w{worker} "
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
