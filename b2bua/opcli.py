"""Operator commands on top of the REST API: gateways, phones, CDRs, live calls
(parameters: :mod:`b2bua.paramcli`).

    softswitch gw list [mapping|routing]      softswitch phone list
    softswitch gw show KIND ID|NAME           softswitch phone add --username U ...
    softswitch gw add mapping --name ...      softswitch phone set ID|USERNAME KEY=VALUE ...
    softswitch gw add routing --name ...      softswitch phone rm ID|USERNAME
    softswitch gw set KIND ID|NAME KEY=VALUE  softswitch cdr tail [--follow] [--since-id N]
    softswitch gw rm KIND ID|NAME             softswitch calls

They talk to a running softswitch over HTTP (``--api``, default
``http://127.0.0.1:8088``) with a token (``--token``, else ``$SOFTSWITCH_TOKEN``, else
the file ``var/admin-token``), never to the database, so they work from any host that
reaches the API and every change is validated and audited like any API call. Only the
standard library is used (urllib).

``ID|NAME`` is looked up as a name (a phone's username) first, then as an id.
``KEY=VALUE`` sets any field of the resource; the value is converted with the type the
API's OpenAPI document gives the field (``null`` clears a nullable field, lists are
comma-separated or JSON). ``set`` and ``rm`` send ``If-Match`` with the ETag they read,
so a change made meanwhile by someone else is refused (412) instead of overwritten.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.options import var_dir_for

DEFAULT_API = "http://127.0.0.1:8088"
DEFAULT_TOKEN_FILE = Path("var/admin-token")
PAGE = 1000

KINDS = {"mapping": "/api/v1/mapping-gateways", "routing": "/api/v1/routing-gateways"}
PHONES = "/api/v1/phones"
COLUMNS = {
    "mapping": ("id", "name", "auth_mode", "ips", "port", "username", "capacity", "enabled"),
    "routing": ("id", "name", "host", "port", "transport", "prefixes", "priority", "capacity",
                "enabled"),
    "phone": ("id", "username", "display_name", "capacity", "enabled"),
    "cdr": ("id", "start", "caller", "callee", "mapping_gateway", "routing_gateway",
            "final_code", "duration", "hangup_by"),
    "call": ("id", "state", "caller", "callee", "from", "routing_gateway", "age"),
}

CDR_WIDTHS = (8, 19, 16, 16, 16, 16, 10, 8, 9)


class OpError(Exception):
    """Something the operator must be told; the command exits 1."""


class ApiRefused(OpError):
    """The API answered with an error status; ``body`` is its problem JSON."""

    def __init__(self, text: str, status: int, body: Any) -> None:
        super().__init__(text)
        self.status = status
        self.body = body


# -- HTTP ------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Client:
    base: str
    token: str
    timeout: float = 15.0
    _schemas: dict[str, Any] | None = None

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base.rstrip("/") + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return Reply(resp.status, _decode(resp.read()), dict(resp.headers))
        except urllib.error.HTTPError as err:
            body = _decode(err.read())
            raise ApiRefused(_problem_text(method, path, err.code, body), err.code,
                             body) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise OpError(f"the API at {self.base} is not reachable: {reason}") from None

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", _with_query(path, query)).body

    def pages(self, path: str, **query: Any) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paginated list, following ``next_after_id``."""
        after: int | None = int(query.pop("after_id", 0) or 0)
        limit = query.pop("limit", PAGE)
        while after is not None:
            page = self.get(path, **query, limit=limit, after_id=after)
            yield from page["items"]
            after = page["next_after_id"]

    def properties(self, collection: str) -> dict[str, Any]:
        """The fields a collection's POST takes, from the OpenAPI document."""
        if self._schemas is None:
            self._schemas = self.get("/api/v1/openapi.json")
        spec = self._schemas
        assert spec is not None
        ref = spec["paths"][collection]["post"]["requestBody"]["content"][
            "application/json"]["schema"]["$ref"]
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        props: dict[str, Any] = schema.get("properties", {})
        return props


