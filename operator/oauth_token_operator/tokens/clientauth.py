"""Client authentication methods, one strategy object per ``authMethod`` (as httpx does with its ``Auth`` classes).

Everything that differs between methods lives on the method's class, so adding a method touches this file (and
the API enum) instead of every module that once asked ``if method == ...``:

* :attr:`ClientAuth.needs` — what must be resolved before a request can be built (a client secret, a private
  key, a TLS client certificate, a freshly minted ServiceAccount token); :mod:`..resolve` reads exactly that.
* :meth:`ClientAuth.authenticate` — how it decorates the request (an ``Authorization`` header, form fields, a
  ``client_assertion``), and which of the values it puts on the wire are secret (:attr:`Authentication.secrets`,
  redacted from every message by :func:`.classify.redact`).
* :meth:`ClientAuth.refusal_hint` — what an ``InvalidClient`` message tells the user to check.
* :attr:`ClientAuth.retries_basic_encoding` — whether the client may retry with the other HTTP Basic encoding
  (see :mod:`.request`).

Look a strategy up with :func:`strategy_for`; a unit test proves every :class:`~..api.AuthMethod` has one.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar, Literal
from urllib.parse import quote

from ..api import AuthMethod
from ..errors import CredentialsNotFound, InvalidSpec
from .assertion import (
    ASSERTION_LIFETIME_SECONDS,
    JWT_BEARER_ASSERTION_TYPE,
    SigningKey,
    build_client_assertion,
    build_client_secret_assertion,
    load_signing_key,
    signing_algorithm_for,
)
from .model import ClientConfig

__all__ = [
    # the assertion helpers, re-exported where they were first published
    "ASSERTION_LIFETIME_SECONDS",
    "JWT_BEARER_ASSERTION_TYPE",
    "STRATEGIES",
    "Authentication",
    "BasicEncoding",
    "ClientAuth",
    "ClientSecretBasic",
    "ClientSecretJWT",
    "ClientSecretPost",
    "Credential",
    "KubernetesServiceAccount",
    "PrivateKeyJWT",
    "SigningKey",
    "TLSClientAuth",
    "basic_credentials",
    "basic_encoding_matters",
    "build_client_assertion",
    "load_signing_key",
    "signing_algorithm_for",
    "strategy_for",
]

BasicEncoding = Literal["form", "raw"]
"""How the client ID and secret are encoded inside HTTP Basic: RFC 6749 §2.3.1 ``"form"`` or ``"raw"``
(why there are two: :mod:`.request`)."""


def _form_encode(value: str) -> str:
    return quote(value, safe="")


def basic_credentials(client_id: str, client_secret: str, encoding: BasicEncoding = "form") -> str:
    """The value of the ``Authorization`` header for HTTP Basic client authentication."""
    if encoding == "form":
        client_id, client_secret = _form_encode(client_id), _form_encode(client_secret)
    pair = f"{client_id}:{client_secret}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def basic_encoding_matters(client_id: str, client_secret: str) -> bool:
    """Whether a retry with ``"raw"`` Basic credentials could make any difference, and is unambiguous.

    It could only differ when form-encoding changed the ID or the secret; it is only unambiguous when the
    client ID has no ``:`` (a raw ``a:b:c`` cannot be split back into ID and secret reliably).
    """
    changed = _form_encode(client_id) != client_id or _form_encode(client_secret) != client_secret
    return changed and ":" not in client_id


class Credential(StrEnum):
    """Something a method needs besides the client ID."""

    CLIENT_SECRET = "client secret"  # noqa: S105 - a name, not a password
    PRIVATE_KEY = "private key"
    CLIENT_CERTIFICATE = "TLS client certificate"
    SERVICE_ACCOUNT_TOKEN = "ServiceAccount token"  # noqa: S105 - a name, not a token


@dataclass(frozen=True)
class Authentication:
    """What a strategy adds to one token request. ``repr`` shows no value."""

    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    form: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Every secret value placed in ``headers`` or ``form`` (redacted from anything a server echoes)."""


