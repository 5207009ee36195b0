"""Numbered schema migrations, applied in order by ``b2bua.storage.migrate``.

Each module ``mNNNN_name.py`` has ``VERSION`` and ``up(db)`` taking a
``sqlite_utils.Database`` (SQLite). A migration never edits an earlier one's effect in
place without a new number: a database records every version it has applied.

PostgreSQL: ``postgresql_baseline.sql`` builds what versions 1 to 13 build on SQLite,
in one step. Every migration after 13 has, besides ``up(db)``, an
``up_postgresql(database)`` taking a ``b2bua.storage.backend.Database`` that makes the
same change there (statements through ``database.execute``; no commit, it runs inside
the version's transaction). ``migrate`` refuses to start on PostgreSQL while a pending
migration lacks it, and ``tests/integration/test_schema_parity.py`` fails when the two
steps build different schemas.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def load_all() -> list[ModuleType]:
    """Every migration module, sorted by version."""
    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if info.name.startswith("m") and info.name[1:5].isdigit()
    ]
    modules.sort(key=lambda m: int(m.VERSION))
    return modules
