"""Only ``b2bua/storage/`` and ``migrations/`` hold SQL or import a database driver."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = (ROOT / "b2bua" / "storage", ROOT / "migrations")
DRIVERS = {"sqlite3", "psycopg", "psycopg_pool", "sqlite_utils"}
SQL = re.compile(
    r"\bSELECT\b.*\bFROM\b|\bINSERT\s+(OR\s+\w+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\b|\bCREATE\s+(TABLE|INDEX|TRIGGER|UNIQUE)\b|\bPRAGMA\b"
    r"|\bBEGIN\s+IMMEDIATE\b|\bON\s+CONFLICT\b|\bWHERE\s+\w+\s*(=|>|<|IN|IS)",
    re.DOTALL)


def _sources() -> list[Path]:
    files = [*(ROOT / "b2bua").rglob("*.py"), *(ROOT / "api").rglob("*.py")]
    return sorted(f for f in files if not any(f.is_relative_to(a) for a in ALLOWED))


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal but docstrings; an f-string with its literal parts joined."""
    skip = _docstrings(tree)
    parts: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))
            parts.append((node.lineno, text))
            skip.update(id(v) for v in node.values)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in skip):
            parts.append((node.lineno, node.value))
    return parts


def violations() -> list[str]:
    found: list[str] = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in DRIVERS:
                    found.append(f"{where}:{node.lineno}: imports {name}")
        for line, text in _strings(tree):
            if SQL.search(text):
                found.append(f"{where}:{line}: SQL {text.strip()[:60]!r}")
    return found


def test_no_sql_outside_storage() -> None:
    assert violations() == []


def test_the_check_finds_sql() -> None:
    tree = ast.parse('import sqlite3\nq = f"SELECT * FROM {t} WHERE id = ?"\n')
    assert [t for _, t in _strings(tree) if SQL.search(t)]
    assert not SQL.search("Select a gateway from the list")
