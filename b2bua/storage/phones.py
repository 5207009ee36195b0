"""Phone accounts as the engine sees them (b2bua/registrar/phones.py)."""

from __future__ import annotations

from b2bua.controls.duration import DurationLimit
from b2bua.controls.rates import CallRate
from b2bua.registrar.phones import PhoneAccount
from b2bua.storage.backend import Database
from b2bua.storage.numbers import number_rules


def phone_accounts(database: Database) -> list[PhoneAccount]:
    return [
        PhoneAccount(
            id=int(r["id"]),
            username=str(r["username"]),
            password=str(r["password"]),
            display_name=r["display_name"],
            capacity=r["capacity"],
            enabled=bool(r["enabled"]),
            numbers=number_rules(r),
            call_rate=CallRate.of(r["call_rate"], r["call_rate_burst"]),
            max_duration=DurationLimit.of(r["max_duration"], r["max_duration_upper"]),
        )
        for r in database.rows("SELECT * FROM phones")
    ]
