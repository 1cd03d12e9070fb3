"""TLS over memory BIOs for the ingest benchmark's publisher: one system call reads many TLS records.

mosquitto writes each MQTT packet (every PUBACK the publisher gets) as a TLS record of its own. Through an
`ssl.SSLSocket` every record costs OpenSSL two `read` system calls (header, then body) and a trip through
Python. Here the TCP socket is read in large chunks into an `ssl.MemoryBIO` and the records are decrypted from
memory (`ssl.SSLObject`, the standard library's sans-I/O TLS), so the publisher costs little CPU next to the
hub it measures. (The hub read paho's TLS records this way until its MQTT connection moved to asyncio, whose
SSL protocol does the same: hub/ingest/mqtt.py, docs/performance.md.)

- `BioContext(context)` wraps an `ssl.SSLContext`: `wrap_socket(sock, server_hostname=...,
  do_handshake_on_connect=True)` returns a `BioSocket`. Certificate and host name checks are the wrapped
  context's own (CERT_REQUIRED, check_hostname), made during the handshake.
- `BioSocket` offers what a caller uses of a TLS socket: `do_handshake`, `recv`, `send` (and `sendall`),
  `pending`, `fileno`, `setblocking`, `settimeout`, `getpeercert`, `close`. On a non-blocking socket `recv`
  raises `ssl.SSLWantReadError` when nothing is there, as an SSLSocket does; on a blocking one it waits for
  data, as a socket does. `send` accepts the plaintext and writes all of its ciphertext before it returns
  (waiting for the socket at most the socket's timeout, or `SEND_TIMEOUT` when non-blocking), so no
  ciphertext is ever left behind without a caller to send it. `pending()` counts decrypted bytes and buffered
  ciphertext that may hold a whole record, so a caller reads them without waiting in `select`.

One thread uses a BioSocket at a time, as with an SSLSocket. Standard library only; knows nothing of MQTT.
"""

from __future__ import annotations

import select
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket

READ_SIZE = 262144
"""Bytes asked of the TCP socket per read: many records at a time."""
SEND_TIMEOUT = 30.0
"""Seconds `send` waits for a non-blocking socket to take the ciphertext before it gives up (OSError)."""


class BioContext:
    """A wrapper of an `ssl.SSLContext` whose `wrap_socket` gives a BioSocket."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    @property
    def check_hostname(self) -> bool:
        return self.context.check_hostname

    def wrap_socket(self, sock: socket.socket, server_hostname: str | None = None,
                    do_handshake_on_connect: bool = True) -> BioSocket:
        wrapped = BioSocket(sock, self.context, server_hostname)
        if do_handshake_on_connect:
            wrapped.do_handshake()
        return wrapped


class BioSocket:
    """A TLS client connection on a TCP socket, its records decrypted from memory (see the module docstring)."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self._sock = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_hostname=server_hostname)
        self._starved = False
        """The buffered ciphertext holds no whole record: nothing to read until the socket brings more."""

    def __repr__(self) -> str:
        return f"<BioSocket fd={self._sock.fileno()}>"

    # -- what a caller uses of a socket

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(value)

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._tls.getpeercert(binary_form)

    def close(self) -> None:
        self._sock.close()

    def pending(self) -> int:
        """Bytes that can be read without the socket: decrypted ones, and ciphertext not known to be partial."""
        return self._tls.pending() + (0 if self._starved else self._in.pending)

    def do_handshake(self) -> None:
        """The TLS handshake, on a blocking socket or one with a timeout."""
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                data = self._sock.recv(READ_SIZE)
                if not data:
                    raise ssl.SSLEOFError(8, "the broker closed the connection during the TLS handshake") from None
                self._in.write(data)
            else:
                self._flush()
                return

    def recv(self, bufsize: int) -> bytes:
        """Up to bufsize decrypted bytes; b"" once the connection is closed; SSLWantReadError if none yet
        on a non-blocking socket (a blocking one waits)."""
        while True:
            try:
                return self._read(bufsize)
            except ssl.SSLWantReadError:
                pass
            try:
                data = self._sock.recv(READ_SIZE)
            except BlockingIOError:
                self._starved = True
                raise ssl.SSLWantReadError(2, "the read would block") from None
            if not data:
                return b""
            self._in.write(data)
            self._starved = False
            if self._sock.gettimeout() == 0.0:  # non-blocking: one socket read per call (select loops)
                try:
                    return self._read(bufsize)
                except ssl.SSLWantReadError:
                    self._starved = True
                    raise

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt all of data and write its ciphertext; returns len(data)."""
        written = self._tls.write(data)
        self._flush()
        return written

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """As socket.sendall: send() always writes everything."""
        self.send(data)

    # -- inside

    def _read(self, bufsize: int) -> bytes:
        try:
            return self._tls.read(bufsize)
        except ssl.SSLZeroReturnError:  # the broker's close_notify
            return b""

    def _flush(self) -> None:
        """Write every buffered ciphertext byte, waiting for a non-blocking socket at most SEND_TIMEOUT."""
        pending = self._out.read()
        view = memoryview(pending)
        while view:
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                timeout = self._sock.gettimeout()
                _, ready, _ = select.select([], [self._sock], [], timeout or SEND_TIMEOUT)
                if not ready:
                    raise TimeoutError(f"the broker took no data for {timeout or SEND_TIMEOUT} s") from None
                continue
            view = view[sent:]
