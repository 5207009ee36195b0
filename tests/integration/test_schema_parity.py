"""The PostgreSQL baseline builds the schema the SQLite migrations build: the same tables,
columns (in order, type class, nullability, default, auto-numbered id), indexes (name,
columns, uniqueness), foreign keys, reload-counter triggers and seeded rows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from b2bua.storage import migrate, open_database
from b2bua.storage.backend import Database
from b2bua.storage.layout import value_kind

Schema = dict[str, dict[str, Any]]

PG_TYPES = {"bigint": "integer", "text": "text", "double precision": "real", "bytea": "blob"}
FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
              "d": "SET DEFAULT"}


def literal(text: str | None) -> str | None:
    """A default as the value it stands for: quotes and a PostgreSQL cast taken off."""
    if text is None:
        return None
    text = re.sub(r"::[a-z ]+$", "", text.strip())
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text


def seeded(database: Database) -> dict[str, Any]:
    return {
        "config_versions": sorted((r["table_name"], r["version"]) for r in
                                  database.rows("SELECT table_name, version FROM config_versions")),
        "schema_migrations": sorted((r["version"], r["name"]) for r in
                                    database.rows("SELECT version, name FROM schema_migrations")),
    }


def sqlite_schema(database: Database) -> Schema:
    schema: Schema = {}
    triggers = database.rows("SELECT name, tbl_name, sql FROM sqlite_master "
                             "WHERE type = 'trigger'")
    for table in database.tables():
        info = database.rows(f"PRAGMA table_info({table})")
        pk = [c["name"] for c in sorted(info, key=lambda c: c["pk"]) if c["pk"]]
        columns = [(c["name"], value_kind(c["type"]), bool(c["notnull"] or c["pk"]),
                    literal(c["dflt_value"]),
                    pk == [c["name"]] and c["type"].upper() == "INTEGER")  # the rowid
                   for c in info]
        indexes = set()
        for index in database.rows(f"PRAGMA index_list({table})"):
            if index["origin"] == "pk":
                continue
            names = [r["name"] for r in sorted(database.rows(f"PRAGMA index_info({index['name']})"),
                                               key=lambda r: r["seqno"])]
            indexes.add((index["name"], tuple(names), bool(index["unique"])))
        keys = {(k["from"], k["table"], k["to"], k["on_update"], k["on_delete"])
                for k in database.rows(f"PRAGMA foreign_key_list({table})")}
        bumps = set()
        for trigger in triggers:
            if trigger["tbl_name"] != table:
                continue
            sql = " ".join(trigger["sql"].split())
            event = re.search(r"\b(?:AFTER|BEFORE) (INSERT|UPDATE|DELETE)\b", sql)
            counter = re.search(r"table_name = '(\w+)'", sql)
            assert event and counter and "version = version + 1" in sql, sql
            bumps.add((trigger["name"], event.group(1), counter.group(1)))
        schema[table] = {"columns": columns, "primary_key": pk, "indexes": indexes,
                         "foreign_keys": keys, "triggers": bumps}
    return schema


PG_COLUMNS = """
SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity
FROM information_schema.columns WHERE table_schema = 'public'
ORDER BY table_name, ordinal_position"""

PG_INDEXES = """
SELECT t.relname AS table_name, i.relname AS index_name, x.indisunique AS is_unique,
       x.indisprimary AS is_primary, array_agg(a.attname ORDER BY k.ord) AS columns
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(x.indkey::smallint[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
WHERE n.nspname = 'public'
GROUP BY t.relname, i.relname, x.indisunique, x.indisprimary"""

PG_FOREIGN_KEYS = """
SELECT t.relname AS table_name, a.attname AS column_name, r.relname AS ref_table,
       ra.attname AS ref_column, c.confupdtype AS on_update, c.confdeltype AS on_delete
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_class r ON r.oid = c.confrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(c.conkey, c.confkey) AS k(col, ref)
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.col
JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = k.ref
WHERE c.contype = 'f' AND n.nspname = 'public'"""

PG_TRIGGERS = """
SELECT trigger_name, event_object_table, event_manipulation, action_timing,
       action_orientation, action_statement
FROM information_schema.triggers WHERE trigger_schema = 'public'"""


def pg_schema(database: Database) -> Schema:
    schema: Schema = {t: {"columns": [], "primary_key": [], "indexes": set(),
                          "foreign_keys": set(), "triggers": set()} for t in database.tables()}
    for c in database.rows(PG_COLUMNS):
        schema[c["table_name"]]["columns"].append(
            (c["column_name"], PG_TYPES.get(c["data_type"], f"pg {c['data_type']}"),
             c["is_nullable"] == "NO", literal(c["column_default"]), c["is_identity"] == "YES"))
    for index in database.rows(PG_INDEXES):
        entry = schema[index["table_name"]]
        if index["is_primary"]:
            entry["primary_key"] = list(index["columns"])
        else:
            entry["indexes"].add((index["index_name"], tuple(index["columns"]),
                                  index["is_unique"]))
    for k in database.rows(PG_FOREIGN_KEYS):
        schema[k["table_name"]]["foreign_keys"].add(
            (k["column_name"], k["ref_table"], k["ref_column"], FK_ACTIONS[k["on_update"]],
             FK_ACTIONS[k["on_delete"]]))
    for trigger in database.rows(PG_TRIGGERS):
        assert (trigger["action_timing"], trigger["action_orientation"]) == ("AFTER", "ROW")
        counter = re.fullmatch(r"EXECUTE FUNCTION bump_config_version\('(\w+)'\)",
                               trigger["action_statement"])
        assert counter, trigger["action_statement"]
        schema[trigger["event_object_table"]]["triggers"].add(
            (trigger["trigger_name"], trigger["event_manipulation"], counter.group(1)))
    return schema


def differences(left: Schema, right: Schema) -> list[str]:
    """What differs, one entry per table and aspect (empty when equal)."""
    found = [f"table {t}: only in {'SQLite' if t in left else 'PostgreSQL'}"
             for t in sorted(set(left) ^ set(right))]
    for table in sorted(set(left) & set(right)):
        for aspect, mine in left[table].items():
            theirs = right[table][aspect]
            if mine == theirs:
                continue
            only_mine, only_theirs = set(mine) - set(theirs), set(theirs) - set(mine)
            found.append(f"{table}.{aspect}: " + (
                f"SQLite only {sorted(only_mine, key=str)}, "
                f"PostgreSQL only {sorted(only_theirs, key=str)}"
                if only_mine or only_theirs else f"in another order: {mine} / {theirs}"))
    return found


def both(tmp_path: Path, pg_url: str) -> tuple[Database, Database]:
    lite, pg = open_database(tmp_path / "s.db"), open_database(pg_url)
    migrate.migrate(lite)
    migrate.migrate(pg)
    return lite, pg


def test_baseline_builds_what_the_sqlite_migrations_build(tmp_path: Path, pg_url: str) -> None:
    lite, pg = both(tmp_path, pg_url)
    with lite, pg:
        expected, actual = sqlite_schema(lite), pg_schema(pg)
        assert len(expected) >= 16 and sum(len(t["triggers"]) for t in expected.values()) >= 26
        assert differences(expected, actual) == []
        assert seeded(lite) == seeded(pg)


def test_the_comparison_sees_a_drifted_baseline(tmp_path: Path, pg_url: str) -> None:
    lite, pg = both(tmp_path, pg_url)
    with lite, pg:
        for change in ("ALTER TABLE phones ALTER COLUMN capacity TYPE integer",
                       "ALTER TABLE cdrs ALTER COLUMN caller SET NOT NULL",
                       "ALTER TABLE routing_gateways ALTER COLUMN transport SET DEFAULT 'tcp'",
                       "DROP INDEX idx_cdrs_call_id_in",
                       "CREATE UNIQUE INDEX idx_audit_log_at2 ON audit_log (at)",
                       "ALTER TABLE cdr_attempts DROP CONSTRAINT cdr_attempts_cdr_id_fkey",
                       "DROP TRIGGER registrations_update_bump ON registrations",
                       "ALTER TABLE active_calls ADD COLUMN extra text"):
            pg.execute(change)
        found = "\n".join(differences(sqlite_schema(lite), pg_schema(pg)))
    for where in ("phones.columns", "cdrs.columns", "routing_gateways.columns",
                  "cdrs.indexes", "audit_log.indexes", "cdr_attempts.foreign_keys",
                  "registrations.triggers", "active_calls.columns"):
        assert where in found
    assert "'pg integer'" in found
