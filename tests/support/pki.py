"""A tiny certificate authority for tests: server certificates for loopback TLS endpoints and client
certificates for mutual TLS (``tls_client_auth``, RFC 8705).

Real token endpoints are often served with a private CA or a self-signed certificate (WSO2's
``curl -k`` examples), and ``tls_client_auth`` needs a client certificate whose subject the server
checks. Tests need both without touching the network or the system trust store, so this module issues
them on the fly with ``cryptography``::

    ca = TestCA(tmp_path)                              # writes ca.crt / ca.key
    server = ca.issue_server_cert()                    # SAN 127.0.0.1, localhost
    client = ca.issue_client_cert("my-client")         # subject CN=my-client
    ctx = server_ssl_context(server, client_ca=ca)     # what a loopback server listens with

Every method returns PEM text *and* writes the files, because ``ssl`` wants paths and
``TLSMaterial`` wants text. Keys are EC P-256 by default (fast); pass ``key_type="rsa"`` for RSA 2048.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["IssuedCert", "KeyType", "TestCA", "generate_private_key", "private_key_pem", "server_ssl_context"]

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_VALIDITY = datetime.timedelta(days=2)
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate small clock differences


def generate_private_key(key_type: KeyType = "ec") -> PrivateKey:
    """A fresh EC P-256 or RSA 2048 private key."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKey) -> str:
    """PKCS#8 PEM text of an unencrypted private key."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


@dataclass(frozen=True)
class IssuedCert:
    """A certificate and its key, as PEM text and as files."""

    cert_pem: str
    key_pem: str
    cert_path: Path
    key_path: Path
    subject: str
    """The subject as an RFC 4514 string, e.g. ``CN=my-client`` (what RFC 8705 servers compare)."""


class TestCA:
    """A self-signed CA that issues server and client certificates into ``directory``."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self, directory: Path | str, *, key_type: KeyType = "ec", common_name: str = "oauth-token-operator test CA"
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key_type: KeyType = key_type
        self._key = generate_private_key(key_type)
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        public_key = self._key.public_key()
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        self.key_pem = private_key_pem(self._key)
        self.cert_path = self._write("ca.crt", self.cert_pem)
        self.key_path = self._write("ca.key", self.key_pem)

    def issue_server_cert(
        self,
        *,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        name: str = "server",
        key_type: KeyType | None = None,
    ) -> IssuedCert:
        """A serving certificate for ``hosts`` (IP addresses and DNS names both go in the SAN)."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        return self._issue(name, subject, key_type, ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def issue_client_cert(
        self,
        client_id: str,
        *,
        name: str | None = None,
        organization: str | None = None,
        key_type: KeyType | None = None,
    ) -> IssuedCert:
        """A client certificate with subject ``CN=<client_id>`` (and ``O=`` when given)."""
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, client_id)]
        if organization is not None:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        file_stem = name or "client-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in client_id)
        return self._issue(file_stem, x509.Name(attributes), key_type, ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client-side context that trusts this CA only."""
        return ssl.create_default_context(cadata=self.cert_pem)

    def _issue(
        self,
        file_stem: str,
        subject: x509.Name,
        key_type: KeyType | None,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName],
    ) -> IssuedCert:
        key = generate_private_key(key_type or self.key_type)
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        key_pem = private_key_pem(key)
        return IssuedCert(
            cert_pem=cert_pem,
            key_pem=key_pem,
            cert_path=self._write(f"{file_stem}.crt", cert_pem),
            key_path=self._write(f"{file_stem}.key", key_pem),
            subject=subject.rfc4514_string(),
        )

    def _write(self, filename: str, text: str) -> Path:
        path = self.directory / filename
        path.write_text(text, encoding="ascii")
        if filename.endswith(".key"):
            path.chmod(0o600)
        return path


def server_ssl_context(cert: IssuedCert, *, client_ca: TestCA | None = None) -> ssl.SSLContext:
    """A server-side context serving ``cert``. With ``client_ca`` it *asks* for a client certificate
    (``CERT_OPTIONAL``): one that is presented must chain to that CA, but clients without one still connect,
    so a single server can serve mTLS and plain TLS clients (as RFC 8705 deployments usually do).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert.cert_path, cert.key_path)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=client_ca.cert_pem)
    return context
