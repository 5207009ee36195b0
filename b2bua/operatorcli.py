"""``softswitch operator``: the web console's accounts, over the REST API like the other
operator commands (docs/console.md).

    softswitch operator add NAME [--role admin|read] [--password-file PATH]
    softswitch operator list
    softswitch operator password NAME [--password-file PATH]
    softswitch operator unlock NAME
    softswitch operator remove NAME

The password is asked for twice on the terminal (never echoed), or read from the first
line of ``--password-file`` (``-`` for standard input): never on the command line, where
``ps`` would show it. The API hashes it, so it is checked, stored and audited in one
place; an admin token is needed (``--token``, ``$SOFTSWITCH_TOKEN``, else the
``admin-token`` beside ``--db``, as for ``softswitch param``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from b2bua.opcli import (
    Client,
    OpError,
    _common,
    _leaf,
    cell,
    emit,
    first_line,
    run,
    stamp,
    table,
)

PATH = "/api/v1/operators"
ROLES = ("admin", "read")
COLUMNS = ("name", "role", "locked_until", "failures", "last_sign_in_at")


def _one(name: str) -> str:
    return f"{PATH}/{urllib.parse.quote(name, safe='')}"


def _password(args: argparse.Namespace) -> str:
    source: str | None = args.password_file
    if source is not None:
        return first_line(source, "--password-file")
    if not sys.stdin.isatty():
        raise OpError("no terminal to ask the password on: give --password-file")
    first = getpass.getpass(f"password for {args.name}: ")
    if first != getpass.getpass("again: "):
        raise OpError("the two passwords differ")
    return first


def _shown(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "locked_until": stamp(item.get("locked_until"))
            if item.get("locked_until") else None,
            "last_sign_in_at": stamp(item.get("last_sign_in_at"))
            if item.get("last_sign_in_at") else None}


def operator_add(client: Client, args: argparse.Namespace) -> int:
    body = {"name": args.name, "role": args.role, "password": _password(args)}
    created = client.request("POST", PATH, body).body
    emit(args, created, f"added operator {created['name']} ({created['role']}); "
                        "sign in at /console")
    return 0


def operator_list(client: Client, args: argparse.Namespace) -> int:
    items = client.get(PATH)["items"]
    emit(args, items, table([_shown(i) for i in items], COLUMNS))
    return 0


def operator_password(client: Client, args: argparse.Namespace) -> int:
    changed = client.request("PATCH", _one(args.name), {"password": _password(args)}).body
    emit(args, changed, f"new password for {changed['name']}; its console sessions ended")
    return 0


def operator_unlock(client: Client, args: argparse.Namespace) -> int:
    item = client.request("POST", _one(args.name) + "/unlock").body
    emit(args, item, f"unlocked {item['name']} (failures {cell(item['failures'])})")
    return 0


def operator_remove(client: Client, args: argparse.Namespace) -> int:
    client.request("DELETE", _one(args.name))
    emit(args, {"removed": args.name}, f"removed operator {args.name}")
    return 0


def register(sub: Any, add_db: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``operator add|list|password|unlock|remove`` to ``softswitch``."""
    common = _common()
    add_db(common)
    common.set_defaults(token_file=None)  # then: the admin token beside --db
    ops = sub.add_parser("operator", help="web console accounts (over the API)",
                         description="Accounts that sign in to the web console at "
                                     "/console; scripts keep using API tokens.")
    ops_sub = ops.add_subparsers(dest="operator_command", required=True)
    add = _leaf(ops_sub, "add", operator_add, common, "add an operator account")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="admin",
                     help="admin: read and change; read: only read (default admin)")
    _leaf(ops_sub, "list", operator_list, common, "list operator accounts")
    pw = _leaf(ops_sub, "password", operator_password, common,
               "set an operator's password (ends its sessions)")
    pw.add_argument("name")
    for parser in (add, pw):
        parser.add_argument("--password-file", default=None, metavar="PATH",
                            help="read the password from the first line of PATH (- for "
                                 "standard input) instead of asking for it")
    unlock = _leaf(ops_sub, "unlock", operator_unlock, common,
                   "lift a lock-out after repeated failed sign-ins")
    unlock.add_argument("name")
    remove = _leaf(ops_sub, "remove", operator_remove, common, "remove an operator account")
    remove.add_argument("name")


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"operator": run}
