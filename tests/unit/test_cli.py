"""The softswitch command line: migrate, tokens, parameters (over the API)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from apitest import ApiSetup, make_api
from werkzeug.serving import make_server

from b2bua.cli import absolute_paths, build_parser, main
from b2bua.config.registry import PARAMETERS
from b2bua.options import EngineOptions, control_path_for, var_dir_for
from b2bua.storage import db, open_database, tokens


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_migrate_creates_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.db"
    code, out, _ = run(capsys, "migrate", "--db", str(path))
    assert code == 0 and "applied migrations" in out
    code, out, _ = run(capsys, "migrate", "--db", str(path))
    assert code == 0 and "nothing to do" in out


def test_newer_schema_refused_with_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.db"
    run(capsys, "migrate", "--db", str(path))
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (500, 'future', 0)")
    conn.commit()
    conn.close()
    code, _, err = run(capsys, "migrate", "--db", str(path))
    assert code == 3
    assert "schema version 500 is newer" in err


def test_token_create_prints_token_and_stores_only_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.db"
    code, out, _ = run(capsys, "token", "create", "--name", "billing", "--db", str(path))
    token = out.strip()
    assert code == 0 and token.startswith(tokens.TOKEN_PREFIX)
    conn = db.connect(path)
    stored = [tuple(r) for r in conn.execute("SELECT name, role, token_hash FROM api_tokens")]
    assert stored == [("billing", "admin", tokens.hash_token(token))]
    assert token not in str(stored)
    with open_database(path) as database:
        assert tokens.verify_token(database, token) is not None
        assert tokens.verify_token(database, token + "x") is None


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, ApiSetup]]:
    """The API served over HTTP on a free port, as ``softswitch run`` serves it."""
    setup = make_api(tmp_path)
    app = setup.client.application
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", setup
    finally:
        server.shutdown()
        thread.join()


def test_param_get_set_and_refusals(api: tuple[str, ApiSetup], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    base, setup = api
    # The admin token where the engine writes it, beside the database --db names.
    (tmp_path / "admin-token").write_text(setup.admin + "\n")
    dbarg = ["--api", base, "--db", str(tmp_path / "s.db")]
    assert run(capsys, "param", "get", "SS_SIP_TIMEOUT_INVITE", *dbarg)[1].strip() == "10"
    code, out, _ = run(capsys, "param", "set", "SS_SIP_TIMEOUT_INVITE", "15", *dbarg)
    assert code == 0 and out.strip() == "SS_SIP_TIMEOUT_INVITE = 15"
    assert run(capsys, "param", "get", "ss_sip_timeout_invite", *dbarg)[1].strip() == "15"

    code, _, err = run(capsys, "param", "set", "SS_SIP_TIMEOUT_INVITE", "301", *dbarg)
    assert code == 2 and "at most 300" in err
    code, _, err = run(capsys, "param", "set", "SS_SIP_TIMEOUT_INVITE", "soon", *dbarg)
    assert code == 2 and "integer" in err
    assert run(capsys, "param", "get", "SS_SIP_TIMEOUT_INVITE", *dbarg)[1].strip() == "15"

    code, _, err = run(capsys, "param", "set", "SS_NOPE", "1", *dbarg)
    assert code == 2 and "unknown parameter" in err

    code, out, _ = run(capsys, "param", "set", "SS_SIP_RESEND_INTERVAL", "0.5,1,2", *dbarg)
    assert code == 0 and out.strip() == "SS_SIP_RESEND_INTERVAL = 0.5,1,2"
    code, out, _ = run(capsys, "param", "get", *dbarg)
    assert "SS_REPLY_UNAUTHORIZED = On" in out and "SS_GATEWAY_SWITCH_LIMIT = none" in out
    assert run(capsys, "param", "list", *dbarg)[1] == out
    assert out.splitlines()[0].startswith(f"{PARAMETERS[0].name} = ")  # the registry's order

    # A rule that spans parameters is the API's to check: refused all the same.
    code, _, err = run(capsys, "param", "set", "SS_RTPENCRYPTIONMODE", "3", *dbarg)
    assert code == 2 and "SS_RTPENCRYPTIONKEY" in err

    conn = db.connect(tmp_path / "s.db")
    audit = [tuple(r) for r in conn.execute("SELECT actor, resource FROM audit_log")]
    assert audit == [("token:ops", "parameter/SS_SIP_TIMEOUT_INVITE"),
                     ("token:ops", "parameter/SS_SIP_RESEND_INTERVAL")]


def test_param_commands_use_the_api_and_its_token(
        api: tuple[str, ApiSetup], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    base, setup = api
    code, _, err = run(capsys, "param", "get", "SS_SIP_TRACE", "--api", base,
                       "--db", str(tmp_path / "elsewhere" / "s.db"))
    assert code == 1 and "no API token" in err and "elsewhere/admin-token" in err
    code, _, err = run(capsys, "param", "set", "SS_SIP_TRACE", "On", "--api", base,
                       "--token", setup.reader)
    assert code == 1 and "403" in err  # a read token may not change anything
    code, out, _ = run(capsys, "param", "get", "SS_SIP_TRACE", "--api", base, "--json",
                       "--token", setup.reader)
    assert code == 0 and json.loads(out)["name"] == "SS_SIP_TRACE"
    code, _, err = run(capsys, "param", "list", "--api", "http://127.0.0.1:9",
                       "--token", setup.admin)
    assert code == 1 and "not reachable" in err


def test_run_refuses_more_relay_workers_than_port_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "run", "--db", str(tmp_path / "s.db"),
                       "--media-ports", "20000-20003", "--media-workers", "4")
    assert code == 2 and "too few for 4 relay workers" in err
    assert not (tmp_path / "s.db").exists()  # refused before anything started
    with pytest.raises(SystemExit):
        main(["run", "--media-workers", "many"])
    assert "not a number of workers" in capsys.readouterr().err


def test_run_checks_signalling_workers(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "run", "--db", str(tmp_path / "s.db"),
                       "--media-ports", "20000-20001", "--signalling-workers", "2")
    assert code == 2 and "too few for 2 signalling workers" in err
    code, _, err = run(capsys, "run", "--db", str(tmp_path / "s.db"),
                       "--media-ports", "20000-20007", "--signalling-workers", "2",
                       "--media-workers", "6")  # two pairs per worker, three relays each
    assert code == 2 and "too few for 3 relay workers" in err
    assert not (tmp_path / "s.db").exists()
    for bad in ("0", "17", "two"):
        with pytest.raises(SystemExit):
            main(["run", "--signalling-workers", bad])


@pytest.mark.parametrize("argv, attribute, expected", [
    (["lab", "status", "--state-dir", "x"], "state_dir", "x"),
    (["lab", "call"], "state_dir", "var/lab"),
    (["migrate"], "db", "var/softswitch.db"),
    (["run", "--db", "d/s.db"], "db", "d/s.db"),
    (["calls"], "token_file", "var/admin-token"),
])
def test_paths_are_absolute_from_the_starting_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], attribute: str,
    expected: str,
) -> None:
    """Given or defaulted, a path names a file under the folder the command started in,
    whatever folder the processes it starts run in (the lab's sipp runs in a log folder)."""
    monkeypatch.chdir(tmp_path)
    args = absolute_paths(build_parser().parse_args(argv))
    assert getattr(args, attribute) == tmp_path.resolve() / expected


@pytest.mark.parametrize(("given", "server"), [
    ("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("::1", ("::1", 53)), ("[::1]:5353", ("::1", 5353)),
])
def test_dns_server_option(given: str, server: tuple[str, int]) -> None:
    args = build_parser().parse_args(["run", "--dns-server", given])
    assert (args.dns_server.host, args.dns_server.port) == server
    assert build_parser().parse_args(["run"]).dns_server is None


def test_dns_server_must_be_an_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--dns-server", "dns.example.net"])
    assert "--dns-server" in capsys.readouterr().err


PG_URL = "postgresql://softswitch:secret@db.example:5432/softswitch"


def test_db_accepts_a_postgres_url_and_leaves_it_a_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = absolute_paths(build_parser().parse_args(["run", "--db", PG_URL]))
    assert args.db == PG_URL
    args = absolute_paths(build_parser().parse_args(["migrate", "--db", "sqlite:///d/s.db"]))
    assert args.db == tmp_path.resolve() / "d/s.db"


def test_db_defaults_to_the_environment(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOFTSWITCH_DB", PG_URL)
    assert absolute_paths(build_parser().parse_args(["migrate"])).db == PG_URL
    monkeypatch.setenv("SOFTSWITCH_DB", "e/s.db")
    assert absolute_paths(build_parser().parse_args(["migrate"])).db == \
        tmp_path.resolve() / "e/s.db"
    assert build_parser().parse_args(["migrate", "--db", "f.db"]).db == Path("f.db")


def test_engine_files_beside_sqlite_else_in_the_var_dir() -> None:
    assert var_dir_for(Path("/x/var/softswitch.db")) == Path("/x/var")
    assert control_path_for(Path("/x/var/softswitch.db")) == Path("/x/var/engine.sock")
    assert var_dir_for(PG_URL) == Path("var")
    assert control_path_for(PG_URL) == Path("var/engine.sock")
    assert control_path_for(PG_URL, Path("/srv/ss")) == Path("/srv/ss/engine.sock")


@pytest.mark.parametrize(("argv", "database", "var_dir"), [
    (["--db", "d/s.db"], "d/s.db", "d"),
    (["--db", "d/s.db", "--var-dir", "v"], "d/s.db", "v"),
    (["--db", PG_URL], PG_URL, "var"),
    (["--db", PG_URL, "--var-dir", "v"], PG_URL, "v"),
])
def test_run_puts_the_engine_files_in_the_var_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], database: str,
    var_dir: str,
) -> None:
    from b2bua import runner

    seen: list[EngineOptions] = []
    monkeypatch.setattr(runner, "run", lambda options, _api: seen.append(options) or 0)
    monkeypatch.chdir(tmp_path)
    assert main(["run", *argv, "--media-workers", "0"]) == 0
    (options,) = seen
    here = tmp_path.resolve()
    assert options.database == (database if database == PG_URL else here / database)
    assert options.var_dir == here / var_dir
    assert options.control_path == here / var_dir / "engine.sock"