def first_line(source: str, option: str) -> str:
    """The first line of file ``source`` (``-``: standard input), for a secret that must
    not be typed on a command line, where ``ps`` shows it; OpError naming ``option``."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise OpError(f"{option}: {exc}") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise OpError(f"{option}: its first line is empty")
    return lines[0]


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _with_query(path: str, query: dict[str, Any]) -> str:
    pairs = {k: _query_value(v) for k, v in query.items() if v is not None}
    return f"{path}?{urllib.parse.urlencode(pairs)}" if pairs else path


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _problem_text(method: str, path: str, status: int, body: Any) -> str:
    if isinstance(body, dict):
        text = f"{method} {path}: {status} {body.get('title', '')}: {body.get('detail', '')}"
        for name, messages in (body.get("errors") or {}).items():
            text += f"\n  {name}: {'; '.join(map(str, _flat(messages)))}"
        if status == 412:
            text += "\n  someone changed it since it was read; look at it again and retry"
        return text
    return f"{method} {path}: {status} {str(body)[:200]}"


def _flat(messages: Any) -> list[Any]:
    if isinstance(messages, list):
        return messages
    if isinstance(messages, dict):
        return [f"{k}: {v}" for k, v in messages.items()]
    return [messages]


# -- values ----------------------------------------------------------------------------


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def convert(name: str, text: str, prop: dict[str, Any] | None) -> Any:
    """``text`` as the JSON value of field ``name`` (typed by its OpenAPI property)."""
    if prop is None:  # unknown to the document: let the API say so, typed as JSON would be
        try:
            return json.loads(text)
        except ValueError:
            return text
    if text == "null" and prop.get("nullable"):
        return None
    kind = prop.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError("true or false")
        if kind == "array":
            if text.startswith("["):
                return json.loads(text)
            items = [part.strip() for part in text.split(",") if part.strip()]
            return [convert(name, item, prop.get("items") or {"type": "string"})
                    for item in items]
        if kind == "object":
            return json.loads(text)
    except ValueError as exc:
        raise OpError(f"{name}={text!r}: expected {kind} ({exc})") from None
    return text


def assignments(pairs: Sequence[str], props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise OpError(f"{pair!r}: expected KEY=VALUE")
        prop = props.get(name)
        if prop is not None and prop.get("readOnly"):
            raise OpError(f"{name} is read-only")
        out[name] = convert(name, text, prop)
    return out


# -- output ----------------------------------------------------------------------------


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], header: bool = True,
          widths: Sequence[int] = ()) -> str:
    """Aligned columns; ``widths`` are minimums (so batches printed apart line up)."""
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    least = list(widths) + [0] * (len(columns) - len(widths))
    widths = [max([len(c), least[i]] + [len(row[i]) for row in cells])
              for i, c in enumerate(columns)]
    lines = [[c.upper() for c in columns]] if header else []
    lines += cells
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def vertical(item: dict[str, Any]) -> str:
    width = max((len(k) for k in item), default=0)
    return "\n".join(f"{k.ljust(width)}  {cell(v)}" for k, v in item.items())


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def stamp(when: float | None) -> str:
    if when is None:
        return "-"
    return datetime.datetime.fromtimestamp(when).isoformat(sep=" ", timespec="seconds")


# -- resources -------------------------------------------------------------------------


def _resolve(client: Client, collection: str, ref: str, key: str) -> dict[str, Any]:
    """The item whose name/username is ``ref`` or else whose id it is, with its ETag.

    Names come first: phone usernames are usually numbers.
    """
    found = client.get(collection, **{key: ref})["items"]
    if found:
        item_id = int(found[0]["id"])
    elif ref.isdigit():
        item_id = int(ref)
    else:
        raise OpError(f"no {collection.rsplit('/', 1)[-1]} with {key} {ref!r}")
    reply = client.request("GET", f"{collection}/{item_id}")
    item: dict[str, Any] = reply.body
    item["_etag"] = reply.headers.get("ETag")
    return item


def _change(client: Client, args: argparse.Namespace, collection: str, key: str,
            label: str) -> int:
    current = _resolve(client, collection, args.ref, key)
    etag = current.pop("_etag")
    body = assignments(args.assignments, client.properties(collection))
    if not body:
        raise OpError("nothing to change: give KEY=VALUE")
    reply = client.request("PATCH", f"{collection}/{current['id']}", body,
                           headers={"If-Match": etag} if etag else None)
    changed = {k: reply.body.get(k, "(set)") for k in body}  # write-only fields: not shown
    emit(args, reply.body, f"{label} {current['id']} ({current.get(key)}): "
         + ", ".join(f"{k}={cell(v)}" for k, v in changed.items()))
    return 0


def _remove(client: Client, args: argparse.Namespace, collection: str, key: str,
            label: str) -> int:
    current = _resolve(client, collection, args.ref, key)
    etag = current.pop("_etag")
    client.request("DELETE", f"{collection}/{current['id']}",
                   headers={"If-Match": etag} if etag else None)
    emit(args, {"deleted": current["id"]},
         f"deleted {label} {current['id']} ({current.get(key)})")
    return 0


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"name": getattr(args, "name", None), "enabled": args.enabled}


def gw_list(client: Client, args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(KINDS)
    found = {k: list(client.pages(KINDS[k], **_filters(args))) for k in kinds}
    if args.json:
        print(json.dumps(found[args.kind] if args.kind else found, indent=2))
        return 0
    parts = []
    for kind in kinds:
        title = "" if args.kind else f"{kind} gateways\n"
        parts.append(title + table(found[kind], COLUMNS[kind]))
    print("\n\n".join(parts))
    return 0


def gw_show(client: Client, args: argparse.Namespace) -> int:
    item = _resolve(client, KINDS[args.kind], args.ref, "name")
    etag = item.pop("_etag")
    emit(args, item, vertical({**item, "etag": etag}))
    return 0


def gw_add(client: Client, args: argparse.Namespace) -> int:
    collection = KINDS[args.kind]
    body: dict[str, Any] = {"name": args.name}
    if args.kind == "mapping":
        body.update(ips=args.ip or [], auth_mode=args.mode)
        for field in ("port", "username"):
            if getattr(args, field) is not None:
                body[field] = getattr(args, field)
        password = _password(args)
        if password is not None:
            body["password"] = password
    else:
        body.update(host=args.host, transport=args.transport,
                    prefixes=args.prefix or [], priority=args.priority,
                    prefix_mode=args.prefix_mode)
        if args.port is not None:
            body["port"] = args.port
    if args.capacity is not None:
        body["capacity"] = args.capacity
    if args.disabled:
        body["enabled"] = False
    body.update(assignments(args.assignments, client.properties(collection)))
    created = client.request("POST", collection, body).body
    emit(args, created, f"created {args.kind} gateway {created['id']} ({created['name']})")
    return 0


def gw_set(client: Client, args: argparse.Namespace) -> int:
    return _change(client, args, KINDS[args.kind], "name", f"{args.kind} gateway")


def gw_rm(client: Client, args: argparse.Namespace) -> int:
    return _remove(client, args, KINDS[args.kind], "name", f"{args.kind} gateway")


def phone_list(client: Client, args: argparse.Namespace) -> int:
    items = list(client.pages(PHONES, username=args.username, enabled=args.enabled))
    emit(args, items, table(items, COLUMNS["phone"]))
    return 0


def phone_add(client: Client, args: argparse.Namespace) -> int:
    password = _password(args)
    if password is None:
        raise OpError("a phone needs a password: --password or --password-stdin")
    body: dict[str, Any] = {"username": args.username, "password": password}
    if args.display_name is not None:
        body["display_name"] = args.display_name
    if args.capacity is not None:
        body["capacity"] = args.capacity
    if args.disabled:
        body["enabled"] = False
    body.update(assignments(args.assignments, client.properties(PHONES)))
    created = client.request("POST", PHONES, body).body
    emit(args, created, f"created phone {created['id']} ({created['username']})")
    return 0


def phone_set(client: Client, args: argparse.Namespace) -> int:
    return _change(client, args, PHONES, "username", "phone")


def phone_rm(client: Client, args: argparse.Namespace) -> int:
    return _remove(client, args, PHONES, "username", "phone")


def _password(args: argparse.Namespace) -> str | None:
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\r\n")
    value: str | None = getattr(args, "password", None)
    return value


def _cdr_row(cdr: dict[str, Any]) -> dict[str, Any]:
    return {**cdr, "start": stamp(cdr.get("start_at")),
            "mapping_gateway": cdr.get("mapping_gateway") or cdr.get("phone")
            or cdr.get("origin_vendor")}


def cdr_tail(client: Client, args: argparse.Namespace) -> int:
    filters = {"caller": args.caller, "callee": args.callee}
    header = True

    def show(rows: list[dict[str, Any]]) -> None:
        nonlocal header
        if args.json:
            for row in rows:
                print(json.dumps(row))
        elif rows:
            print(table([_cdr_row(r) for r in rows], COLUMNS["cdr"], header, CDR_WIDTHS))
            header = False
        sys.stdout.flush()

    if args.since_id is not None:
        cursor = args.since_id
    else:
        newest = client.get("/api/v1/cdrs", tail=args.lines, **filters)["items"]
        show(newest)
        cursor = newest[-1]["id"] if newest else 0
    while True:
        page: list[dict[str, Any]] = []
        for cdr in client.pages("/api/v1/cdrs", after_id=cursor, limit=args.page, **filters):
            page.append(cdr)
            cursor = cdr["id"]
            if len(page) >= args.page:
                show(page)
                page = []
        show(page)
        if not args.follow:
            return 0
        try:
            time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0


def calls(client: Client, args: argparse.Namespace) -> int:
    items: list[dict[str, Any]] = client.get("/api/v1/calls")["items"]
    now = time.time()
    rows = [{**c, "from": c.get("mapping_gateway") or c.get("phone") or c.get("source"),
             "age": f"{now - c['start_at']:.0f}s" if c.get("start_at") else None}
            for c in items]
    emit(args, items, table(rows, COLUMNS["call"]) + f"\n{len(items)} call(s) up")
    return 0


# -- command line ----------------------------------------------------------------------


Handler = Callable[[Client, argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", default=os.environ.get("SOFTSWITCH_API", DEFAULT_API),
                        help=f"the softswitch API (default $SOFTSWITCH_API or {DEFAULT_API})")
    common.add_argument("--token", default=None,
                        help="API token (default $SOFTSWITCH_TOKEN, else --token-file)")
    common.add_argument("--token-file", type=Path, default=DEFAULT_TOKEN_FILE,
                        help=f"file holding the token (default {DEFAULT_TOKEN_FILE})")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return common


def _leaf(sub: Any, name: str, handler: Handler, common: argparse.ArgumentParser,
          help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, parents=[common])
    parser.set_defaults(op_handler=handler)
    return parser


def _enabled_filter(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--enabled", dest="enabled", action="store_const", const=True,
                       default=None, help="only enabled ones")
    group.add_argument("--disabled", dest="enabled", action="store_const", const=False,
                       help="only disabled ones")


def _kv(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("assignments", nargs="*", metavar="KEY=VALUE",
                        help="any other field (see the API's schema); null clears")


def _password_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password", help="digest password (visible in ps; see --password-stdin)")
    group.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin")


def register(sub: Any) -> None:
    """Add the ``gw``, ``phone``, ``cdr`` and ``calls`` commands to ``softswitch``."""
    common = _common()

    gw = sub.add_parser("gw", help="mapping (customer) and routing (vendor) gateways")
    gw_sub = gw.add_subparsers(dest="gw_command", required=True)
    listing = _leaf(gw_sub, "list", gw_list, common, "list gateways")
    listing.add_argument("kind", nargs="?", choices=list(KINDS))
    listing.add_argument("--name", help="exact name")
    _enabled_filter(listing)
    show = _leaf(gw_sub, "show", gw_show, common, "show one gateway and its ETag")
    show.add_argument("kind", choices=list(KINDS))
    show.add_argument("ref", metavar="ID|NAME")
    add = gw_sub.add_parser("add", help="create a gateway")
    add_sub = add.add_subparsers(dest="kind", required=True)
    mapping = _leaf(add_sub, "mapping", gw_add, common, "a customer trunk")
    mapping.add_argument("--name", required=True)
    mapping.add_argument("--ip", action="append", help="source IP (repeat for more)")
    mapping.add_argument("--mode", choices=("ip", "ip_port", "password"), default="ip",
                         help="call authentication mode (default ip)")
    mapping.add_argument("--port", type=int, help="source port (ip_port mode)")
    mapping.add_argument("--username", help="digest username (password mode)")
    _password_options(mapping)
    routing = _leaf(add_sub, "routing", gw_add, common, "a vendor trunk")
    routing.add_argument("--name", required=True)
    routing.add_argument("--host", required=True,
                         help="the vendor's IP address or DNS name")
    routing.add_argument("--port", type=int, default=None,
                         help="default: 5060 for an IP address; a name's from DNS (SRV)")
    routing.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    routing.add_argument("--prefix", action="append", help="callee prefix (repeat for more)")
    routing.add_argument("--priority", type=int, default=0, help="lower is tried first")
    routing.add_argument("--prefix-mode", choices=("terminate", "continue"),
                         default="terminate")
    for parser in (mapping, routing):
        parser.add_argument("--capacity", type=int, help="concurrent calls")
        parser.add_argument("--disabled", action="store_true", help="create it disabled")
        _kv(parser)
    change = _leaf(gw_sub, "set", gw_set, common, "change fields (KEY=VALUE ...)")
    change.add_argument("kind", choices=list(KINDS))
    change.add_argument("ref", metavar="ID|NAME")
    _kv(change)
    remove = _leaf(gw_sub, "rm", gw_rm, common, "delete a gateway")
    remove.add_argument("kind", choices=list(KINDS))
    remove.add_argument("ref", metavar="ID|NAME")

    phone = sub.add_parser("phone", help="phone accounts")
    phone_sub = phone.add_subparsers(dest="phone_command", required=True)
    plist = _leaf(phone_sub, "list", phone_list, common, "list phone accounts")
    plist.add_argument("--username", help="exact username")
    _enabled_filter(plist)
    padd = _leaf(phone_sub, "add", phone_add, common, "create a phone account")
    padd.add_argument("--username", required=True, help="also the phone's number")
    _password_options(padd)
    padd.add_argument("--display-name")
    padd.add_argument("--capacity", type=int)
    padd.add_argument("--disabled", action="store_true")
    _kv(padd)
    pset = _leaf(phone_sub, "set", phone_set, common, "change fields (KEY=VALUE ...)")
    pset.add_argument("ref", metavar="ID|USERNAME")
    _kv(pset)
    prm = _leaf(phone_sub, "rm", phone_rm, common, "delete a phone account")
    prm.add_argument("ref", metavar="ID|USERNAME")

    cdr = sub.add_parser("cdr", help="call detail records")
    cdr_sub = cdr.add_subparsers(dest="cdr_command", required=True)
    tail = _leaf(cdr_sub, "tail", cdr_tail, common,
                 "print the newest CDRs, or every CDR after --since-id; --follow polls")
    tail.add_argument("--since-id", type=int, help="print every CDR with a higher id")
    tail.add_argument("-n", "--lines", type=int, default=10,
                      help="without --since-id: how many of the newest (default 10)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep polling for new CDRs")
    tail.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    tail.add_argument("--page", type=int, default=100, help="CDRs per request (1-1000)")
    tail.add_argument("--caller", help="exact caller, or a prefix ending in *")
    tail.add_argument("--callee", help="exact callee, or a prefix ending in *")

    _leaf(sub, "calls", calls, common, "calls up now")


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    env = os.environ.get("SOFTSWITCH_TOKEN", "").strip()
    if env:
        return env
    path: Path = args.token_file
    if path is None:  # commands with --db: the admin token the engine writes beside it
        path = args.token_file = var_dir_for(args.db) / "admin-token"
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise OpError(f"no API token: pass --token, set SOFTSWITCH_TOKEN, or run where "
                      f"{args.token_file} is readable ({exc.strerror})") from None
    if not token:
        raise OpError(f"{args.token_file} is empty")
    return token


def run(args: argparse.Namespace) -> int:
    """Run the parsed operator command; 1 when the API refuses or cannot be reached."""
    try:
        client = Client(args.api, _token(args))
        handler: Handler = args.op_handler
        return handler(client, args)
    except OpError as exc:
        print(f"softswitch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "gw": run, "phone": run, "cdr": run, "calls": run,
}
