"""The policy stage: who is this request from, and may it hear anything back?

Runs on every new out-of-dialog request before anything is sent, including before
any ``100 Trying``, and returns one of: pass (with who it is), challenge, reject
(with a code) or drop (not one byte back). Classification, most specific first
(docs/security.md):

1. a mapping gateway in ``ip_port`` mode whose IP and port both match the source;
   then a registered phone: a request (not REGISTER) from the exact address (IP, port,
   transport) of a live binding whose From user is that phone;
2. a request carrying digest credentials for a password-mode gateway's username;
3. a mapping gateway in ``ip`` mode whose IP list holds the source IP;
4. a request whose From user is a password-mode gateway's username (challenged);
5. a routing gateway whose host is the source IP;
6. unknown: 401 challenge for REGISTER and 403 for anything else when
   ``SS_REPLY_UNAUTHORIZED`` is On; nothing at all when it is Off.

Among several gateways of one class on one address the lowest id wins.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from b2bua.config.live import Params
from b2bua.routing.gateways import GatewayDirectory, MappingGateway, RoutingGateway
from b2bua.security.digest import (
    Credentials,
    DigestVerifier,
    Verdict,
    challenge_header,
)
from b2bua.security.state import (
    SESSION_LIMIT,
    AuthSession,
    BoundedMap,
    LogThrottle,
    SecurityCounters,
    SuspensionTable,
)
from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Request
from b2bua.sip.transport import Peer

log = logging.getLogger("b2bua.security")


class SourceKind(Enum):
    MAPPING_GATEWAY = "mapping_gateway"
    ROUTING_GATEWAY = "routing_gateway"
    ACCOUNT = "account"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Classification:
    kind: SourceKind
    mapping: MappingGateway | None = None
    routing: RoutingGateway | None = None
    account: Account | None = None


@dataclass(frozen=True, slots=True)
class Account:
    """Something that authenticates with a password: a password-mode gateway or a phone."""

    username: str
    password: str
    kind: str  # "gateway" or "phone"
    mapping: MappingGateway | None = None


class Action(Enum):
    PASS = "pass"
    CHALLENGE = "challenge"
    REJECT = "reject"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    source: Classification | None = None
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    reason: str = ""


UNKNOWN = Classification(SourceKind.UNKNOWN)
AccountLookup = Callable[[str], Account | None]
RegisteredLookup = Callable[[Peer, float], str | None]


def classify_by_address(source: Peer, gateways: GatewayDirectory) -> Classification:
    """Rules 1, 3 and 5: what the source address alone says."""
    candidates = gateways.mapping_by_ip.get(source.host, ())
    for gw in candidates:
        if gw.enabled and gw.auth_mode == "ip_port" and gw.port == source.port:
            return Classification(SourceKind.MAPPING_GATEWAY, mapping=gw)
    for gw in candidates:
        if gw.enabled and gw.auth_mode == "ip":
            return Classification(SourceKind.MAPPING_GATEWAY, mapping=gw)
    for vendor in gateways.routing_by_ip.get(source.host, ()):
        if vendor.enabled:
            return Classification(SourceKind.ROUTING_GATEWAY, routing=vendor)
    return UNKNOWN


class Policy:
    def __init__(self, params: Params, gateways: GatewayDirectory,
                 default_realm: str, phone_accounts: AccountLookup | None = None,
                 registered_user: RegisteredLookup | None = None) -> None:
        self.params = params
        self.gateways = gateways
        self.default_realm = default_realm
        self.phone_accounts = phone_accounts
        self.registered_user = registered_user
        self.verifier = DigestVerifier()
        self.sessions: BoundedMap[tuple[str, str], AuthSession] = BoundedMap(SESSION_LIMIT)
        self.suspensions = SuspensionTable()
        self.counters = SecurityCounters.new()
        self.throttle = LogThrottle()

    @property
    def realm(self) -> str:
        return str(self.params["SS_SIP_AUTHENTICATION_REALM"]) or self.default_realm

    # -- entry points ----------------------------------------------------------------------

    def admit(self, request: Request, source: Peer, now: float) -> Outcome:
        by_address = classify_by_address(source, self.gateways)
        if by_address.kind == SourceKind.MAPPING_GATEWAY and by_address.mapping is not None \
                and by_address.mapping.auth_mode == "ip_port":
            return self._pass(by_address)
        if self.registered_user is not None and request.method != "REGISTER":
            phone = self._registered_phone(request, source, now)
            if phone is not None:
                return self._pass(Classification(SourceKind.ACCOUNT, account=phone))
        creds = self._credentials(request)
        if creds is not None:
            account = self._account(creds.username)
            if account is not None:
                return self._authenticate(request, source, account, creds, now)
        if by_address.kind == SourceKind.MAPPING_GATEWAY:
            return self._pass(by_address)
        claimed = self._claimed_user(request)
        account = self._account(claimed) if claimed else None
        if account is not None:
            return self._authenticate(request, source, account, None, now)
        if by_address.kind == SourceKind.ROUTING_GATEWAY:
            return self._pass(by_address)
        if creds is not None and request.method == "REGISTER" and self._reply_unauthorized():
            # Credentials for an account that does not exist: answered like a wrong
            # password, so probing cannot tell existing accounts from others.
            ghost = Account(creds.username, "", "unknown")
            return self._authenticate(request, source, ghost, creds, now)
        return self.unknown(request, source, now)

    def unknown(self, request: Request, source: Peer, now: float) -> Outcome:
        """An unknown source: challenge REGISTER / 403 when On, silence when Off."""
        if not self._reply_unauthorized():
            self.counters.dropped["unknown_source"] += 1
            self._log(source, now, "dropped %s from unknown source %s", request.method, source)
            return Outcome(Action.DROP, reason="unknown source")
        if request.method == "REGISTER":
            claimed = self._claimed_user(request) or "anonymous"
            ghost = Account(claimed, "", "unknown")
            return self._authenticate(request, source, ghost, None, now)
        self.counters.rejected["unknown_source"] += 1
        self._log(source, now, "rejected %s from unknown source %s", request.method, source)
        return Outcome(Action.REJECT, status=403, reason="unknown source")

    # -- digest ----------------------------------------------------------------------------

    def _authenticate(self, request: Request, source: Peer, account: Account,
                      creds: Credentials | None, now: float) -> Outcome:
        params = self.params
        terminal = (account.username, source.host)
        kind = "registration" if request.method == "REGISTER" and account.kind != "gateway" \
            else "authentication"
        if self.suspensions.check(terminal, now) is not None:
            return self._refuse_suspended(request, source, now)
        key = (request.call_id, request.from_.tag or "")
        session = self.sessions.get(key)
        if session is None:
            session = AuthSession(started=now)
            self.sessions.put(key, session)
        if now - session.started > params.integer("SS_SIP_AUTHENTICATION_TIMEOUT"):
            self.sessions.pop(key)
            return self._reject(source, now, "authentication timeout", account.username)
        stale = False
        if creds is not None:
            # An account that does not exist goes through the same checks with a
            # password nobody knows, so its answers cannot be told apart.
            verdict = self.verifier.verify(creds, request.method, self.realm,
                                           account.password or secrets.token_hex(16), now,
                                           request_uri=request.uri)
            if verdict == Verdict.OK and not account.password:
                verdict = Verdict.WRONG
            if verdict == Verdict.OK:
                self.sessions.pop(key)
                self.suspensions.succeed(kind, terminal)
                self.counters.authenticated[account.kind] += 1
                return self._pass(Classification(
                    SourceKind.MAPPING_GATEWAY if account.mapping else SourceKind.ACCOUNT,
                    mapping=account.mapping, account=account))
            if verdict == Verdict.WRONG:
                max_failures, suspend_for = self._failure_limits(kind)
                suspension = self.suspensions.fail(kind, terminal, max_failures, suspend_for,
                                                   now)
                self._log(source, now, "wrong password for %s from %s", account.username,
                          source)
                if suspension is not None:
                    self.sessions.pop(key)
                    self.counters.suspended[kind] += 1
                    log.warning("suspended %s from %s for %d s after %d failures",
                                account.username, source.host, suspend_for,
                                suspension.failures)
                    return self._refuse_suspended(request, source, now)
            stale = verdict == Verdict.STALE
        if session.challenges >= params.integer("SS_SIP_AUTHENTICATION_RETRY"):
            self.sessions.pop(key)
            return self._reject(source, now, "retry limit", account.username)
        session.challenges += 1
        self.counters.challenged[account.kind] += 1
        return self._challenge(stale, now)

    def _challenge(self, stale: bool, now: float) -> Outcome:
        code = self.params.integer("SS_SIP_AUTHENTICATION_CODE")
        header = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
        nonce = self.verifier.minter.mint(self.realm, now)
        algorithms = str(self.params["SS_SIP_AUTHENTICATION_ALGORITHM"]).split("+")
        headers = [(header, challenge_header(self.realm, nonce, a, stale)) for a in algorithms]
        return Outcome(Action.CHALLENGE, status=code, headers=headers, reason="challenge")

    def _failure_limits(self, kind: str) -> tuple[int, int]:
        p = self.params
        if kind == "registration":
            return p.integer("SS_ENDPOINT_REGISTER_RETRY"), p.integer(
                "SS_ENDPOINT_REGISTER_SUSPEND")
        return p.integer("SS_AUTHENTICATION_MAX_RETRY"), p.integer(
            "SS_AUTHENTICATION_FAILED_SUSPEND")

    # -- helpers ---------------------------------------------------------------------------

    def _account(self, username: str) -> Account | None:
        gw = self.gateways.mapping_by_user.get(username)
        if gw is not None and gw.enabled and gw.password:
            return Account(username, gw.password, "gateway", gw)
        if self.phone_accounts is not None:
            return self.phone_accounts(username)
        return None

    def _registered_phone(self, request: Request, source: Peer, now: float) -> Account | None:
        assert self.registered_user is not None
        user = self.registered_user(source, now)
        if user is None or self.phone_accounts is None:
            return None
        try:
            claimed = request.from_.uri.user
        except SipParseError:
            return None
        return self.phone_accounts(user) if claimed == user else None

    @staticmethod
    def _claimed_user(request: Request) -> str | None:
        try:
            addr = request.to if request.method == "REGISTER" else request.from_
        except SipParseError:
            return None
        return addr.uri.user

    @staticmethod
    def _credentials(request: Request) -> Credentials | None:
        for header in ("Authorization", "Proxy-Authorization"):
            for value in request.get_all(header):
                try:
                    return Credentials.parse(value)
                except SipParseError:
                    continue
        return None

    def _reply_unauthorized(self) -> bool:
        return self.params.flag("SS_REPLY_UNAUTHORIZED")

    def _pass(self, classification: Classification) -> Outcome:
        return Outcome(Action.PASS, source=classification)

    def _reject(self, source: Peer, now: float, reason: str, username: str) -> Outcome:
        self.counters.rejected[reason.replace(" ", "_")] += 1
        self._log(source, now, "rejected %s from %s: %s", username, source, reason)
        return Outcome(Action.REJECT, status=403, reason=reason)

    def _refuse_suspended(self, request: Request, source: Peer, now: float) -> Outcome:
        if not self._reply_unauthorized():
            self.counters.dropped["suspended"] += 1
            return Outcome(Action.DROP, reason="suspended")
        self.counters.rejected["suspended"] += 1
        return Outcome(Action.REJECT, status=403, reason="suspended")

    def _log(self, source: Peer, now: float, message: str, *args: object) -> None:
        interval = self.params.integer("SS_SECURITY_LOG_INTERVAL")
        if self.throttle.allow(source.host, interval, now):
            log.info(message, *args)

    def snapshot(self, now: float) -> dict[str, object]:
        return {
            **self.counters.snapshot(),
            "suspended_now": len(self.suspensions.active(now)),
            "auth_sessions": len(self.sessions),
            "auth_sessions_evicted": self.sessions.evictions,
            "failure_entries": len(self.suspensions.failures),
            "nonce_counts": len(self.verifier.counts),
            "log_lines_suppressed": self.throttle.suppressed,
        }
