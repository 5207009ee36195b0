"""Call events as signed webhooks with a real softswitch, sipp calls and a receiver the
test runs on loopback: start, answer and end of each call in order (the end with its
CDR), a phone's registration and unregistration, an event filter, and a receiver down for
12 s while calls go on: every event arrives once it is back, in order per call, and
``GET /api/v1/webhooks`` shows the delivery state move."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sippctl import VENDOR_IP
from support import Softswitch, free_port, wait_until
from test_basic_calls import cdrs, configure, run_pair
from test_registrar import PHONE_IP, register

SECRET = "webhook-test-secret-0123456789abcdef"
DOWN_SECONDS = 12.0  # several failed tries each (backoff capped at 2 s), calls all along


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, owner: Receiver) -> None:
        self.owner = owner
        self.open: set[socket.socket] = set()
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.open.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept-alive connections, as a real receiver has
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.owner.took(self.path, dict(self.headers), body)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


class Receiver:
    """An HTTP receiver on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def took(self, path: str, headers: dict[str, str], body: bytes) -> None:
        fields = dict(p.split("=", 1) for p in headers["X-Softswitch-Signature"].split(","))
        mac = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
        assert hmac.compare_digest(fields["v1"], mac.hexdigest()), "bad signature"
        assert abs(int(fields["t"]) - time.time()) < 60
        event = json.loads(body)
        assert headers["X-Softswitch-Event"] == event["type"]
        with self._lock:
            self.got.append((path, headers, event))

    def start(self) -> None:
        self._server = _Server(self.port, self)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Refuse connections from now on, kept-alive ones closed too."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for conn in list(server.open):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def events(self, path: str) -> list[dict[str, Any]]:
        """What arrived at ``path``, each delivery once, in arrival order."""
        seen: set[str] = set()
        out = []
        with self._lock:
            got = list(self.got)
        for where, headers, event in got:
            delivery = headers["X-Softswitch-Delivery"]
            if where == path and delivery not in seen:
                seen.add(delivery)
                out.append(event)
        return out


def delivery(switch: Softswitch, name: str) -> dict[str, Any] | None:
    (item,) = [w for w in switch.api.get("/api/v1/webhooks")["items"] if w["name"] == name]
    assert "secret" not in item
    state: dict[str, Any] | None = item["delivery"]
    return state


def by_call(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["type"].startswith("call."):
            calls[event["call"]["call_id_in"]].append(event)
    return calls


def check_calls(events: list[dict[str, Any]], stored: list[dict[str, Any]]) -> None:
    """Every stored CDR's call: start, answer, end, in this order; the end is the CDR."""
    calls = by_call(events)
    assert len(calls) == len(stored)
    for cdr in stored:
        got = calls[cdr["call_id_in"]]
        assert [e["type"] for e in got] == ["call.start", "call.answer", "call.end"], got
        start, answer, end = (e["call"] for e in got)
        assert start["cdr_uuid"] == answer["cdr_uuid"] == end["cdr_uuid"] == cdr["cdr_uuid"]
        assert answer["answer_at"] == cdr["answer_at"] and answer["routing_gateway"] == "vendor"
        assert {k: end[k] for k in cdr if k != "id"} == {k: v for k, v in cdr.items()
                                                        if k != "id"}
        assert [a["outcome"] for a in end["attempts"]] == ["answered"]
        assert len({e["id"] for e in got}) == 3


def test_webhooks_deliver_every_event_in_order_through_a_receiver_outage(
        tmp_path: Path, softswitch: Softswitch) -> None:
    api = softswitch.api
    receiver = Receiver()
    receiver.start()
    try:
        # A receiver that comes back is tried again within 2 s.
        api.put("/api/v1/parameters/SS_WEBHOOK_BACKOFF_MAX", {"value": 2})
        api.post("/api/v1/webhooks", {"name": "crm", "url": receiver.url("/crm"),
                                      "secret": SECRET})
        api.post("/api/v1/webhooks", {"name": "billing", "url": receiver.url("/billing"),
                                      "secret": SECRET, "events": ["call.end"]})
        api.post("/api/v1/phones", {"username": "1001", "password": "pw-1001"})
        vendor_port = free_port(VENDOR_IP)
        configure(softswitch, vendor_port)
        assert wait_until(lambda: delivery(softswitch, "billing") is not None, timeout=2)

        # Calls, and a phone registering and unregistering, with the receiver up.
        run_pair(tmp_path, softswitch, "uac_call.xml", "uas_answer.xml", uac_hold=200,
                 calls=4, rate=10, vendor_port=vendor_port)
        phone_port = free_port(PHONE_IP)
        assert register(tmp_path, softswitch, "1001", port=phone_port, expires=300) == 0
        assert register(tmp_path, softswitch, "1001", port=phone_port, expires=0) == 0
        stored = cdrs(softswitch, 4)
        assert wait_until(lambda: len(receiver.events("/crm")) == 4 * 3 + 2, timeout=5), (
            sorted(Counter(e["type"] for e in receiver.events("/crm")).items()))
        check_calls(receiver.events("/crm"), stored)
        registrations = [e for e in receiver.events("/crm") if e["type"] == "registration"]
        assert [(r["registration"]["username"], r["registration"]["event"])
                for r in registrations] == [("1001", "registered"), ("1001", "unregistered")]
        assert wait_until(lambda: len(receiver.events("/billing")) == 4, timeout=5)
        assert {e["type"] for e in receiver.events("/billing")} == {"call.end"}
        state = delivery(softswitch, "crm")
        assert state is not None and (state["delivered"], state["queued"]) == (14, 0)

        # The receiver down while calls go on: the events wait.
        receiver.stop()
        down_at = time.monotonic()
        run_pair(tmp_path, softswitch, "uac_call.xml", "uas_answer.xml", uac_hold=200,
                 calls=12, rate=2, vendor_port=vendor_port)
        waiting = wait_until(lambda: (s := delivery(softswitch, "crm")) is not None and
                             s["queued"] == 12 * 3 and s["failed_attempts"] > 0 and s, 5)
        assert waiting, delivery(softswitch, "crm")
        assert waiting["last_status"] is None and waiting["last_error"]
        assert waiting["oldest_queued_age"] > 0 and waiting["dead_lettered"] == 0
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
        during = delivery(softswitch, "crm")
        assert during is not None and during["failed_attempts"] > waiting["failed_attempts"]
        receiver.start()

        # Back: everything arrives, in order per call, nothing given up.
        assert wait_until(lambda: (s := delivery(softswitch, "crm")) is not None and
                          s["queued"] == 0, timeout=10), delivery(softswitch, "crm")
        stored = cdrs(softswitch, 16)
        check_calls(receiver.events("/crm"), stored)
        assert wait_until(lambda: len(receiver.events("/billing")) == 16, timeout=5)
        after = delivery(softswitch, "crm")
        assert after is not None and after["delivered"] == 16 * 3 + 2
        assert after["dead_lettered"] == 0 and after["last_status"] == 204
        assert not (softswitch.workdir / "var" / "webhooks-dead.jsonl").exists()
    finally:
        receiver.stop()
