"""Phone accounts as the engine sees them, reloaded live from the database
(b2bua/storage/phones.py reads them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from b2bua.controls.duration import DurationLimit
from b2bua.controls.rates import CallRate
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
    call_rate: CallRate | None = None
    max_duration: DurationLimit | None = None  # None: SS_MAX_CALL_DURATION


@dataclass
class PhoneDirectory:
    by_username: dict[str, PhoneAccount] = field(default_factory=dict)
    any_enabled: bool = False  # whether any account may register (the policy asks often)

    def set(self, accounts: Iterable[PhoneAccount]) -> None:
        """Replace every account."""
        self.by_username = {a.username: a for a in accounts}
        self.any_enabled = any(a.enabled for a in self.by_username.values())

    def get(self, username: str) -> PhoneAccount | None:
        account = self.by_username.get(username)
        return account if account is not None and account.enabled else None
