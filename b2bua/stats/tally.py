"""Each gateway's quality since the engine started, for Prometheus: the cells of every
call this engine finished, by gateway (no period). Cheap enough to feed on every CDR;
the signalling workers' tallies are added together when asked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from b2bua.stats.quality import Cell, observations


class GatewayTally:
    def __init__(self) -> None:
        self.cells: dict[tuple[str, int], Cell] = {}
        self.names: dict[tuple[str, int], str] = {}

    def add(self, call: Mapping[str, Any], attempts: Iterable[Mapping[str, Any]]) -> None:
        for seen in observations(call, attempts):
            key = (seen.kind, seen.gateway_id)
            cell = self.cells.get(key)
            if cell is None:
                cell = self.cells[key] = Cell()
            cell.add(seen)
            if seen.gateway is not None:
                self.names[key] = seen.gateway

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"kind": kind, "id": gw_id, "name": self.names.get((kind, gw_id)),
                 **cell.to_json()} for (kind, gw_id), cell in sorted(self.cells.items())]


def merge_snapshots(snapshots: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Several engines' tallies as one."""
    cells: dict[tuple[str, int], Cell] = {}
    names: dict[tuple[str, int], Any] = {}
    for snapshot in snapshots:
        for item in snapshot:
            key = (str(item["kind"]), int(item["id"]))
            cells.setdefault(key, Cell()).merge(Cell.from_json(item))
            names[key] = item.get("name") or names.get(key)
    return [{"kind": kind, "id": gw_id, "name": names.get((kind, gw_id)),
             **cell.to_json()} for (kind, gw_id), cell in sorted(cells.items())]
