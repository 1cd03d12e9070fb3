"""The site's certificates: a site CA and a broker certificate it signs, made with `cryptography`.

Owns key generation (EC P-256), the X.509 extensions each certificate carries and PEM/DER conversion.
Knows nothing of files, the provisioning store or MQTT: callers write the PEM bytes where they belong.

- `make_ca(common_name)`: a self-signed CA (basicConstraints CA:true, pathlen 0; keyCertSign, cRLSign).
- `make_server_cert(ca_cert, ca_key, hostnames, ips)`: a broker certificate signed by that CA, naming each
  host name (SAN DNS) and address (SAN IP), extended key usage serverAuth, basicConstraints CA:false.
- `pem_to_der(pem)`: the DER bytes of the first PEM block.

MicroPython's mbedtls (unix port 1.29, Mbed TLS 3.6) verifies such an EC P-256 chain and its host name
(tests/firmware/test_tls.py). Errors are TLSError, naming the argument at fault.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from collections.abc import Sequence

_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(\*\.)?({_LABEL}\.)*{_LABEL}")  # an optional wildcard, then labels
_BACKDATE = dt.timedelta(hours=1)  # tolerate a board or broker clock a little behind


class TLSError(ValueError):
    """A bad argument or PEM input; the message names it."""


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _validity(days: int, what: str) -> tuple[dt.datetime, dt.datetime]:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        msg = f"{what}: days must be a positive integer, got {days!r}"
        raise TLSError(msg)
    now = dt.datetime.now(dt.UTC)
    return now - _BACKDATE, now + dt.timedelta(days=days)


def make_ca(common_name: str, days: int = 3650) -> tuple[bytes, bytes]:
    """A self-signed site CA: (certificate PEM, private key PEM)."""
    if not isinstance(common_name, str) or not common_name.strip():
        msg = f"make_ca: common_name must be a non-empty string, got {common_name!r}"
        raise TLSError(msg)
    not_before, not_after = _validity(days, "make_ca")
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _load_ca(ca_cert_pem: bytes, ca_key_pem: bytes) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError as exc:
        msg = f"make_server_cert: ca_cert_pem is not a PEM certificate: {exc}"
        raise TLSError(msg) from None
    try:
        key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        msg = f"make_server_cert: ca_key_pem is not an unencrypted PEM private key: {exc}"
        raise TLSError(msg) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        msg = "make_server_cert: ca_key_pem must be an EC key (make_ca makes one)"
        raise TLSError(msg)
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        msg = "make_server_cert: ca_key_pem is not the key of ca_cert_pem"
        raise TLSError(msg)
    return cert, key


def _san(hostnames: Sequence[str], ips: Sequence[str]) -> list[x509.GeneralName]:
    if isinstance(hostnames, str) or isinstance(ips, str):
        msg = "make_server_cert: hostnames and ips must be sequences of strings, not one string"
        raise TLSError(msg)
    names: list[x509.GeneralName] = []
    for h in hostnames:
        if not isinstance(h, str) or len(h) > 253 or not _DNS_NAME.fullmatch(h):
            msg = f"make_server_cert: hostnames: {h!r} is not a DNS name"
            raise TLSError(msg)
        names.append(x509.DNSName(h))
    for a in ips:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(a)))
        except ValueError:
            msg = f"make_server_cert: ips: {a!r} is not an IP address"
            raise TLSError(msg) from None
    if not names:
        msg = "make_server_cert: hostnames and ips are both empty: a certificate must name its server"
        raise TLSError(msg)
    return names


def make_server_cert(ca_cert_pem: bytes, ca_key_pem: bytes, hostnames: Sequence[str], ips: Sequence[str] = (),
                     days: int = 825) -> tuple[bytes, bytes]:
    """A broker certificate signed by the CA, naming `hostnames` and `ips`: (certificate PEM, key PEM)."""
    names = _san(hostnames, ips)
    not_before, not_after = _validity(days, "make_server_cert")
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    key = _new_key()
    cn = hostnames[0] if hostnames else ips[0]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(not_before, ca_cert.not_valid_before_utc))
        .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def pem_to_der(pem: bytes) -> bytes:
    """The DER bytes of the first PEM block in `pem` (a certificate or a key)."""
    lines = pem.decode("ascii", "replace").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN "))
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("-----END "))
    except StopIteration:
        msg = "pem_to_der: no complete -----BEGIN/-----END block"
        raise TLSError(msg) from None
    try:
        return base64.b64decode("".join(lines[start + 1:end]), validate=True)
    except binascii.Error as exc:
        msg = f"pem_to_der: bad base64 in the PEM block: {exc}"
        raise TLSError(msg) from None
