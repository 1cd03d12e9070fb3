"""hub/trust/tls.py: CPython's ssl verifies the chain and the host name; bad arguments are refused by name."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from hub.trust import tls

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def site() -> tuple[bytes, bytes, bytes, bytes]:
    ca, ca_key = tls.make_ca("Qala test site CA")
    cert, key = tls.make_server_cert(ca, ca_key, ["broker.example", "localhost"], ["127.0.0.1"])
    return ca, ca_key, cert, key


async def _handshake(tmp_path: Path, cert: bytes, key: bytes, ca: bytes, server_hostname: str) -> None:
    """A TLS server with cert/key on 127.0.0.1; a client trusting `ca` that checks `server_hostname`."""
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cadata=ca.decode())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname=server_hostname)
        assert await reader.read() == b"hi"
        writer.close()
    finally:
        server.close()


@pytest.mark.parametrize("name", ["broker.example", "localhost", "127.0.0.1"])
async def test_cpython_verifies_chain_and_each_name(tmp_path: Path, site: tuple[bytes, ...], name: str) -> None:
    ca, _, cert, key = site
    await _handshake(tmp_path, cert, key, ca, name)


async def test_cpython_refuses_a_name_not_in_the_certificate(tmp_path: Path, site: tuple[bytes, ...]) -> None:
    ca, _, cert, key = site
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await _handshake(tmp_path, cert, key, ca, "attacker.example")


async def test_cpython_refuses_another_ca(tmp_path: Path, site: tuple[bytes, ...]) -> None:
    _, _, cert, key = site
    other, _ = tls.make_ca("Someone else")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        await _handshake(tmp_path, cert, key, other, "broker.example")


def test_server_certificate_extensions(site: tuple[bytes, ...]) -> None:
    ca_pem, _, cert_pem, _ = site
    ca, cert = x509.load_pem_x509_certificate(ca_pem), x509.load_pem_x509_certificate(cert_pem)
    assert cert.issuer == ca.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example", "localhost"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=826)
    assert cert.not_valid_after_utc <= ca.not_valid_after_utc


def test_pem_to_der_round_trip(site: tuple[bytes, ...]) -> None:
    ca_pem = site[0]
    der = tls.pem_to_der(ca_pem)
    assert der[0] == 0x30  # an ASN.1 SEQUENCE
    assert x509.load_der_x509_certificate(der) == x509.load_pem_x509_certificate(ca_pem)


@pytest.mark.parametrize("bad", [b"", b"not pem", b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                                 b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_pem_to_der_refuses_garbage(bad: bytes) -> None:
    with pytest.raises(tls.TLSError, match="pem_to_der"):
        tls.pem_to_der(bad)


def test_make_ca_refuses_bad_arguments() -> None:
    with pytest.raises(tls.TLSError, match="common_name"):
        tls.make_ca("  ")
    with pytest.raises(tls.TLSError, match="days"):
        tls.make_ca("CA", days=0)


@pytest.mark.parametrize(("hostnames", "ips", "match"), [
    ((), (), "both empty"),
    ("broker.example", (), "not one string"),
    (["bad host"], (), "not a DNS name"),
    (["a:b"], (), "not a DNS name"),
    ((), ["300.1.1.1"], "not an IP address"),
])
def test_make_server_cert_refuses_bad_names(site: tuple[bytes, ...], hostnames: object, ips: object,
                                            match: str) -> None:
    ca, ca_key = site[0], site[1]
    with pytest.raises(tls.TLSError, match=match):
        tls.make_server_cert(ca, ca_key, hostnames, ips)  # type: ignore[arg-type]


def test_make_server_cert_refuses_a_key_of_another_ca(site: tuple[bytes, ...]) -> None:
    _, other_key = tls.make_ca("Other")
    with pytest.raises(tls.TLSError, match="not the key of ca_cert_pem"):
        tls.make_server_cert(site[0], other_key, ["broker.example"])
    with pytest.raises(tls.TLSError, match="ca_cert_pem is not a PEM"):
        tls.make_server_cert(b"junk", other_key, ["broker.example"])
    with pytest.raises(tls.TLSError, match="ca_key_pem is not"):
        tls.make_server_cert(site[0], b"junk", ["broker.example"])
