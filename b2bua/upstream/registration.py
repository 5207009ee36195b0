"""One registration of the softswitch to a vendor's registrar (RFC 3261 section 10.2).

States: ``registering`` -> ``registered`` (refreshed before expiry) or ``failed``
(retried after ``SS_SIP_USER_AGENT_RETRY_DELAY``); ``unregistering`` -> ``unregistered``
on disable or graceful stop. The Call-ID and From tag stay the same across refreshes
and the CSeq increases. Challenges (401 and 407) are answered once per nonce with the
configured credentials; a second challenge for the same request means the registrar
refused them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from b2bua.config.live import Params
from b2bua.routing.dns import Plan, is_ip
from b2bua.security.digest import response_digest
from b2bua.sip.dialog import new_tag
from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import NameAddr, format_auth_params, parse_auth_params
from b2bua.sip.message import Request, Response
from b2bua.sip.peer import Peer
from b2bua.sip.stack import SipStack
from b2bua.sip.transaction import TimerHandle, Timers, new_branch

log = logging.getLogger("b2bua.upstream")

AUTO_REQUEST = 3600  # asked for when SS_SIP_USER_AGENT_EXPIRE is Auto; the registrar decides


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    gateway_id: int
    gateway_name: str
    registrar: Peer  # its host may be a DNS name (then ``locate`` finds the address)
    registrar_host: str  # for the Request-URI and To/From (host[:port] as configured)
    username: str
    auth_username: str
    password: str
    contact_host: str
    expire: int | None  # None: SS_SIP_USER_AGENT_EXPIRE
    registrar_srv: bool = False  # a name without a port: SRV decides it (RFC 3263)


# A registrar given by name: where it is now (RFC 3263: host, port or None, transport).
Locate = Callable[[str, "int | None", str], Awaitable[Plan]]


def refresh_delay(granted: int) -> float:
    """When to refresh a registration granted for ``granted`` seconds."""
    return granted / 2 if granted <= 120 else granted - 60


class UpstreamRegistration:
    def __init__(self, config: RegistrationConfig, stack: SipStack, params: Params,
                 timers: Timers, locate: Locate | None = None) -> None:
        self.config = config
        self.stack = stack
        self.params = params
        self.timers = timers
        self.locate = locate if not is_ip(config.registrar.host) else None
        # Where a registrar given by name was found last: kept while the DNS is down.
        self.located: Peer | None = None
        self._locating: asyncio.Task[None] | None = None
        self.call_id = stack.new_call_id()
        self.tag = new_tag()
        self.cseq = secrets.randbelow(1000) + 1
        self.state = "idle"
        self.last_code: int | None = None
        self.reason = ""
        self.expires_at: float | None = None
        self.retry_at: float | None = None
        self.registered_at: float | None = None
        self.refreshes = 0
        self._timer: TimerHandle | None = None
        self._done: asyncio.Future[None] | None = None
        self._stopped = False

    # -- public ----------------------------------------------------------------------------

    def start(self) -> None:
        self._stopped = False
        self._send(self._requested_expiry(), None)

    def stop(self) -> None:
        """Forget the registration without unregistering (``kill``-like, or Off)."""
        self._stopped = True
        self._cancel_timer()

    async def unregister(self, timeout: float) -> None:
        """REGISTER with Expires: 0, answering a challenge; bounded by ``timeout``."""
        self._stopped = True
        self._cancel_timer()
        if self.state not in ("registered", "registering"):
            return
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self.state = "unregistering"
        self._send(0, None)
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            log.warning("unregister of %s: no final answer within %.1f s",
                        self.config.gateway_name, timeout)

    def snapshot(self) -> dict[str, Any]:
        c = self.config
        return {
            "routing_gateway_id": c.gateway_id,
            "routing_gateway": c.gateway_name,
            "registrar": f"{c.registrar.host}:{c.registrar.port}" if self.located is None
            else f"{c.registrar_host} at {self.located.host}:{self.located.port}",
            "username": c.username,
            "state": self.state,
            "last_code": self.last_code,
            "reason": self.reason,
            "expires_at": self.expires_at,
            "retry_at": self.retry_at,
            "registered_at": self.registered_at,
            "refreshes": self.refreshes,
            "call_id": self.call_id,
        }

    # -- the exchange ----------------------------------------------------------------------

    def _requested_expiry(self) -> int:
        if self.config.expire is not None:
            return self.config.expire
        value = self.params["SS_SIP_USER_AGENT_EXPIRE"]
        return AUTO_REQUEST if value == "Auto" else int(value)

    def _contact(self) -> str:
        c = self.config
        suffix = ";transport=tcp" if c.registrar.transport == "tcp" else ""
        return f"<sip:{c.username}@{c.contact_host}:{self.stack.port}{suffix}>"

    def _send(self, expires: int, authorization: tuple[str, str] | None) -> None:
        if self.locate is None:
            self._send_to(self.config.registrar, expires, authorization)
            return
        self._locating = asyncio.ensure_future(self._send_located(expires, authorization))

    async def _send_located(self, expires: int, authorization: tuple[str, str] | None
                            ) -> None:
        """A registrar by name: its first target by RFC 3263 (a warm cache answers at
        once), or the last place it was found while the DNS gives nothing."""
        assert self.locate is not None
        c = self.config
        plan = await self.locate(c.registrar.host,
                                 None if c.registrar_srv else c.registrar.port,
                                 c.registrar.transport)
        if plan.targets:
            first = plan.targets[0]
            self.located = Peer(c.registrar.transport, first.address, first.port)
        elif self.located is None:
            self._on_failure(0, plan.failure or f"no address for {c.registrar.host}")
            return
        if self._stopped and self.state != "unregistering":
            return
        self._send_to(self.located, expires, authorization)

    def _send_to(self, registrar: Peer, expires: int,
                 authorization: tuple[str, str] | None) -> None:
        c = self.config
        self.cseq += 1
        aor = f"<sip:{c.username}@{c.registrar_host}>"
        headers = [
            ("Via", self.stack.via(c.registrar.transport, new_branch())),
            ("Max-Forwards", "70"),
            ("From", f"{aor};tag={self.tag}"),
            ("To", aor),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", self._contact()),
            ("Expires", str(expires)),
            ("User-Agent", "softswitch"),
        ]
        if authorization is not None:
            headers.append(authorization)
        if self.state not in ("unregistering", "registered"):
            self.state = "registering"
        request = Request("REGISTER", f"sip:{c.registrar_host}", headers)
        self.stack.client_transaction(
            request, registrar,
            lambda r: self._on_response(request, expires, authorization is not None, r),
            lambda: self._on_failure(408, "no response from the registrar"),
        )

    def _on_response(self, request: Request, expires: int, authenticated: bool,
                     response: Response) -> None:
        status = response.status
        if status < 200:
            return
        self.last_code = status
        if status in (401, 407) and not authenticated:
            authorization = self._answer(request, response, status)
            if authorization is not None:
                self._send(expires, authorization)
                return
        if 200 <= status < 300:
            if expires == 0:
                self._finish_unregister(status)
            else:
                self._registered(response, expires)
            return
        reason = "credentials refused" if status in (401, 407) else response.reason
        self._on_failure(status, reason)

    def _answer(self, request: Request, response: Response, status: int
                ) -> tuple[str, str] | None:
        header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        c = self.config
        for value in response.get_all(header):
            try:
                scheme, params = parse_auth_params(value)
            except SipParseError:
                continue
            algorithm = params.get("algorithm", "MD5").upper()
            if scheme.lower() != "digest" or algorithm not in ("MD5", "SHA-256"):
                continue
            realm, nonce = params.get("realm", ""), params.get("nonce", "")
            uri = request.uri
            qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
            qop = "auth" if "auth" in qops else None
            nc, cnonce = ("00000001", secrets.token_hex(8)) if qop else (None, None)
            digest = response_digest(algorithm, c.auth_username, realm, c.password,
                                     "REGISTER", uri, nonce, nc, cnonce, qop)
            fields = {"username": c.auth_username, "realm": realm, "nonce": nonce,
                      "uri": uri, "response": digest, "algorithm": algorithm}
            quoted = {"username", "realm", "nonce", "uri", "response", "cnonce", "opaque"}
            if qop:
                fields |= {"qop": qop, "nc": nc or "", "cnonce": cnonce or ""}
            if "opaque" in params:
                fields["opaque"] = params["opaque"]
            name = "Authorization" if status == 401 else "Proxy-Authorization"
            return name, format_auth_params("Digest", fields, quoted=quoted)
        return None

    def _registered(self, response: Response, asked: int) -> None:
        granted = self._granted(response, asked)
        now = time.time()
        if self.state == "registered":
            self.refreshes += 1
        self.state = "registered"
        self.reason = ""
        self.registered_at = self.registered_at or now
        self.expires_at = now + granted
        self.retry_at = None
        log.info("registered to %s for %d s", self.config.gateway_name, granted)
        self._schedule(refresh_delay(granted), lambda: self._send(self._requested_expiry(),
                                                                    None))

    def _granted(self, response: Response, asked: int) -> int:
        """The expiry the registrar granted: our Contact's ``expires``, else Expires."""
        ours = self._contact().strip("<>")
        for value in response.get_all("Contact"):
            try:
                addr = NameAddr.parse(value)
            except SipParseError:
                continue
            if str(addr.uri) == ours and (addr.params.get("expires") or "").isdigit():
                return max(1, int(addr.params["expires"] or asked))
        header = (response.get("Expires") or "").strip()
        return max(1, int(header)) if header.isdigit() else asked

    def _on_failure(self, code: int, reason: str) -> None:
        if self.state == "unregistering":
            self._finish_unregister(code)
            return
        self.state = "failed"
        self.last_code = code
        self.reason = reason
        self.expires_at = None
        delay = self.params.integer("SS_SIP_USER_AGENT_RETRY_DELAY")
        self.retry_at = time.time() + delay
        log.warning("registration to %s failed (%d %s); retry in %d s",
                    self.config.gateway_name, code, reason, delay)
        self._schedule(delay, self.start)

    def _finish_unregister(self, code: int) -> None:
        self.state = "unregistered"
        self.last_code = code
        self.expires_at = None
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _schedule(self, delay: float, action: Any) -> None:
        self._cancel_timer()
        if self._stopped:
            return
        self._timer = self.timers.call_later(delay, action)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
