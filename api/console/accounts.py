"""Operator passwords and sign-in with lock-out.

Passwords are hashed with Werkzeug's ``generate_password_hash``: scrypt (N=32768, r=8,
p=1, a random salt per hash), from the library Flask itself is built on, so the console
adds no dependency for it; the method is stored with each hash, so a later default is
picked up by new passwords while the stored ones keep verifying.
"""

from __future__ import annotations

import time
from functools import lru_cache

from werkzeug.security import check_password_hash, generate_password_hash

from b2bua.storage import audit, operators
from b2bua.storage.backend import Database
from b2bua.storage.operators import LOCK_SECONDS, MAX_FAILURES, Operator

PASSWORD_MIN = 10
PASSWORD_MAX = 256
# One answer for every refusal, so a guess learns neither whether the name exists nor
# whether the account is locked.
REFUSED = (f"Sign-in refused: wrong name or password, or the account is locked after "
           f"{MAX_FAILURES} failures in a row (for {LOCK_SECONDS // 60} minutes, or until "
           f"an admin unlocks it).")


def hash_password(password: str) -> str:
    return generate_password_hash(password)


@lru_cache(maxsize=1)
def _decoy() -> str:
    return generate_password_hash("no account has this password")


def sign_in(db: Database, name: str, password: str, source: str | None) -> Operator | None:
    """The operator when ``password`` is theirs and the account is not locked; else None
    (and the failure counted; the last one allowed locks the account).

    The hash is checked in every case, a locked account and an unknown name included,
    so the time taken tells nothing either.
    """
    found = operators.with_hash(db, name)
    if found is None:
        check_password_hash(_decoy(), password)
        return None
    good = check_password_hash(found[1], password)
    now = time.time()
    with db.transaction():  # read again under the write lock: concurrent tries all count
        operator = operators.get_by_id(db, found[0].id)
        if operator is None or operator.locked(now):
            return None
        if not good:
            until = operators.record_failure(db, operator.id, now)
            if until is not None:
                audit.record(db, "console", "lock", f"operators/{name}",
                             {"failures": MAX_FAILURES, "until": until, "source": source})
            return None
        operators.record_sign_in(db, operator.id, now)
        audit.record(db, f"operator:{name}", "sign-in", f"operators/{name}",
                     {"source": source})
    return operator


def sign_out(db: Database, operator: Operator, source: str | None) -> None:
    with db.transaction():
        operators.end_sessions(db, operator.id)
        audit.record(db, f"operator:{operator.name}", "sign-out",
                     f"operators/{operator.name}", {"source": source})
