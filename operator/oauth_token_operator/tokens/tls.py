"""One ``ssl.SSLContext`` per TLS configuration, built from PEM text read out of Secrets and ConfigMaps.

Trust starts from the system roots (``ssl.create_default_context``: TLS 1.2+, hostname checks) and a
``tls.caBundleRef`` *adds* roots rather than replacing them, so pointing at a private CA never silently
distrusts the public ones. ``insecureSkipVerify`` turns verification off; the client reports it as a warning
on every token.

Python's ``load_cert_chain`` only reads files, so a client certificate and key are written to a fresh private
directory (0700, files 0600), loaded, and deleted before this function returns; the key never outlives the
call on disk. Bad PEM is an input error (InvalidSpec) whose message names the field but quotes nothing.

:func:`tls_material_key` is the digest the client keys its connection pools by: equal material shares a pool,
and the key reveals nothing of the private key it covers.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import InvalidSpec
from .model import TLSMaterial

__all__ = ["build_ssl_context", "tls_material_key"]


def tls_material_key(tls: TLSMaterial) -> str:
    """A SHA-256 digest of every TLS input: equal for equal material, and not reversible to the key
    (:attr:`TLSMaterial.digest`, computed once per material)."""
    return tls.digest


def _add_ca_bundle(context: ssl.SSLContext, pem: str) -> None:
    help_text = "tls.caBundleRef must hold one or more PEM certificates (BEGIN CERTIFICATE blocks)"
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise InvalidSpec(f"the CA bundle could not be read; {help_text}") from None
    for certificate in certificates:
        try:
            context.load_verify_locations(cadata=certificate.public_bytes(serialization.Encoding.PEM).decode())
        except (ssl.SSLError, ValueError):
            raise InvalidSpec(f"a certificate of the CA bundle was refused; {help_text}") from None


def _check_client_key(key_pem: str) -> None:
    help_text = (
        "tls.clientCertificateSecretRef must hold an unencrypted PEM private key in tls.key "
        "matching the certificate in tls.crt"
    )
    try:
        serialization.load_pem_private_key(key_pem.strip().encode(), password=None)
    except TypeError:
        raise InvalidSpec(f"the client certificate's private key is encrypted; {help_text}") from None
    except ValueError:
        raise InvalidSpec(f"the client certificate's private key could not be read; {help_text}") from None
    except Exception:  # e.g. cryptography's UnsupportedAlgorithm
        raise InvalidSpec(f"the client certificate's private key is not supported; {help_text}") from None


def _load_client_certificate(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    try:
        x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        raise InvalidSpec(
            "the client certificate could not be read; tls.clientCertificateSecretRef must "
            "hold PEM certificates in tls.crt"
        ) from None
    _check_client_key(key_pem)
    directory = tempfile.mkdtemp(prefix="oauth-token-operator-tls-")  # created 0700
    try:
        cert_path, key_path = Path(directory, "tls.crt"), Path(directory, "tls.key")
        for path, text in ((cert_path, cert_pem), (key_path, key_pem)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                stream.write(text)
        try:
            context.load_cert_chain(cert_path, key_path, password=lambda: b"")
        except ssl.SSLError as exc:
            mismatch = "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc)
            what = "does not match the certificate" if mismatch else "could not be loaded with the certificate"
            raise InvalidSpec(
                f"the private key in tls.clientCertificateSecretRef {what} (tls.key must be the key of tls.crt)"
            ) from None
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def build_ssl_context(tls: TLSMaterial) -> ssl.SSLContext:
    """The SSL context for one TLS configuration. Raises InvalidSpec for unusable PEM."""
    context = ssl.create_default_context()
    if tls.ca_bundle_pem is not None and tls.ca_bundle_pem.strip():
        _add_ca_bundle(context, tls.ca_bundle_pem)
    cert = tls.client_cert_pem if tls.client_cert_pem and tls.client_cert_pem.strip() else None
    key = tls.client_key_pem.get_secret_value() if tls.client_key_pem is not None else ""
    if cert and key.strip():
        _load_client_certificate(context, cert, key)
    elif cert or key.strip():
        missing = "tls.key (the private key)" if cert else "tls.crt (the certificate)"
        raise InvalidSpec(
            f"tls.clientCertificateSecretRef needs both tls.crt and tls.key; {missing} is missing or empty"
        )
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
