"""``softswitch webhook``: the receivers of call and registration events, over the REST API
like ``softswitch gw`` (docs/carrier-controls.md, "Call events (webhooks)").

    softswitch webhook list
    softswitch webhook add --name crm --url https://crm.example/hooks [--event call.end ...]
                           [--secret-file PATH] [--disabled]
    softswitch webhook set ID|NAME KEY=VALUE ...   (url=..., events=call.end,registration,
                                                    enabled=false, secret=...)
    softswitch webhook remove ID|NAME

The secret is read from the first line of ``--secret-file`` (``-`` for standard input),
never from the command line, where ``ps`` shows it; without one a random secret is made
and printed once, to be given to the receiver. The list shows each webhook's delivery
state as the engine reports it.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable
from typing import Any

from b2bua.opcli import (
    Client,
    _change,
    _common,
    _enabled_filter,
    _kv,
    _leaf,
    _remove,
    assignments,
    emit,
    first_line,
    run,
    table,
)
from b2bua.webhooks.outbox import EVENT_TYPES

PATH = "/api/v1/webhooks"
COLUMNS = ("id", "name", "url", "events", "enabled", "queued", "delivered", "failed",
           "dead", "last_status", "last_error")


def _row(item: dict[str, Any]) -> dict[str, Any]:
    delivery = item.get("delivery") or {}
    return {**item, "events": item.get("events") or ["all"],
            "queued": delivery.get("queued"), "delivered": delivery.get("delivered"),
            "failed": delivery.get("failed_attempts"), "dead": delivery.get("dead_lettered"),
            "last_status": delivery.get("last_status"),
            "last_error": delivery.get("last_error")}


def _secret(args: argparse.Namespace) -> tuple[str, bool]:
    """The secret, and whether it was made here (then it is printed once)."""
    source: str | None = args.secret_file
    if source is None:
        return secrets.token_hex(32), True
    return first_line(source, "--secret-file"), False


def webhook_list(client: Client, args: argparse.Namespace) -> int:
    items = list(client.pages(PATH, name=args.name, enabled=args.enabled))
    emit(args, items, table([_row(i) for i in items], COLUMNS))
    return 0


def webhook_add(client: Client, args: argparse.Namespace) -> int:
    secret, made = _secret(args)
    body: dict[str, Any] = {"name": args.name, "url": args.url, "secret": secret,
                            "events": args.event or []}
    if args.disabled:
        body["enabled"] = False
    body.update(assignments(args.assignments, client.properties(PATH)))
    created = client.request("POST", PATH, body).body
    text = f"created webhook {created['id']} ({created['name']})"
    if made:
        text += f"\nsecret (shown once; give it to the receiver): {secret}"
    emit(args, {**created, "secret": secret} if made else created, text)
    return 0


def webhook_set(client: Client, args: argparse.Namespace) -> int:
    return _change(client, args, PATH, "name", "webhook")


def webhook_remove(client: Client, args: argparse.Namespace) -> int:
    return _remove(client, args, PATH, "name", "webhook")


def register(sub: Any) -> None:
    """Add ``webhook list|add|set|remove`` to ``softswitch``."""
    common = _common()
    hooks = sub.add_parser("webhook", help="receivers of call and registration events "
                                           "(over the API)")
    hooks_sub = hooks.add_subparsers(dest="webhook_command", required=True)
    listing = _leaf(hooks_sub, "list", webhook_list, common,
                    "list webhooks and their delivery state")
    listing.add_argument("--name", help="exact name")
    _enabled_filter(listing)
    add = _leaf(hooks_sub, "add", webhook_add, common, "add a webhook")
    add.add_argument("--name", required=True)
    add.add_argument("--url", required=True, help="http:// or https:// URL to POST to")
    add.add_argument("--event", action="append", choices=EVENT_TYPES,
                     help="an event type it takes (repeat for more; default: all)")
    add.add_argument("--secret-file", default=None, metavar="PATH",
                     help="read the signing secret from the first line of PATH (- for "
                          "standard input); default: make one and print it once")
    add.add_argument("--disabled", action="store_true", help="create it disabled")
    _kv(add)
    change = _leaf(hooks_sub, "set", webhook_set, common, "change fields (KEY=VALUE ...)")
    change.add_argument("ref", metavar="ID|NAME")
    _kv(change)
    remove = _leaf(hooks_sub, "remove", webhook_remove, common, "delete a webhook")
    remove.add_argument("ref", metavar="ID|NAME")


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"webhook": run}
