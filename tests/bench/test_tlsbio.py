"""bench/tlsbio.py (the ingest benchmark publisher's TLS reader) against a real TLS server (Python's ssl in a
thread).

The BioSocket must verify exactly as an SSLSocket does (the site CA, the host name), hand out many records
per socket read, report EOF and close_notify, never block in recv, and write all its ciphertext. (The hub's
own TLS checks are in tests/hub/test_mqtt.py.)
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from typing import TYPE_CHECKING

import pytest

from bench.tlsbio import BioContext, BioSocket
from hub.trust import tls

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path



@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A site CA with a server certificate for localhost/127.0.0.1, and a stranger's CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key = tls.make_ca("site CA")
    cert, key = tls.make_server_cert(ca, ca_key, ["localhost"], ["127.0.0.1"])
    other, _ = tls.make_ca("another CA")
    files = {"ca": ca, "cert": cert, "key": key, "other": other}
    for name, data in files.items():
        (folder / f"{name}.pem").write_bytes(data)
    return {name: folder / f"{name}.pem" for name in files}


@contextlib.contextmanager
def server(pki: dict[str, Path], serve: Callable[[ssl.SSLSocket], None]) -> Iterator[int]:
    """A one-connection TLS server on 127.0.0.1 running serve(connection) in a thread; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls_conn:
                serve(tls_conn)
        except (OSError, ssl.SSLError) as exc:  # a client that refused the certificate
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)
        listener.close()


def client(port: int, ca: Path, name: str = "127.0.0.1") -> BioSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return BioContext(ssl.create_default_context(cafile=str(ca))).wrap_socket(sock, server_hostname=name)


def read_all(conn: BioSocket, want: int) -> bytes:
    """Non-blocking reads as a select loop makes them: select only when nothing is pending."""
    conn.setblocking(flag=False)
    got = bytearray()
    while len(got) < want:
        if not conn.pending():
            select.select([conn], [], [], 5)
        try:
            data = conn.recv(65536)
        except ssl.SSLWantReadError:
            continue
        if not data:
            break
        got += data
    return bytes(got)


def test_many_records_one_read_and_the_end(pki: dict[str, Path]) -> None:
    records = [b"%05d" % i * 40 for i in range(2000)]  # 200-byte records, one TLS record each

    def serve(conn: ssl.SSLSocket) -> None:
        for record in records:
            conn.sendall(record)
        assert conn.recv(5) == b"hello"
        conn.sendall(b"bye")
        conn.unwrap()  # close_notify

    with server(pki, serve) as port:
        conn = client(port, pki["ca"])
        data = read_all(conn, sum(map(len, records)))
        assert data == b"".join(records)
        conn.setblocking(flag=True)
        assert conn.send(b"hello") == 5
        assert read_all(conn, 3) == b"bye"
        conn.setblocking(flag=True)
        assert conn.recv(10) == b""  # close_notify: the end, not an error
        conn.close()
    assert repr(conn).startswith("<BioSocket")


def test_recv_never_blocks_and_pending_does_not_spin(pki: dict[str, Path]) -> None:
    go = threading.Event()

    def serve(conn: ssl.SSLSocket) -> None:
        go.wait(5)
        conn.sendall(b"x" * 100)

    with server(pki, serve) as port:
        conn = client(port, pki["ca"])
        conn.setblocking(flag=False)
        with pytest.raises(ssl.SSLWantReadError):
            conn.recv(10)
        assert conn.pending() == 0  # nothing whole to read: the caller waits in select, it does not spin
        go.set()
        assert read_all(conn, 100) == b"x" * 100
        assert conn.pending() == 0
        conn.close()


@pytest.mark.parametrize(("ca", "name", "reason"), [
    ("other", "127.0.0.1", "certificate verify failed"),
    ("ca", "attacker.example", "Hostname mismatch"),
])
def test_a_broker_the_site_ca_does_not_vouch_for_is_refused(pki: dict[str, Path], ca: str, name: str,
                                                             reason: str) -> None:
    with server(pki, lambda _conn: None) as port, pytest.raises(ssl.SSLCertVerificationError, match=reason):
        client(port, pki[ca], name)


def test_the_peer_closing_during_the_handshake_is_an_eof(pki: dict[str, Path]) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    def hang_up() -> None:  # read the ClientHello, then close: a FIN, not a reset
        conn = listener.accept()[0]
        conn.recv(65536)
        conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    sock = socket.create_connection(listener.getsockname(), timeout=5)
    with pytest.raises(ssl.SSLEOFError, match="closed the connection during the TLS handshake"):
        BioContext(ssl.create_default_context(cafile=str(pki["ca"]))).wrap_socket(sock, server_hostname="127.0.0.1")
    listener.close()
