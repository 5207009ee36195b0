"""Failure-code maps (VOS3000's ``callFailedSipCode``): the final code a mapping
gateway's caller is sent in place of the one the call ended with, e.g. every 5xx as 503
and 404 as 480. An exact code wins over its class ("5xx"). The CDR keeps the vendor's
code in ``final_code`` and what the caller got in ``caller_code``. 487 (the caller's own
CANCEL) is never mapped: RFC 3261 fixes it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PATTERN = re.compile(r"([3-6])(\d\d|xx)")
NEVER_MAPPED = frozenset({487})


class FailureCodeError(ValueError):
    """A map entry that is not "NNN" or "Nxx" (3-6) to a code 300-699."""


@dataclass(frozen=True, slots=True)
class FailureCodes:
    exact: tuple[tuple[int, int], ...] = ()
    classes: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, rules: Mapping[str, int]) -> FailureCodes:
        exact: dict[int, int] = {}
        classes: dict[int, int] = {}
        for key, target in rules.items():
            match = PATTERN.fullmatch(str(key))
            if match is None:
                raise FailureCodeError(f"{key!r}: a failure code is 300-699 or 3xx-6xx")
            if isinstance(target, bool) or not isinstance(target, int) or \
                    not 300 <= target <= 699:
                raise FailureCodeError(f"{key!r}: the code sent must be 300-699")
            if match.group(2) == "xx":
                classes[int(match.group(1))] = target
            else:
                exact[int(key)] = target
        return cls(tuple(sorted(exact.items())), tuple(sorted(classes.items())))

    def sent(self, code: int) -> int:
        """The code the caller is sent for a call that ended with ``code``."""
        if code in NEVER_MAPPED or code < 300:
            return code
        for original, target in self.exact:
            if original == code:
                return target
        for hundreds, target in self.classes:
            if hundreds == code // 100:
                return target
        return code

    def __bool__(self) -> bool:
        return bool(self.exact or self.classes)


NO_MAP = FailureCodes()
