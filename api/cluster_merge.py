"""Any node's API shows the cluster (docs/cluster.md): a live view asked of this node's
engine is also asked of every other live node's API, with the caller's own token (the
tokens are in the shared database; a console session's cookie is good on every node,
as its key and the operators are shared), and the answers are joined, each item naming its
node. A node that does not answer within ``PEER_TIMEOUT`` is named in ``unreachable``.
``?scope=node`` asks one node only (what the nodes ask each other).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import request

from api import context
from api.errors import ApiError
from api.routes.engine import engine_request
from b2bua.storage import cluster
from b2bua.storage.backend import StorageError

PEER_TIMEOUT = 2.0
SCOPE = {"in": "query", "name": "scope", "required": False,
         "schema": {"type": "string", "enum": ["cluster", "node"]},
         "description": "node: this node only; cluster (default): every live node's, "
                        "each item naming its node (docs/cluster.md)"}


def _peers() -> tuple[str | None, list[tuple[str, str]]]:
    """This node's name, and the other live nodes' names and API addresses."""
    if request.args.get("scope") == "node":
        return None, []
    view: dict[str, Any] | None = engine_request("cluster")
    if view is None:
        return None, []
    states: dict[str, str] = (view.get("watch") or {}).get("nodes") or {}
    try:
        rows = cluster.nodes(context.database())
    except StorageError:
        return str(view["node"]), []
    return str(view["node"]), [(row.name, row.api) for row in rows
                               if states.get(row.name) == "alive" and row.api]


# What says who asks, passed on to the peers: a script's token, or a console session's
# cookie (signed with the key every node shares, and checked against the shared
# operators table) with its CSRF token for a write.
_CREDENTIALS = ("Authorization", "Cookie", "X-CSRF-Token")


def _credentials() -> dict[str, str]:
    """The caller's credentials, as the peers need them (in the request's context)."""
    return {name: value for name in _CREDENTIALS
            if (value := request.headers.get(name)) is not None}


def _ask(address: str, path: str, credentials: dict[str, str], method: str = "GET") -> Any:
    """One peer's answer (in a thread of the pool: no request context here)."""
    host, _, port = address.rpartition(":")
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
    url = f"http://{host}:{port}{path}?scope=node"
    ask = urllib.request.Request(url, headers=credentials, method=method)
    with urllib.request.urlopen(ask, timeout=PEER_TIMEOUT) as answer:
        return json.loads(answer.read())


def _gather(path: str) -> tuple[str | None, dict[str, Any], list[str]]:
    """This node's name, each live peer's answer by name, the peers that gave none."""
    me, peers = _peers()
    if not peers:
        return me, {}, []
    answers: dict[str, Any] = {}
    unreachable: list[str] = []
    credentials = _credentials()
    with ThreadPoolExecutor(max_workers=min(len(peers), 8)) as pool:
        futures = {name: pool.submit(_ask, address, path, credentials)
                   for name, address in peers}
        for name, future in futures.items():
            try:
                answers[name] = future.result()
            except (OSError, urllib.error.URLError, ValueError):
                unreachable.append(name)
    return me, answers, sorted(unreachable)


def node_answer(name: str, path: str, method: str = "GET") -> tuple[int, Any] | None:
    """``path`` as node ``name`` answers it for itself (``?scope=node``): its status and
    body. None when ``name`` is this node, or this switch is no cluster node. A node
    that is not up: 404 (what it held in memory went with it); one that does not
    answer: 503."""
    if request.args.get("scope") == "node":
        return None
    view: dict[str, Any] | None = engine_request("cluster")
    if view is None or view["node"] == name:
        return None
    states: dict[str, str] = (view.get("watch") or {}).get("nodes") or {}
    address = next((row.api for row in cluster.nodes(context.database())
                    if row.name == name), None)
    if address is None or states.get(name) != "alive":
        raise ApiError(404, f"node {name!r} is not up: what it kept in memory is gone")
    try:
        return 200, _ask(address, path, _credentials(), method)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            raise ApiError(503, f"node {name!r} answered {exc.code}") from None
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise ApiError(503, f"node {name!r} did not answer: {exc}") from None


def merged_items(path: str, local: list[dict[str, Any]],
                 key: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """A list view joined across the live nodes; ``key``: items that are the same on
    every node (a suspension told to all) are listed once."""
    me, answers, unreachable = _gather(path)
    if me is None:
        return {"items": local}
    items = [{**item, "node": item.get("node") or me} for item in local]
    for name, answer in answers.items():
        items += [{**item, "node": item.get("node") or name}
                  for item in answer.get("items", [])]
    if key is not None:
        seen: set[Any] = set()
        unique = []
        for item in items:
            if key(item) not in seen:
                seen.add(key(item))
                unique.append(item)
        items = unique
    return {"items": items, "unreachable": unreachable}


def _add(total: dict[str, Any], more: dict[str, Any]) -> None:
    for name, value in more.items():
        if isinstance(value, bool):
            continue
        if name not in total and isinstance(value, int | float | dict):
            total[name] = json.loads(json.dumps(value))
        elif isinstance(value, int | float) and isinstance(total.get(name), int | float):
            total[name] += value
        elif isinstance(value, dict) and isinstance(total.get(name), dict):
            _add(total[name], value)


def merged_counters(path: str, local: dict[str, Any]) -> dict[str, Any]:
    """Counters summed across the live nodes, each node's own under ``nodes``."""
    me, answers, unreachable = _gather(path)
    if me is None:
        return local
    total = json.loads(json.dumps(local))  # a deep copy of plain data
    for answer in answers.values():
        _add(total, answer)
    return {**total, "nodes": {me: local, **answers}, "unreachable": unreachable}
