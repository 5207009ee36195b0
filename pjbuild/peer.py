"""Command-line SIP user agent built on pjsua2, for integration tests.

Every event is printed on stdout as one JSON object per line (flushed), with
``"event"`` naming it and ``"t"`` the seconds since start. pjsua logs go to
stderr. Modes:

  call      place one call, hang up --hold seconds after it is confirmed
  answer    wait for incoming calls, ring, then answer or reject them
  register  register to a registrar, stay registered, optionally answer

Exit status: 0 when the mode's goal was reached, 2 otherwise (timeout,
rejected call, failed registration), 1 when pjsua2 is missing.

Events:
  {"event": "ready", "local": "127.0.0.1:5062", "transport": "udp", "codecs": ["PCMU/8000/1", ...]}
  {"event": "incoming", "call": 1, "from": ..., "to": ..., "ruri": ..., "call_id": ..., "src": ...}
  {"event": "state", "call": 1, "state": "CONFIRMED", "code": 200, "reason": "OK", "call_id": ...}
  {"event": "media", "call": 1, "status": "active"}
  {"event": "rtp", "call": 1, "tx_packets": 150, "rx_packets": 149}
  {"event": "reg", "code": 200, "reason": "OK", "expires": 60, "active": true}
  {"event": "error", "message": ...}
  {"event": "exit", "code": 0}
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pjcommon import (
    EventWriter,
    bind_media,
    create_endpoint,
    create_transport,
    destroy_endpoint,
    load_pjsua2,
    set_codecs,
)

EXIT_OK = 0
EXIT_MISSING = 1
EXIT_FAILED = 2

POLL_MS = 20
RTP_POLL_INTERVAL = 0.5
HANGUP_GRACE = 2.0
UNREGISTER_GRACE = 3.0

try:
    pj: Any = load_pjsua2()
except ImportError as _import_error:
    print(f"pjsua2 cannot be imported by {sys.executable}: {_import_error}", file=sys.stderr)
    print("Install it with: bash pjbuild/install.sh", file=sys.stderr)
    sys.exit(EXIT_MISSING)

if TYPE_CHECKING:

    class _PjObject:
        """Typing stand-in for the pjsua2 classes, which carry no types."""

        def __init__(self, *args: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...

    CallBase = _PjObject
    AccountBase = _PjObject
else:
    CallBase = pj.Call
    AccountBase = pj.Account

STATE_NAMES: dict[int, str] = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}


def split_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def with_transport(uri: str, transport: str) -> str:
    if transport == "udp" or "transport=" in uri.lower():
        return uri
    return f"{uri};transport={transport}"


class PeerCall(CallBase):
    """One call leg; callbacks only record state, the main loop acts on it."""

    def __init__(self, peer: Peer, acc: Any, seq: int, call_id: int) -> None:
        super().__init__(acc, call_id)
        self.peer = peer
        self.seq = seq
        self.confirmed = False
        self.disconnected = False
        self.answer_at: float | None = None
        self.hangup_at: float | None = None
        self.hangup_sent = False
        self.next_rtp_poll = 0.0
        self.rtp: dict[str, int] | None = None

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        state = int(info.state)
        code = int(info.lastStatusCode)
        self.peer.out.emit(
            "state",
            call=self.seq,
            state=STATE_NAMES.get(state, str(info.stateText)),
            code=code,
            reason=str(info.lastReason),
            call_id=str(info.callIdString),
        )
        if state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
            self.peer.on_confirmed(self)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            if self.rtp is not None:
                self.peer.out.emit("rtp", call=self.seq, **self.rtp)

    def onCallMediaState(self, prm: Any) -> None:
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                # Feed the null capture device into the call and play the
                # call into the null playback device, so the stream sends
                # and receives RTP continuously.
                audio = self.getAudioMedia(index)
                devices = self.peer.ep.audDevManager()
                devices.getCaptureDevMedia().startTransmit(audio)
                audio.startTransmit(devices.getPlaybackDevMedia())
                status = "active"
            elif media.status == pj.PJSUA_CALL_MEDIA_LOCAL_HOLD:
                status = "local_hold"
            elif media.status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD:
                status = "remote_hold"
            elif media.status == pj.PJSUA_CALL_MEDIA_ERROR:
                status = "error"
            else:
                status = "none"
            self.peer.out.emit("media", call=self.seq, status=status)

    def onStreamDestroyed(self, prm: Any) -> None:
        # Called just before the audio stream goes away, while its counters
        # can still be read.
        self.read_rtp(int(prm.streamIdx))

    def poll_rtp(self, now: float) -> None:
        """Refresh the RTP counters now and then while the call is up."""
        if not self.confirmed or self.disconnected or now < self.next_rtp_poll:
            return
        self.next_rtp_poll = now + RTP_POLL_INTERVAL
        self.read_rtp(0)

    def read_rtp(self, media_index: int) -> None:
        try:
            stat = self.getStreamStat(media_index)
        except pj.Error:
            return
        self.rtp = {
            "tx_packets": int(stat.rtcp.txStat.pkt),
            "rx_packets": int(stat.rtcp.rxStat.pkt),
        }


class PeerAccount(AccountBase):
    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer

    def onIncomingCall(self, prm: Any) -> None:
        self.peer.on_incoming(self, prm)

    def onRegState(self, prm: Any) -> None:
        self.peer.on_reg_state(self, prm)


class Peer:
    def __init__(self, args: argparse.Namespace, out: EventWriter) -> None:
        self.args = args
        self.out = out
        self.ep: Any = None
        self.acc: PeerAccount | None = None
        self.calls: list[PeerCall] = []
        self.ended: list[PeerCall] = []
        self.seq = 0
        self.stop_requested = False
        self.registered = False
        self.reg_failed = False
        self.reg_active = False
        self.hold_until: float | None = None
        self.ended_ok = False
        # Calls that had ended on their own when the main loop stopped;
        # calls torn down at timeout or on a signal do not count.
        self.ended_in_run = 0
        self.answering = args.mode == "answer" or bool(getattr(args, "answer", False))
        self.expected_calls: int = getattr(args, "calls", None) or 0

    # -- callbacks (run inside libHandleEvents in the main thread) --------
    # A Python exception must not escape a pjsua2 callback (it would unwind
    # through the C library), so pjsua2 errors are reported as events here.

    def on_incoming(self, acc: Any, prm: Any) -> None:
        self.seq += 1
        call = PeerCall(self, acc, self.seq, int(prm.callId))
        self.calls.append(call)
        info = call.getInfo()
        message = str(prm.rdata.wholeMsg)
        start_line = message.split("\r\n", 1)[0].split(" ")
        ruri = start_line[1] if len(start_line) >= 3 else ""
        fields: dict[str, Any] = {
            "call": self.seq,
            "from": str(info.remoteUri),
            "to": str(info.localUri),
            "ruri": ruri,
            "call_id": str(info.callIdString),
            "src": str(prm.rdata.srcAddress),
        }
        if getattr(self.args, "show_invite", False):
            fields["invite"] = message
        self.out.emit("incoming", **fields)
        if not self.answering:
            call.hangup_at = time.monotonic()
            return
        ringing = pj.CallOpParam()
        ringing.statusCode = 180
        try:
            call.answer(ringing)
        except pj.Error as exc:
            self.out.emit("error", call=call.seq, message=str(exc.info()))
        call.answer_at = time.monotonic() + self.args.ring

    def on_confirmed(self, call: PeerCall) -> None:
        hold: float | None = self.args.hold if self.args.mode == "call" else self.args.hangup_after
        if hold is not None:
            call.hangup_at = time.monotonic() + hold

    def on_reg_state(self, acc: Any, prm: Any) -> None:
        code = int(prm.code)
        expires = int(prm.expiration)
        active = bool(acc.getInfo().regIsActive)
        self.out.emit("reg", code=code, reason=str(prm.reason), expires=expires, active=active)
        self.reg_active = active
        if 200 <= code < 300:
            if expires > 0 and not self.registered:
                self.registered = True
                self.hold_until = time.monotonic() + self.args.hold
        elif not self.registered:
            # Final failure (pjsua already answered any digest challenge),
            # or code 0 for a transport error.
            self.reg_failed = True

    # -- set-up -----------------------------------------------------------

    def start(self) -> None:
        args = self.args
        host, port = args.local
        self.ep = create_endpoint(pj)
        codecs = set_codecs(self.ep, args.codecs)
        tid, local = create_transport(pj, self.ep, args.transport, host, port)
        self.ep.libStart()
        acc_cfg = pj.AccountConfig()
        acc_cfg.sipConfig.transportId = tid
        bind_media(acc_cfg, host)
        if args.no_nat_rewrite:
            # Behave like a plain phone behind NAT: keep the private address in Contact,
            # Via and SDP instead of learning the public one from received/rport.
            acc_cfg.natConfig.contactRewriteUse = 0
            acc_cfg.natConfig.viaRewriteUse = 0
            acc_cfg.natConfig.sdpNatRewriteUse = 0
        if args.mode == "register":
            registrar = with_transport(args.registrar, args.transport)
            domain = args.registrar.split(":", 1)[1].split(";", 1)[0]
            acc_cfg.idUri = f"sip:{args.username}@{domain}"
            acc_cfg.regConfig.registrarUri = registrar
            acc_cfg.regConfig.timeoutSec = args.expires
            acc_cfg.regConfig.retryIntervalSec = 0
            acc_cfg.regConfig.registerOnAdd = True
            if args.proxy:
                # An outbound proxy: every request, REGISTER included, gets it as Route.
                acc_cfg.sipConfig.proxies.append(with_transport(args.proxy, args.transport))
        else:
            user = args.caller or args.username or "peer"
            acc_cfg.idUri = f"sip:{user}@{local}"
        if args.username:
            acc_cfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", args.realm, args.username, 0, args.password or "")
            )
        self.out.emit("ready", local=local, transport=args.transport, codecs=codecs)
        acc = PeerAccount(self)
        acc.create(acc_cfg)
        self.acc = acc
        if args.mode == "call":
            self.seq += 1
            call = PeerCall(self, acc, self.seq, pj.PJSUA_INVALID_ID)
            try:
                call.makeCall(with_transport(args.target, args.transport), pj.CallOpParam(True))
            except pj.Error:
                # No call slot was taken: there is nothing to hang up.
                call.disconnected = True
                self.ended.append(call)
                raise
            self.calls.append(call)

    # -- main loop --------------------------------------------------------

    def finished(self, now: float) -> bool:
        mode = self.args.mode
        if mode == "call":
            return bool(self.ended) or not self.calls
        if mode == "answer":
            return len(self.ended) >= self.expected_calls
        if self.reg_failed:
            return True
        if self.expected_calls and len(self.ended) >= self.expected_calls:
            return True
        return self.hold_until is not None and now >= self.hold_until

    def act(self, call: PeerCall, now: float) -> None:
        if call.answer_at is not None and now >= call.answer_at:
            call.answer_at = None
            final = pj.CallOpParam()
            final.statusCode = self.args.code
            try:
                if 200 <= self.args.code < 300:
                    call.answer(final)
                else:
                    call.hangup_sent = True
                    call.hangup(final)
            except pj.Error as exc:
                self.out.emit("error", call=call.seq, message=str(exc.info()))
        if call.hangup_at is not None and now >= call.hangup_at and not call.hangup_sent:
            call.hangup_at = None
            self.hangup(call)
        call.poll_rtp(now)

    def hangup(self, call: PeerCall, code: int = 0) -> None:
        call.hangup_sent = True
        prm = pj.CallOpParam()
        if code:
            prm.statusCode = code
        try:
            call.hangup(prm)
        except pj.Error as exc:
            self.out.emit("error", call=call.seq, message=str(exc.info()))

    def reap(self) -> None:
        for call in [c for c in self.calls if c.disconnected]:
            self.calls.remove(call)
            self.ended.append(call)

    def pump(self, until: float, done: Any) -> None:
        while time.monotonic() < until and not done():
            self.ep.libHandleEvents(POLL_MS)
            self.reap()

    def run(self) -> None:
        deadline = time.monotonic() + self.args.timeout
        while not self.stop_requested:
            self.ep.libHandleEvents(POLL_MS)
            now = time.monotonic()
            self.reap()
            if self.finished(now) or now >= deadline:
                break
            for call in list(self.calls):
                self.act(call, now)
        self.ended_in_run = len(self.ended)

    def shutdown(self) -> None:
        if self.ep is None:
            return
        self.hangup_live_calls()
        self.pump(time.monotonic() + HANGUP_GRACE, lambda: not self.calls)
        if self.acc is not None and self.args.mode == "register" and self.reg_active:
            try:
                self.acc.setRegistration(False)
            except pj.Error as exc:
                self.out.emit("error", message=str(exc.info()))
            else:
                self.pump(time.monotonic() + UNREGISTER_GRACE, lambda: not self.reg_active)
        self.ended_ok = self.succeeded()
        # Every pjsua2 Call object must be gone before libDestroy(): a Call
        # deleted afterwards finds pjsua back in its NULL state, treats its
        # stale id as live and aborts on an assertion in
        # pjsua_call_set_user_data().
        self.calls.clear()
        self.ended.clear()
        if self.acc is not None:
            self.acc.shutdown()
            self.acc = None
        gc.collect()
        destroy_endpoint(pj, self.ep)
        self.ep = None

    def hangup_live_calls(self) -> None:
        for call in list(self.calls):
            if not call.disconnected and not call.hangup_sent:
                # Still ringing: 487 rather than pjsua's default 603.
                self.hangup(call, 487 if call.answer_at is not None else 0)

    def succeeded(self) -> bool:
        mode = self.args.mode
        if mode == "call":
            return any(c.confirmed and c.disconnected for c in self.ended)
        if mode == "answer":
            return self.ended_in_run >= self.expected_calls
        if not self.registered:
            return False
        return self.ended_in_run >= self.expected_calls


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--local", type=split_hostport, default=("127.0.0.1", 0),
                       help="HOST:PORT to bind (port 0: any free port)")
        p.add_argument("--transport", choices=("udp", "tcp"), default="udp")
        p.add_argument("--username", help="digest user name")
        p.add_argument("--password", help="digest password")
        p.add_argument("--realm", default="*", help="digest realm ('*' matches any)")
        p.add_argument("--timeout", type=float, default=30.0,
                       help="bound on the run time in seconds (default 30)")
        p.add_argument("--codecs", default="PCMU,PCMA",
                       help="codecs to offer and accept, in order, or 'all'")
        p.add_argument("--no-nat-rewrite", action="store_true",
                       help="never rewrite Contact/Via/SDP to the address the far end saw")

    def answering(p: argparse.ArgumentParser, calls_default: int | None) -> None:
        p.add_argument("--code", type=int, default=200,
                       help="final response: 2xx answers, >=300 rejects")
        p.add_argument("--ring", type=float, default=0.0,
                       help="seconds between 180 Ringing and the final response")
        p.add_argument("--hangup-after", type=float,
                       help="send BYE this many seconds after confirmation")
        p.add_argument("--calls", type=int, default=calls_default,
                       help="calls to handle before exiting")
        p.add_argument("--show-invite", action="store_true",
                       help="include the raw INVITE in incoming events")

    call = sub.add_parser("call", help="place one call")
    common(call)
    call.add_argument("--target", required=True,
                      help="request URI, e.g. sip:100@127.0.0.1:5060")
    call.add_argument("--caller", help="user part of the From URI (default: --username or peer)")
    call.add_argument("--hold", type=float, default=1.0,
                      help="seconds to stay connected before BYE")

    answer = sub.add_parser("answer", help="answer incoming calls")
    common(answer)
    answer.add_argument("--caller", help="user part of the local URI")
    answering(answer, 1)

    register = sub.add_parser("register", help="register, optionally answer calls")
    common(register)
    register.add_argument("--registrar", required=True,
                          help="registrar URI, e.g. sip:127.0.0.1:5060")
    register.add_argument("--expires", type=int, default=60)
    register.add_argument("--hold", type=float, default=5.0,
                          help="seconds to stay registered")
    register.add_argument("--answer", action="store_true",
                          help="answer incoming calls while registered")
    register.add_argument("--proxy", help="outbound proxy URI, e.g. sip:127.0.0.23:5060;lr")
    answering(register, None)

    args = parser.parse_args(argv)
    if args.mode == "register" and not args.username:
        parser.error("register needs --username")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = EventWriter()
    peer = Peer(args, out)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        peer.stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        peer.start()
        peer.run()
    except pj.Error as exc:
        out.emit("error", message=str(exc.info()))
    except ValueError as exc:
        out.emit("error", message=str(exc))
    finally:
        peer.shutdown()
    code = EXIT_OK if peer.ended_ok else EXIT_FAILED
    out.emit("exit", code=code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
