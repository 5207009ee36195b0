"""Generate ``docs/parameters.md`` from the registry: ``python -m b2bua.config.docgen``."""

from __future__ import annotations

import sys
from pathlib import Path

from b2bua.config.registry import PARAMETERS

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "parameters.md"

HEADER = """# Parameters

Generated from the parameter registry (`b2bua/config/registry.py`) by
`python -m b2bua.config.docgen`; a test fails when this file is stale.

Every parameter is stored in SQLite, validated by the API (`PUT
/api/v1/parameters/NAME` with `{"value": ...}`) and the CLI (`softswitch param set
NAME VALUE`) against the type and range below, and read by the running engine within
a second of the change ("live"). On/Off values are the strings `"On"` and `"Off"`
(`true`/`false` are accepted on input). List values are JSON arrays in the API and
comma-separated on the command line.
"""


def render() -> str:
    out = [HEADER]
    group = None
    for p in PARAMETERS:
        if p.group != group:
            group = p.group
            out.append(f"\n## {group}\n")
            out.append("| name | default | range | unit | live | meaning |")
            out.append("|---|---|---|---|---|---|")
        unit = p.unit or "-"
        live = "yes" if p.live else "restart"
        out.append(
            f"| `{p.name}` | {p.default_text() or '(empty)'} | {p.range_text()} | {unit} "
            f"| {live} | {p.description} |"
        )
    return "\n".join(out) + "\n"


def main() -> int:
    DOC_PATH.write_text(render())
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