class ClientAuth(ABC):
    """One client authentication method (RFC 6749 §2.3, RFC 7523, RFC 8705)."""

    method: ClassVar[AuthMethod]
    needs: ClassVar[frozenset[Credential]] = frozenset()
    retries_basic_encoding: ClassVar[bool] = False

    @property
    def needs_client_secret(self) -> bool:
        return Credential.CLIENT_SECRET in self.needs

    @abstractmethod
    def authenticate(
        self, config: ClientConfig, token_url: str, *, now: datetime, jti: str, basic_encoding: BasicEncoding
    ) -> Authentication:
        """The header and form additions for one request to ``token_url``; raises an InputError when
        ``config`` lacks what :attr:`needs` names."""

    @abstractmethod
    def refusal_hint(self, source: str, challenge: str) -> str:
        """What to check when the server refused the client (``source``: where the credentials came from,
        ``challenge``: the lower-cased WWW-Authenticate scheme, or empty)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method}>"


def _client_secret(config: ClientConfig) -> str:
    secret = config.client_secret.get_secret_value() if config.client_secret is not None else ""
    if not secret:
        where = config.credentials_source or "the client credentials Secret"
        raise CredentialsNotFound(
            f"authMethod {config.auth_method} needs a client secret, but {where} "
            "has none (clientCredentialsSecretRef.clientSecretKey)"
        )
    return secret


def _assertion_form(client_id: str, assertion: str) -> Authentication:
    return Authentication(
        form=(
            ("client_id", client_id),
            ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
            ("client_assertion", assertion),
        ),
        secrets=(assertion,),
    )


_CHECK_CREDENTIALS_HINT = "check the client ID and secret in {source} — the key may have been revoked or rotated"


class ClientSecretBasic(ClientAuth):
    """The client ID and secret in an HTTP Basic ``Authorization`` header (RFC 6749 §2.3.1)."""

    method = AuthMethod.CLIENT_SECRET_BASIC
    needs = frozenset({Credential.CLIENT_SECRET})
    retries_basic_encoding = True

    def authenticate(
        self, config: ClientConfig, token_url: str, *, now: datetime, jti: str, basic_encoding: BasicEncoding
    ) -> Authentication:
        value = basic_credentials(config.client_id, _client_secret(config), basic_encoding)
        return Authentication(headers=(("Authorization", value),), secrets=(value.removeprefix("Basic "),))

    def refusal_hint(self, source: str, challenge: str) -> str:
        return _CHECK_CREDENTIALS_HINT.format(source=source)


class ClientSecretPost(ClientAuth):
    """The client ID and secret as form fields (RFC 6749 §2.3.1)."""

    method = AuthMethod.CLIENT_SECRET_POST
    needs = frozenset({Credential.CLIENT_SECRET})

    def authenticate(
        self, config: ClientConfig, token_url: str, *, now: datetime, jti: str, basic_encoding: BasicEncoding
    ) -> Authentication:
        secret = _client_secret(config)
        return Authentication(form=(("client_id", config.client_id), ("client_secret", secret)), secrets=(secret,))

    def refusal_hint(self, source: str, challenge: str) -> str:
        if challenge == "basic":
            return (
                f"the server asks for HTTP Basic (WWW-Authenticate: Basic): try authMethod "
                f"client_secret_basic, and check the client ID and secret in {source}"
            )
        return _CHECK_CREDENTIALS_HINT.format(source=source)


class ClientSecretJWT(ClientAuth):
    """A JWT signed with the client secret as HMAC key (OpenID Connect Core §9); the secret is never sent."""

    method = AuthMethod.CLIENT_SECRET_JWT
    needs = frozenset({Credential.CLIENT_SECRET})

    def authenticate(
        self, config: ClientConfig, token_url: str, *, now: datetime, jti: str, basic_encoding: BasicEncoding
    ) -> Authentication:
        assertion = build_client_secret_assertion(config, token_url, _client_secret(config), now=now, jti=jti)
        return _assertion_form(config.client_id, assertion)

    def refusal_hint(self, source: str, challenge: str) -> str:
        return (
            f"check the client ID and secret in {source}, that the server expects client_secret_jwt for this "
            "client with this signingAlgorithm, and the assertion audience (assertionAudience)"
        )


class PrivateKeyJWT(ClientAuth):
    """A JWT signed with the client's private key (RFC 7523 §2.2)."""

    method = AuthMethod.PRIVATE_KEY_JWT
    needs = frozenset({Credential.PRIVATE_KEY})

    def authenticate(
        self, config: ClientConfig, token_url: str, *, now: datetime, jti: str, basic_encoding: BasicEncoding
    ) -> Authentication:
        return _assertion_form(config.client_id, build_client_assertion(config, token_url, now=now, jti=jti))

    def refusal_hint(self, source: str, challenge: str) -> str:
        return (
            f"check the client ID in {source}, that the server has the public key of privateKeySecretRef "
            "registered (and signingKeyID names it), and the assertion audience (assertionAudience)"
        )


