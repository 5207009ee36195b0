"""The ``softswitch`` command line."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from b2bua import logs, opcli, operatorcli, paramcli, webhookcli
from b2bua.lab import cli as lab
from b2bua.options import (
    DEFAULT_VAR_DIR,
    EngineOptions,
    HostPort,
    PortRange,
    control_path_for,
    default_media_workers,
    split_ports,
    var_dir_for,
    with_redis_password,
)
from b2bua.storage import (
    audit,
    is_postgres,
    migrate,
    open_database,
    sqlite_path,
    tokens,
)
from b2bua.storage.backend import Database, StorageError
from b2bua.storage.copy import CopyError, copy_database, shown
from b2bua.storage.db import DEFAULT_DB_PATH

DB_ENV = "SOFTSWITCH_DB"


def database_target(text: str) -> Path | str:
    """``--db``: a database server's URL stays as given; anything else is a SQLite file
    (a path, or ``sqlite:///path``)."""
    return text if is_postgres(text) else sqlite_path(text)


def _add_db(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get(DB_ENV)
    parser.add_argument("--db", type=database_target,
                        default=database_target(env) if env else DEFAULT_DB_PATH,
                        help=f"SQLite database file, or a postgresql:// URL (default: "
                             f"${DB_ENV} when set, else {DEFAULT_DB_PATH})")


def _count(what: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of workers: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be {low} to {high}")
        return value
    return parse


_workers = _count("relay workers", 0, 64)


def _node_name(text: str) -> str:
    if text == "":  # argparse runs the default through here too: none
        return text
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", text):
        raise argparse.ArgumentTypeError(
            "a node name is 1-63 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit")
    return text


def _dns_server(text: str) -> HostPort:
    try:
        return HostPort.parse_default(text, 53)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an IP address[:PORT]: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softswitch", description="Carrier SIP softswitch")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the engine and the API")
    _add_db(run)
    run.add_argument("--sip-listen", type=HostPort.parse, default=HostPort("0.0.0.0", 5060),
                     help="SIP address, UDP and TCP (default 0.0.0.0:5060)")
    run.add_argument("--api-listen", type=HostPort.parse, default=HostPort("127.0.0.1", 8088),
                     help="REST API address (default 127.0.0.1:8088)")
    run.add_argument("--media-ports", type=PortRange.parse, default=PortRange(20000, 40000),
                     help="RTP relay port range (default 20000-40000)")
    run.add_argument("--media-workers", type=_workers, default=None,
                     help="relay worker processes (default: one per core, none on one "
                          "core; 0 relays in the engine process)")
    run.add_argument("--relay-ciphers", choices=("c", "python"), default="c",
                     help="where the relay applies the RTP payload ciphers on latched "
                          "legs: in its C receive loop (default) or in Python (the same "
                          "bytes, more CPU: for comparison or to rule the C path out)")
    run.add_argument("--signalling-workers", type=_count("signalling workers", 1, 16),
                     default=1,
                     help="engine processes sharing SIP signalling by Call-ID (default 1; "
                          "see docs/scaling.md for what is not shared yet)")
    run.add_argument("--public-address", default=None,
                     help="address advertised in SIP and SDP (default: the SIP address)")
    run.add_argument("--dns-server", type=_dns_server, default=None,
                     help="DNS server for vendors given by name, HOST[:PORT] (default: "
                          "the system's, from /etc/resolv.conf)")
    run.add_argument("--var-dir", type=Path, default=None,
                     help="folder for the engine's control socket, the admin token and "
                          "writes saved at a locked stop (default: the SQLite database's "
                          f"folder; {DEFAULT_VAR_DIR}/ with a postgresql:// database)")
    run.add_argument("--node", type=_node_name, default="",
                     help="this node's name when several share one database "
                          "(docs/cluster.md): its calls are recovered by it, or by the "
                          "node that takes over when it dies (default: none, on its own)")
    run.add_argument("--redis", default="", metavar="URL",
                     help="redis://HOST[:PORT][/DB]: the cluster's live counters, shared by "
                          "the nodes (needs --node; docs/cluster.md)")
    run.add_argument("--redis-password-file", type=Path, default=None, metavar="PATH",
                     help="a file holding Redis's password (its first line), so that it "
                          "is not on the command line")
    run.add_argument("--log-level", default="INFO")

    mig = sub.add_parser("migrate", help="create or upgrade the database")
    _add_db(mig)

    tok = sub.add_parser("token", help="API tokens")
    tok_sub = tok.add_subparsers(dest="token_command", required=True)
    create = tok_sub.add_parser("create", help="create a token and print it (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=tokens.ROLES, default="admin")
    _add_db(create)

    paramcli.register(sub, _add_db)  # param list|get|set: over the REST API
    operatorcli.register(sub, _add_db)  # operator add|list|...: console accounts, over the API

    dbs = sub.add_parser("db", help="whole-database tasks")
    db_sub = dbs.add_subparsers(dest="db_command", required=True)
    copy = db_sub.add_parser(
        "copy", help="copy a whole installation into an empty database (SQLite or "
                     "PostgreSQL, either way); stop the softswitch first")
    copy.add_argument("--from", dest="source", metavar="SOURCE", required=True,
                      type=database_target,
                      help="the database to copy: a SQLite file (or sqlite:///path) or a "
                           "postgresql:// URL; only read")
    copy.add_argument("--to", dest="target", metavar="TARGET", required=True,
                      type=database_target,
                      help="an empty database to copy into (migrated first; a new SQLite "
                           "file is created)")
    opcli.register(sub)  # gw, phone, cdr, calls: over the REST API
    webhookcli.register(sub)  # webhook list|add|set|remove: over the REST API
    lab.register(sub)  # lab up|down|status|call: network namespaces (docs/lab.md)
    return parser


@contextmanager
def _migrated(target: Path | str) -> Iterator[Database]:
    with open_database(target) as database:
        migrate.migrate(database)
        yield database


def cmd_run(args: argparse.Namespace) -> int:
    from b2bua import runner

    logs.setup(args.log_level)
    var_dir = args.var_dir if args.var_dir is not None else var_dir_for(args.db).resolve()
    redis = args.redis
    if args.redis_password_file is not None:
        try:
            lines = args.redis_password_file.read_text().splitlines()
            redis = with_redis_password(redis, lines[0] if lines else "")
        except (OSError, ValueError) as exc:
            print(f"softswitch: --redis-password-file: {exc}", file=sys.stderr)
            return 2
    options = EngineOptions(
        database=args.db,
        sip_listen=args.sip_listen,
        media_ports=args.media_ports,
        public_address=args.public_address,
        control_path=control_path_for(args.db, var_dir),
        var_dir=var_dir,
        media_workers=(default_media_workers() if args.media_workers is None
                       else args.media_workers),
        relay_ciphers=args.relay_ciphers,
        signalling_workers=args.signalling_workers,
        dns_server=args.dns_server,
        node=args.node,
        api_address=str(args.api_listen),
        redis=redis,
    )
    if options.redis and not options.node:
        print("softswitch: --redis needs --node (each node's counts are its own)",
              file=sys.stderr)
        return 2
    if options.signalling_workers > 1:
        logs.setup(args.log_level, worker=0)
    try:  # each signalling worker, and each relay worker, needs its own media ports
        for index in range(options.signalling_workers):
            mine = options.for_worker(index)
            if mine.media_workers:
                split_ports(mine.media_ports.low, mine.media_ports.high, mine.media_workers)
    except ValueError as exc:
        print(f"softswitch: {exc}", file=sys.stderr)
        return 2
    return runner.run(options, args.api_listen)


def cmd_migrate(args: argparse.Namespace) -> int:
    with open_database(args.db) as database:
        applied = migrate.migrate(database)
        version = migrate.current_version(database)
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))}; schema version {version}")
    else:
        print(f"schema version {version}; nothing to do")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    with _migrated(args.db) as conn:
        try:
            token = tokens.create_token(conn, args.name, args.role)
            audit.record(conn, "cli", "create", f"token/{args.name}", {"role": args.role})
        except ValueError as exc:
            print(f"softswitch: {exc}", file=sys.stderr)
            return 2
    print(token)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    return {"copy": cmd_db_copy}[args.db_command](args)


