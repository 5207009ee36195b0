"""Phone accounts as the engine sees them, reloaded live from SQLite."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from b2bua.numbers.rules import NumberRules


@dataclass(frozen=True, slots=True)
class PhoneAccount:
    id: int
    username: str  # also the phone's number
    password: str
    display_name: str | None
    capacity: int | None
    enabled: bool
    numbers: NumberRules = field(default_factory=NumberRules)


@dataclass
class PhoneDirectory:
    by_username: dict[str, PhoneAccount] = field(default_factory=dict)
    any_enabled: bool = False  # whether any account may register (the policy asks often)

    def load(self, conn: sqlite3.Connection) -> None:
        self.by_username = {
            str(r["username"]): PhoneAccount(
                id=int(r["id"]),
                username=str(r["username"]),
                password=str(r["password"]),
                display_name=r["display_name"],
                capacity=r["capacity"],
                enabled=bool(r["enabled"]),
                numbers=NumberRules.from_row(r),
            )
            for r in conn.execute("SELECT * FROM phones")
        }
        self.any_enabled = any(a.enabled for a in self.by_username.values())

    def get(self, username: str) -> PhoneAccount | None:
        account = self.by_username.get(username)
        return account if account is not None and account.enabled else None