class TLSClientAuth(ClientAuth):
    """Mutual TLS with the client's certificate (RFC 8705 §2); only the client ID goes in the form."""

    method = AuthMethod.TLS_CLIENT_AUTH
    needs = frozenset({Credential.CLIENT_CERTIFICATE})

    def authenticate(
        self, config: ClientConfig, token_url: str, *, now: datetime, jti: str, basic_encoding: BasicEncoding
    ) -> Authentication:
        if not (config.tls.client_cert_pem and config.tls.client_key_pem):
            raise InvalidSpec(
                "authMethod tls_client_auth needs a client certificate and key (tls.clientCertificateSecretRef)"
            )
        return Authentication(form=(("client_id", config.client_id),))

    def refusal_hint(self, source: str, challenge: str) -> str:
        return (
            f"check the client ID in {source} and that the server accepts the certificate in "
            "tls.clientCertificateSecretRef for this client"
        )


class KubernetesServiceAccount(ClientAuth):
    """A ServiceAccount token of the cluster as the client assertion (RFC 7523 §2.2): workload identity
    federation. The token is minted outside this package (``kube.serviceaccounts``) for each request and
    arrives as :attr:`ClientConfig.client_assertion`."""

    method = AuthMethod.KUBERNETES_SERVICE_ACCOUNT
    needs = frozenset({Credential.SERVICE_ACCOUNT_TOKEN})

    def authenticate(
        self, config: ClientConfig, token_url: str, *, now: datetime, jti: str, basic_encoding: BasicEncoding
    ) -> Authentication:
        minted = config.client_assertion.get_secret_value() if config.client_assertion is not None else ""
        if not minted:
            raise CredentialsNotFound(
                "authMethod kubernetes_service_account needs a ServiceAccount token minted for this request "
                "(serviceAccountAssertion), and none was"
            )
        return _assertion_form(config.client_id, minted)

    def refusal_hint(self, source: str, challenge: str) -> str:
        return (
            f"check the client ID ({source}) and that the server trusts this cluster's ServiceAccount issuer for "
            "this client, with the subject system:serviceaccount:<namespace>:<serviceAccountName> and the "
            "audience serviceAccountAssertion.audience"
        )


STRATEGIES: Mapping[AuthMethod, ClientAuth] = MappingProxyType(
    {
        strategy.method: strategy
        for strategy in (
            ClientSecretBasic(),
            ClientSecretPost(),
            ClientSecretJWT(),
            PrivateKeyJWT(),
            TLSClientAuth(),
            KubernetesServiceAccount(),
        )
    }
)


def strategy_for(method: AuthMethod) -> ClientAuth:
    """The strategy of ``method`` (every member of :class:`~..api.AuthMethod` has one)."""
    return STRATEGIES[method]
