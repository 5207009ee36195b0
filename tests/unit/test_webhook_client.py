"""The webhooks' HTTP/1.1 client (b2bua/webhooks/client.py) against scripted answers:
the status, and whether the connection carries the next request; https with the
certificate checked; a kept-alive connection the receiver closed, opened again."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import wait_until

from b2bua.config.live import Params
from b2bua.registrar.bindings import Binding
from b2bua.sip.peer import Peer
from b2bua.webhooks.client import Connection, HttpError, Target
from b2bua.webhooks.outbox import Receiver
from b2bua.webhooks.service import WebhookService


class Scripted:
    """A TCP server on loopback that answers each request with the next scripted bytes
    (None: close the connection instead), and records what it got."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn:
            while self.answers:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n")
                              if h.lower().startswith(b"content-length"))
                self.requests.append(head + reader.read(length))
                answer = self.answers.pop(0)
                if answer is None:
                    return
                conn.sendall(answer)


@pytest.fixture
def make() -> Iterator[list[Scripted]]:
    made: list[Scripted] = []
    yield made
    for server in made:
        server.sock.close()


def serve(made: list[Scripted], *answers: bytes | None) -> tuple[Scripted, Connection]:
    server = Scripted(list(answers))
    made.append(server)
    return server, Connection(Target(f"http://127.0.0.1:{server.port}/in?a=1"))


OK = b"HTTP/1.1 204 No Content\r\n\r\n"


def test_kept_alive_and_the_request_as_sent(make: list[Scripted]) -> None:
    server, conn = serve(make, OK, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", OK)
    headers = {"X-Softswitch-Event": "call.end"}
    assert [conn.post(b'{"a":1}', headers, 2.0) for _ in range(3)] == [204, 200, 204]
    assert server.connections == 1 and conn.open
    first = server.requests[0]
    assert first.startswith(b"POST /in?a=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"X-Softswitch-Event: call.end\r\n" in first and first.endswith(b'\r\n\r\n{"a":1}')


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nno length: it ends with the connection",
    b"HTTP/1.1 500 Oops\r\nContent-Length: 999999999\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_answers_that_end_the_connection(make: list[Scripted], answer: bytes) -> None:
    _server, conn = serve(make, answer)
    assert conn.post(b"{}", {}, 2.0) in (200, 500)
    assert not conn.open


def test_chunked_interim_and_keep_alive_of_http_1_0(make: list[Scripted]) -> None:
    server, conn = serve(
        make,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n4\r\nabcd\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.0 201 Created\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
        OK)
    assert [conn.post(b"{}", {}, 2.0) for _ in range(3)] == [202, 201, 204]
    assert server.connections == 1


def test_no_answer_is_an_error_and_closes(make: list[Scripted]) -> None:
    _server, conn = serve(make, None)
    with pytest.raises(HttpError):
        conn.post(b"{}", {}, 2.0)
    assert not conn.open
    _server, conn = serve(make, b"SIP/2.0 200 OK\r\n\r\n")
    with pytest.raises(HttpError, match="not an HTTP answer"):
        conn.post(b"{}", {}, 2.0)


def test_a_silent_receiver_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = Connection(Target(f"http://127.0.0.1:{listener.getsockname()[1]}/"))
        with pytest.raises(TimeoutError):
            conn.post(b"{}", {}, 0.2)


def test_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        Connection(Target(f"http://127.0.0.1:{port}/")).post(b"{}", {}, 1.0)


def test_targets() -> None:
    plain = Target("http://crm.example.net/hooks")
    assert (plain.port, plain.tls, plain.authority, plain.path) == (80, False,
                                                                   "crm.example.net", "/hooks")
    tls = Target("https://[2001:db8::1]:8443")
    assert (tls.port, tls.tls, tls.authority, tls.path) == (8443, True, "[2001:db8::1]:8443",
                                                            "/")
    assert Target("https://bücher.example/").authority == "xn--bcher-kva.example"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receiver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_checks_the_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
                conn = server_tls.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                continue
            with conn:
                data = b""
                while b"{}" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(OK)

    threading.Thread(target=serve, daemon=True).start()
    try:
        target = Target(f"https://127.0.0.1:{port}/")
        trusting = ssl.create_default_context(cafile=str(cert))
        assert Connection(target, trusting).post(b"{}", {}, 2.0) == 204
        with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs: unknown
            Connection(target).post(b"{}", {}, 2.0)
    finally:
        listener.close()


def test_a_connection_the_receiver_closed_meanwhile_is_opened_again(
        make: list[Scripted], tmp_path: Path) -> None:
    """A kept-alive connection found closed when reused: the delivery goes again at once
    on a new one, not counted as a failure."""
    server = Scripted([OK, None, OK])
    make.append(server)
    service = WebhookService(Params(), tmp_path / "dead.jsonl")
    service.attach(SimpleNamespace(events=None), None)  # type: ignore[arg-type]
    service.start()
    try:
        service.configure([Receiver(1, "r", f"http://127.0.0.1:{server.port}/", "k" * 16)])
        service.registration("registered", _binding(), 1.0)
        assert wait_until(lambda: any(s["delivered"] for s in service.snapshot()))
        service.registration("unregistered", _binding(), 2.0)
        assert wait_until(lambda: any(s["delivered"] == 2 for s in service.snapshot()))
        (state,) = service.snapshot()
        assert state["failed_attempts"] == 0 and server.connections == 2
        ids = [r.split(b"X-Softswitch-Delivery: ")[1][:32] for r in server.requests]
        assert ids[1] == ids[2] != ids[0]  # the same delivery, sent again
    finally:
        service.close(0.2)


def _binding() -> Binding:
    return Binding("1001", "sip:1001@192.0.2.7", Peer("udp", "192.0.2.7", 5060), False,
                   100.0, 1.0, "ua", "reg-1")
