"""``softswitch param``: parameters over the REST API, like the other operator commands.

    softswitch param list                 every parameter, ``NAME = value``
    softswitch param get [NAME]           one value (without NAME: as ``list``)
    softswitch param set NAME VALUE       change it (acts live); prints ``NAME = value``

The value is parsed and checked here against the registry first, so a typing mistake is
answered without a round trip; the API then checks it again, with the rules that span
parameters, stores it and audits it under the token's name. Unknown names and refused
values exit 2, an API that cannot be reached 1. ``--db`` only says where to find the
admin token when no token is given (``var_dir_for``: beside a SQLite database).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from b2bua.config.registry import PARAMETERS, Param, ParamError, format_value, lookup
from b2bua.opcli import ApiRefused, Client, _common, _leaf, run

PATH = "/api/v1/parameters"


class Refused(Exception):
    """A name or value the operator must correct; the command exits 2."""


def _path(param: Param) -> str:
    return f"{PATH}/{urllib.parse.quote(param.name)}"


def _lookup(name: str) -> Param:
    try:
        return lookup(name)
    except KeyError:
        raise Refused(f"unknown parameter {name!r}") from None


def param_list(client: Client, args: argparse.Namespace) -> int:
    items = client.get(PATH)["items"]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    order = {p.name: i for i, p in enumerate(PARAMETERS)}
    for item in sorted(items, key=lambda i: order.get(i["name"], len(order))):
        print(f"{item['name']} = {format_value(item['value'])}")
    return 0


def param_get(client: Client, args: argparse.Namespace) -> int:
    if args.name is None:
        return param_list(client, args)
    item = _request(client, "GET", _lookup(args.name))
    print(json.dumps(item, indent=2) if args.json else format_value(item["value"]))
    return 0


def param_set(client: Client, args: argparse.Namespace) -> int:
    param = _lookup(args.name)
    try:
        value = param.parse_text(args.value)
    except ParamError as exc:
        raise Refused(f"{args.name}: {exc}") from None
    item = _request(client, "PUT", param, {"value": value})
    print(json.dumps(item, indent=2) if args.json
          else f"{param.name} = {format_value(item['value'])}")
    return 0


def _request(client: Client, method: str, param: Param, body: Any = None) -> Any:
    try:
        return client.request(method, _path(param), body).body
    except ApiRefused as exc:
        if exc.status == 404:
            raise Refused(f"unknown parameter {param.name!r}") from None
        if exc.status == 422 and isinstance(exc.body, dict):
            errors = exc.body.get("errors") or {}
            messages = errors.get("value") if isinstance(errors, dict) else None
            if messages:
                text = "; ".join(map(str, messages if isinstance(messages, list)
                                     else [messages]))
                raise Refused(f"{param.name}: {text}") from None
        raise


def _guarded(handler: Callable[[Client, argparse.Namespace], int]
             ) -> Callable[[Client, argparse.Namespace], int]:
    def guarded(client: Client, args: argparse.Namespace) -> int:
        try:
            return handler(client, args)
        except Refused as exc:
            print(f"softswitch: {exc}", file=sys.stderr)
            return 2
    return guarded


def register(sub: Any, add_db: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``param list|get|set`` to ``softswitch``; ``add_db`` adds its ``--db``."""
    common = _common()
    add_db(common)
    common.set_defaults(token_file=None)  # then: the admin token beside --db
    par = sub.add_parser("param", help="read or change parameters (over the API)",
                         description="--db only locates the admin token (beside a SQLite "
                                     "database, else var/) when neither --token nor "
                                     "--token-file is given.")
    par_sub = par.add_subparsers(dest="param_command", required=True)
    _leaf(par_sub, "list", _guarded(param_list), common, "every parameter and its value")
    get = _leaf(par_sub, "get", _guarded(param_get), common,
                "show one parameter's value, or all")
    get.add_argument("name", nargs="?")
    put = _leaf(par_sub, "set", _guarded(param_set), common, "change a parameter (acts live)")
    put.add_argument("name")
    put.add_argument("value")


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"param": run}
