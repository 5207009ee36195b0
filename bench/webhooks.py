"""What the webhooks cost (docs/carrier-controls.md, "Call events (webhooks)", Cost).

    .venv/bin/python bench/webhooks.py [--deliveries N]

Prints the event loop's cost to hand over one ``call.end`` event, the delivery thread's
cost to build and encode its body, and then, against a receiver in another process on
loopback (``http.server``, kept-alive connections), the softswitch process's CPU per
delivery (body, signature, request, answer, bookkeeping) and deliveries per second, over
one lane and over four (``SS_WEBHOOK_CONNECTIONS``).
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from b2bua.calls.cdr import CdrRecord
from b2bua.config.live import Params
from b2bua.webhooks import payloads
from b2bua.webhooks.outbox import Receiver
from b2bua.webhooks.service import WebhookService

RECORD = CdrRecord(
    call_id_in="3848276298220188511@203.0.113.5", call_id_out="b2b-1@198.51.100.1",
    caller="1001", callee="15551234567", source="203.0.113.5:5060", mapping_gateway_id=1,
    mapping_gateway="customer", routing_gateway_id=2, routing_gateway="vendor",
    start_at=1.7e9, ringing_at=1.7e9 + 1, answer_at=1.7e9 + 2, end_at=1.7e9 + 62,
    duration=60.0, final_code=200, final_reason="OK", hangup_by="caller",
    termination_reason="caller BYE", cdr_uuid="6f1c0d7e9a2b4c3d8e5f60718293a4b5",
    media='{"relayed":true,"encryption_mode":0,"caller":{"packets":3000,"bytes":516000}}')
ATTEMPTS: list[dict[str, Any]] = [{
    "seq": 1, "routing_gateway_id": 2, "routing_gateway": "vendor",
    "call_id": "b2b-1@198.51.100.1", "start_at": 1.7e9, "first_provisional_at": 1.7e9 + 1,
    "first_provisional": 180, "final_code": 200, "outcome": "answered", "duration": 62.0,
    "target": "udp:198.51.100.1:5060"}]

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
server.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deliveries(port: int, lanes: int, count: int, folder: Path) -> tuple[float, float]:
    """CPU seconds of this process per delivery, and deliveries per second."""
    params = Params()
    params.replace({**params.values, "SS_WEBHOOK_CONNECTIONS": lanes})
    service = WebhookService(params, folder / "dead.jsonl")
    service.attach(SimpleNamespace(events=None), None)  # type: ignore[arg-type]
    service.start()
    service.configure([Receiver(1, "bench", f"http://127.0.0.1:{port}/", "s" * 32)])
    records = [dataclasses.replace(RECORD, call_id_in=f"{n}@bench") for n in range(count)]
    time.sleep(0.2)
    cpu, wall = time.process_time(), time.time()
    for record in records:
        service.call_ended(record, ATTEMPTS)
    while not any(s["delivered"] >= count for s in service.snapshot()):
        time.sleep(0.002)
    cpu, wall = time.process_time() - cpu, time.time() - wall
    service.close(0.5)
    return cpu / count, count / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=4000)
    args = parser.parse_args()

    loop_side = WebhookService(Params(), Path(tempfile.gettempdir()) / "unused.jsonl")
    loop_side._wake.set()  # as when the delivery thread is awake: no wake-up to pay
    number, runs = 100_000, []
    for _ in range(3):
        loop_side._inbox.clear()  # no delivery thread takes them here
        runs.append(timeit.timeit(lambda: loop_side.call_ended(RECORD, ATTEMPTS),
                                  number=number))
    seconds = min(runs)
    print(f"event handed over (event loop): {seconds / number * 1e6:.2f} µs")
    number = 20_000
    seconds = min(timeit.repeat(lambda: payloads.body(
        payloads.new_id(), "call.end", RECORD.end_at, None, "call",
        payloads.call_end(RECORD, ATTEMPTS)), number=number, repeat=3))
    size = len(payloads.body("x", "call.end", 0.0, None, "call",
                             payloads.call_end(RECORD, ATTEMPTS)))
    print(f"call.end body built and encoded ({size} bytes): {seconds / number * 1e6:.1f} µs")

    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        time.sleep(0.5)
        with tempfile.TemporaryDirectory() as folder:
            for lanes in (1, 4):
                cpu, rate = deliveries(port, lanes, args.deliveries, Path(folder))
                print(f"{lanes} lane(s): {cpu * 1e6:.0f} µs of CPU per delivery, "
                      f"{rate:,.0f} deliveries/s")
    finally:
        receiver.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
