"""The policy stage: who is this request from, and may it hear anything back?

Runs on every new out-of-dialog request before anything is sent, including before
any ``100 Trying``, and returns one of: pass (with who it is), challenge, reject
(with a code) or drop (not one byte back). Classification, most specific first
(docs/security.md):

1. a mapping gateway in ``ip_port`` mode whose IP and port both match the source;
   then a live registration at the exact address (IP, port, transport) of a request
   (not REGISTER): a phone's, when the From user is that phone; a password-mode mapping
   gateway's, whatever the From user (it carries the caller's number): challenged with
   the gateway's credentials;
2. from a known address (an ``ip`` mapping gateway's or a routing gateway's), digest
   credentials for an account (password-mode gateway or phone) are checked;
3. a mapping gateway in ``ip`` mode whose IP list holds the source IP;
4. a routing gateway whose host is the source IP (anything but an INVITE);
5. everything else gets one digest round that is the same whoever the request names
   (an account that does not exist is one with a password nobody knows): always when
   ``SS_REPLY_UNAUTHORIZED`` is On; when Off only a REGISTER, an INVITE from a
   vendor's address, or a request from a live registration's address; the rest hears
   nothing at all.

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
    Suspension,
    SuspensionTable,
)
from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Request
from b2bua.sip.peer import Peer

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


@dataclass(frozen=True, slots=True)
class Registered:
    """Who holds the live binding registered directly (no Path) from a source address."""

    username: str
    mapping_gateway_id: int | None = None  # None: a phone


UNKNOWN = Classification(SourceKind.UNKNOWN)
AccountLookup = Callable[[str], Account | None]
RegisteredLookup = Callable[[Peer, float], Registered | None]
AnyAccount = Callable[[], bool]


def registrable(gw: MappingGateway) -> bool:
    """Whether a mapping gateway may register: enabled, in password mode."""
    return gw.enabled and gw.auth_mode == "password" and bool(gw.username) \
        and bool(gw.password)


def registered_gateway(gateways: GatewayDirectory, gateway_id: int,
                       username: str) -> MappingGateway | None:
    """The gateway a binding was registered for, while its registration holds: it still
    exists, may register, under the username it registered with. Otherwise the binding
    is stale (the next config reload removes it) and identifies nothing."""
    gw = gateways.mapping.get(gateway_id)
    if gw is None or not registrable(gw) or gw.username != username:
        return None
    return gw


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
                 registered_user: RegisteredLookup | None = None,
                 any_phone: AnyAccount | None = None) -> None:
        self.params = params
        self.gateways = gateways
        self.default_realm = default_realm
        self.phone_accounts = phone_accounts
        self.registered_user = registered_user
        self.any_phone = any_phone
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
        registered = None
        creds = self._credentials(request)
        if self.registered_user is not None and request.method != "REGISTER":
            registered = self.registered_user(source, now)
            if registered is not None and registered.mapping_gateway_id is not None:
                gateway = self._registered_gateway(registered)
                if gateway is None:
                    registered = None  # its gateway changed; the reload removes it
                elif creds is None or creds.username == gateway.username:
                    # The registered address is the trunk's: its From user is the
                    # caller's number, so the address names the account to check.
                    return self._authenticate(request, source, gateway, creds, now)
            else:
                phone = self._registered_phone(request, registered)
                if phone is not None:
                    return self._pass(Classification(SourceKind.ACCOUNT, account=phone))
        if by_address.kind != SourceKind.UNKNOWN:
            # A known address: credentials for an account come first (a password trunk
            # sharing an IP gateway's address); else the address decides.
            account = self._account(creds.username) if creds is not None else None
            if creds is not None and account is not None:
                return self._authenticate(request, source, account, creds, now)
            if by_address.kind == SourceKind.MAPPING_GATEWAY or request.method != "INVITE":
                return self._pass(by_address)
        # From here the answer must not depend on whether the named user exists.
        if not self._answers(request, by_address, registered):
            return self._drop_unknown(request, source, now)
        return self._challenge_any(request, source, creds, now)

    def unknown(self, request: Request, source: Peer, now: float) -> Outcome:
        """A stray in-dialog request or CANCEL from an unknown source: 403 when On (a
        REGISTER is challenged as any other), nothing when Off."""
        if not self._reply_unauthorized():
            return self._drop_unknown(request, source, now)
        if request.method == "REGISTER":
            return self._challenge_any(request, source, self._credentials(request), now)
        self.counters.rejected["unknown_source"] += 1
        self._log(source, now, "rejected %s from unknown source %s", request.method, source)
        return Outcome(Action.REJECT, status=403, reason="unknown source")

    def _answers(self, request: Request, by_address: Classification,
                 registered: Registered | None) -> bool:
        """May a source not identified by its address hear a challenge? On: always. Off:
        a REGISTER when any account may register at all (phones and registering trunks
        must get in from anywhere), an INVITE from a vendor's address, or a request from
        the address of a live registration. Never decided by the user a request names
        (docs/security.md)."""
        if self._reply_unauthorized() or by_address.kind != SourceKind.UNKNOWN \
                or registered is not None:
            return True
        return request.method == "REGISTER" and self._accounts_exist()

    def _accounts_exist(self) -> bool:
        """Any enabled account with a password: what Off reveals to a REGISTER is that
        this switch has accounts, never which."""
        if self.any_phone is not None and self.any_phone():
            return True
        return any(gw.enabled and gw.password for gw in self.gateways.mapping_by_user.values())

    def _drop_unknown(self, request: Request, source: Peer, now: float) -> Outcome:
        self.counters.dropped["unknown_source"] += 1
        self._log(source, now, "dropped %s from unknown source %s", request.method, source)
        return Outcome(Action.DROP, reason="unknown source")

    def _challenge_any(self, request: Request, source: Peer, creds: Credentials | None,
                       now: float) -> Outcome:
        """The same digest round whoever is named: a user that does not exist is an
        account with a password nobody knows (like Asterisk's ``alwaysauthreject``)."""
        username = creds.username if creds is not None else self._claimed_user(request)
        username = username or "anonymous"
        account = self._account(username) or Account(username, "", "unknown")
        return self._authenticate(request, source, account, creds, now)

    # -- digest ----------------------------------------------------------------------------

    def _authenticate(self, request: Request, source: Peer, account: Account,
                      creds: Credentials | None, now: float) -> Outcome:
        params = self.params
        terminal = (account.username, source.host)
        # Every REGISTER counts against the registration limits, whoever it names, so
        # the count before a suspension tells no kind of account from another.
        kind = "registration" if request.method == "REGISTER" else "authentication"
        suspended = self.suspensions.check(terminal, now)
        if suspended is not None:
            return self._refuse_suspended(suspended)
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
                    return self._refuse_suspended(suspension)
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

    def _registered_phone(self, request: Request,
                          registered: Registered | None) -> Account | None:
        if registered is None or self.phone_accounts is None:
            return None
        try:
            claimed = request.from_.uri.user
        except SipParseError:
            return None
        user = registered.username
        return self.phone_accounts(user) if claimed == user else None

    def _registered_gateway(self, registered: Registered) -> Account | None:
        """The gateway of a gateway's binding while it may still register: enabled, in
        password mode, under the username it registered with."""
        gw = registered_gateway(self.gateways, registered.mapping_gateway_id or 0,
                                registered.username)
        if gw is None or gw.password is None:
            return None
        return Account(registered.username, gw.password, "gateway", gw)

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

    def _refuse_suspended(self, suspension: Suspension) -> Outcome:
        """Counted, not answered: at most one 403 per terminal per suspension (when
        SS_REPLY_UNAUTHORIZED is On), so a guesser that keeps going reflects nothing."""
        if self._reply_unauthorized() and self.suspensions.tell_once(suspension):
            self.counters.rejected["suspended"] += 1
            return Outcome(Action.REJECT, status=403, reason="suspended")
        self.counters.dropped["suspended"] += 1
        return Outcome(Action.DROP, reason="suspended")

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
