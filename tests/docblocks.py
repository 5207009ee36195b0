"""The shell blocks of the project's Markdown documents, so that tests run what the
documents say, as written."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Block:
    heading: str  # the nearest Markdown heading above the block
    text: str

    def commands(self) -> list[list[str]]:
        """Each command line as argv (comments and continuation lines handled)."""
        joined = self.text.replace("\\\n", " ")
        return [words for line in joined.splitlines()
                if (words := shlex.split(line, comments=True))]


def sh_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    blocks = []
    for match in _FENCE.finditer(text):
        headings = re.findall(r"^#+ (.*)$", text[:match.start()], re.M)
        blocks.append(Block(headings[-1] if headings else "", match.group(1)))
    return blocks
