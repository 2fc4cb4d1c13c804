"""Value objects shared by the token client and the rest of the operator.

``ClientConfig`` is what a resource *means* once every reference is resolved: the operator builds it from the
API server, the ``token`` command from a YAML file, and from there both take the very same code path.
Secret material is held as :class:`pydantic.SecretStr` from the moment it is read, so that a stray ``repr``
or log line prints ``**********``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Literal

from pydantic import SecretStr

from ..api import AuthMethod, SigningAlgorithm

__all__ = ["ClientConfig", "TLSMaterial", "Token"]


@dataclass(frozen=True)
class TLSMaterial:
    """TLS inputs read from referenced objects (PEM text)."""

    ca_bundle_pem: str | None = None
    client_cert_pem: str | None = None
    client_key_pem: SecretStr | None = None
    insecure_skip_verify: bool = False

    @cached_property
    def digest(self) -> str:
        """A SHA-256 digest of every TLS input: equal for equal material, and not reversible to the key.

        It keys the connection pools, the discovery cache and the endpoint circuits, all asked on every token
        request; computed once per material (a CA bundle can be hundreds of KiB), which lives as long as the
        resolved configuration it belongs to."""
        digest = hashlib.sha256()
        key = self.client_key_pem.get_secret_value() if self.client_key_pem is not None else None
        for part in (self.ca_bundle_pem, self.client_cert_pem, key):
            data = b"\x00" if part is None else b"\x01" + part.encode()
            digest.update(len(data).to_bytes(8, "big") + data)
        digest.update(b"insecure" if self.insecure_skip_verify else b"verify")
        return digest.hexdigest()


@dataclass(frozen=True)
class ClientConfig:
    """A fully resolved token request configuration (no Kubernetes references left)."""

    client_id: str
    token_url: str | None = None
    issuer_url: str | None = None
    client_secret: SecretStr | None = None
    auth_method: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC
    private_key_pem: SecretStr | None = None
    signing_algorithm: SigningAlgorithm | None = None
    signing_key_id: str | None = None
    assertion_audience: str | None = None
    scopes: tuple[str, ...] = ()
    audience: str | None = None
    resources: tuple[str, ...] = ()
    extra_params: tuple[tuple[str, str], ...] = ()
    tls: TLSMaterial = field(default_factory=TLSMaterial)
    # authMethod kubernetes_service_account: the ServiceAccount token minted for this request (sent as the
    # client_assertion). Minted outside this package (kube.serviceaccounts); never stored or logged.
    client_assertion: SecretStr | None = None
    # Where the credentials were read from, for messages only (e.g. "Secret team-a/torch-client"): lets an
    # InvalidClient message say which Secret to check. Never holds secret material.
    credentials_source: str | None = None


@dataclass(frozen=True)
class Token:
    """An issued access token and what we know about its lifetime."""

    access_token: SecretStr
    token_type: str
    issued_at: datetime
    expires_at: datetime
    expiry_source: Literal["expires_in", "jwt_exp", "default"]
    scope: str | None = None