def cmd_db_copy(args: argparse.Namespace) -> int:
    def done(table: str, rows: int) -> None:
        print(f"  {table}: {rows}", file=sys.stderr)

    print(f"copying {shown(args.source)} to {shown(args.target)}", file=sys.stderr)
    try:
        copied = copy_database(args.source, args.target, progress=done)
    except (CopyError, StorageError, migrate.MigrationError) as exc:
        print(f"softswitch: db copy: {exc}; nothing was copied", file=sys.stderr)
        return 1
    width = max(len(table) for table in copied)
    for table, rows in copied.items():
        print(f"{table:<{width}}  {rows:>10}")
    print(f"{'total':<{width}}  {sum(copied.values()):>10}")
    print("committed; each table's row count equals the source's")
    return 0


def absolute_paths(args: argparse.Namespace) -> argparse.Namespace:
    """Every path argument, given or defaulted, made absolute once against the folder the
    command started in: no process the command starts depends on its working folder. A
    database URL is a string, not a path, and stays as given."""
    for name, value in vars(args).items():
        if isinstance(value, Path):
            setattr(args, name, value.resolve())
    return args


def main(argv: list[str] | None = None) -> int:
    args = absolute_paths(build_parser().parse_args(argv))
    handlers = {"run": cmd_run, "migrate": cmd_migrate, "token": cmd_token, "db": cmd_db}
    handlers.update(opcli.HANDLERS)
    handlers.update(paramcli.HANDLERS)
    handlers.update(operatorcli.HANDLERS)
    handlers.update(webhookcli.HANDLERS)
    handlers.update(lab.HANDLERS)
    try:
        return handlers[args.command](args)
    except migrate.SchemaTooNewError as exc:
        print(f"softswitch: {exc}", file=sys.stderr)
        return 3
    except StorageError as exc:  # e.g. the database server cannot be reached
        print(f"softswitch: database: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"softswitch: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
