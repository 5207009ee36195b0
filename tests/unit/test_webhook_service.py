"""The webhooks' delivery thread against a receiver on loopback: signed POSTs of call and
registration events, hooks set only while a webhook wants them, retries with the same
delivery id, and what is left at a stop written to the dead-letter file."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support import wait_until

from b2bua.calls.cdr import CdrRecord
from b2bua.config.live import Params
from b2bua.config.registry import defaults
from b2bua.registrar.bindings import Binding, BindingStore
from b2bua.sip.peer import Peer
from b2bua.webhooks.outbox import Receiver
from b2bua.webhooks.service import WebhookService

SECRET = "a-secret-of-32-characters-length"


class Hooks(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/events?x=1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Hooks

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append((dict(self.headers), body))
        status = 204
        if self.server.fail_next:
            self.server.fail_next -= 1
            status = 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Hooks]:
    server = Hooks()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class _Log:
    def save(self, binding: Binding) -> None: ...

    def remove(self, username: str, contact: str) -> None: ...

    def expire(self, now: float) -> None: ...


def params(**values: Any) -> Params:
    p = Params()
    p.replace({**defaults(), **values})
    return p


def verified(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    fields = dict(part.split("=", 1) for part in headers["X-Softswitch-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    event: dict[str, Any] = json.loads(body)
    assert headers["X-Softswitch-Event"] == event["type"]
    return event


def record(call_id: str = "c1@x") -> CdrRecord:
    return CdrRecord(call_id_in=call_id, call_id_out="o1@y", caller="1001", callee="200",
                     source="192.0.2.1:5060", mapping_gateway_id=1, mapping_gateway="in",
                     routing_gateway_id=2, routing_gateway="out", start_at=100.0,
                     ringing_at=101.0, answer_at=102.0, end_at=110.0, duration=8.0,
                     final_code=200, final_reason="OK", hangup_by="caller",
                     termination_reason="caller BYE", cdr_uuid="u-1", media='{"relayed":false}')


def test_call_and_registration_events_signed_and_in_order(
        tmp_path: Path, receiver: Hooks) -> None:
    service = WebhookService(params(), tmp_path / "dead.jsonl", node="n1")
    cdrs: Any = SimpleNamespace(events=None)
    bindings = BindingStore(_Log())
    service.attach(cdrs, bindings)
    service.start()
    try:
        service.configure([Receiver(7, "calls", receiver.url, SECRET,
                                    frozenset({"call.start", "call.answer", "call.end"}))])
        assert cdrs.events is service and bindings.on_change is None
        call: Any = SimpleNamespace(
            invite=SimpleNamespace(call_id="c1@x"), cdr_uuid="u-1", caller="1001",
            callee="200", start_at=100.0, outbound=SimpleNamespace(call_id="o1@y"),
            gateway=SimpleNamespace(id=2, name="out"))
        service.call_started(record())
        service.call_answered(call, 102.0)
        service.call_ended(record(), [{"seq": 1, "routing_gateway_id": 2, "final_code": 200,
                                       "outcome": "answered", "extra": "not stored"}])
        assert wait_until(lambda: len(receiver.got) == 3, timeout=5)
        events = [verified(h, b) for h, b in receiver.got]
        assert [e["type"] for e in events] == ["call.start", "call.answer", "call.end"]
        assert all(e["node"] == "n1" and e["call"]["call_id_in"] == "c1@x" for e in events)
        assert events[1]["call"]["routing_gateway"] == "out"
        assert events[1]["at"] == 102.0
        end = events[2]["call"]
        assert (end["final_code"], end["duration"], end["media"]) == (200, 8.0,
                                                                      '{"relayed":false}')
        assert end["attempts"][0]["outcome"] == "answered" and \
            "extra" not in end["attempts"][0]
        assert len({h["X-Softswitch-Delivery"] for h, _ in receiver.got}) == 3
        (state,) = service.snapshot()
        assert (state["delivered"], state["queued"]) == (3, 0)

        # Registrations only once a webhook takes them; a refresh is no change.
        service.configure([Receiver(8, "all", receiver.url, SECRET)])
        assert bindings.on_change is not None
        phone = Binding("1001", "sip:1001@192.0.2.7:5060", Peer("udp", "192.0.2.7", 5060),
                        False, 1000.0, 900.0, "sipp", "reg-1")
        bindings.put(phone)
        bindings.put(dataclasses.replace(phone, registered_at=950.0, expires_at=1050.0))
        bindings.remove("1001", phone.contact)
        assert wait_until(lambda: len(receiver.got) == 5, timeout=5)
        regs = [verified(h, b) for h, b in receiver.got[3:]]
        assert [(r["type"], r["registration"]["event"]) for r in regs] == [
            ("registration", "registered"), ("registration", "unregistered")]
        assert regs[0]["registration"]["contact"] == phone.contact
        assert receiver.got[3][0]["X-Softswitch-Delivery"] != \
            receiver.got[4][0]["X-Softswitch-Delivery"]

        service.configure([])
        assert cdrs.events is None and bindings.on_change is None
    finally:
        service.close(0.5)


def test_failures_are_retried_with_the_same_delivery_id(
        tmp_path: Path, receiver: Hooks) -> None:
    receiver.fail_next = 2
    service = WebhookService(params(), tmp_path / "dead.jsonl")
    service.attach(SimpleNamespace(events=None), None)  # type: ignore[arg-type]
    service.start()
    try:
        service.configure([Receiver(1, "crm", receiver.url, SECRET)])
        service.call_started(record())
        assert wait_until(lambda: len(receiver.got) == 3, timeout=8)
        assert len({h["X-Softswitch-Delivery"] for h, _ in receiver.got}) == 1
        assert wait_until(lambda: any(s["delivered"] for s in service.snapshot()), timeout=2)
        (state,) = service.snapshot()
        assert (state["failed_attempts"], state["last_status"]) == (2, 204)
        assert state["last_error"].startswith("HTTP 500")
    finally:
        service.close(0.5)


def test_what_is_left_at_a_stop_goes_to_the_dead_letter_file(tmp_path: Path) -> None:
    dead = tmp_path / "var" / "webhooks-dead.jsonl"
    service = WebhookService(params(), dead)
    service.attach(SimpleNamespace(events=None), None)  # type: ignore[arg-type]
    service.start()
    service.configure([Receiver(1, "down", "http://127.0.0.1:9/", SECRET)])  # discard port
    service.call_started(record("c1@x"))
    service.call_started(record("c2@x"))
    assert wait_until(lambda: any(s["failed_attempts"] for s in service.snapshot()), timeout=5)
    service.close(0.2)
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert sorted(line["event"]["call"]["call_id_in"] for line in lines) == ["c1@x", "c2@x"]
    assert {line["reason"] for line in lines} == {"shutdown"}
    assert all(line["webhook"] == "down" and line["type"] == "call.start" for line in lines)
