"""Audit log of configuration changes: who, when, what."""

from __future__ import annotations

import json
import time
from typing import Any

from b2bua.storage.backend import Database, Row


def record(
    db: Database, actor: str, action: str, resource: str, detail: Any = None
) -> None:
    db.execute(
        "INSERT INTO audit_log (at, actor, action, resource, detail) VALUES (?, ?, ?, ?, ?)",
        (time.time(), actor, action, resource, json.dumps(detail, default=str)),
    )


def entries(
    db: Database, *, after_id: int, limit: int, since: float | None = None,
    until: float | None = None, actor: str | None = None, action: str | None = None,
    resource_prefix: str | None = None, before_id: int | None = None, newest: bool = False,
) -> list[Row]:
    """Up to ``limit`` entries after ``after_id`` (and below ``before_id``) in id order,
    matching every filter given (``since <= at < until``, exact actor and action, resource
    starting with the prefix); ``newest``: the last ``limit`` of them instead of the
    first, still in id order; ``detail`` decoded from its JSON."""
    where = ["id > ?"]
    args: list[Any] = [after_id]
    if before_id is not None:
        where.append("id < ?")
        args.append(before_id)
    if since is not None:
        where.append("at >= ?")
        args.append(since)
    if until is not None:
        where.append("at < ?")
        args.append(until)
    if actor is not None:
        where.append("actor = ?")
        args.append(actor)
    if action is not None:
        where.append("action = ?")
        args.append(action)
    if resource_prefix is not None:
        # A prefix compared as text: LIKE would treat % and _ in it as wildcards.
        where.append("substr(resource, 1, CAST(? AS INTEGER)) = ?")
        args.extend((len(resource_prefix), resource_prefix))
    rows = db.rows(
        "SELECT id, at, actor, action, resource, detail FROM audit_log "
        f"WHERE {' AND '.join(where)} ORDER BY id {'DESC' if newest else ''} LIMIT ?",
        (*args, limit))
    if newest:
        rows.reverse()
    return [{**r, "detail": _detail(r["detail"])} for r in rows]


def _detail(raw: str | None) -> Any:
    """The stored JSON as a value; text that is not JSON (a hand edit) as it is."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw
