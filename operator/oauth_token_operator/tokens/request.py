"""Build the client_credentials token request (RFC 6749 §4.4.2) from a resolved :class:`ClientConfig`.

Pure: no network, no clock, no randomness (``now`` and ``jti`` come from the caller), so every byte we send
is unit-tested.

**HTTP Basic credentials and their encoding.** RFC 6749 §2.3.1 says the client ID and secret are each
``application/x-www-form-urlencoded`` before being joined with ``:`` and base64-encoded. Servers disagree in
practice (measured): oidc-provider and django-oauth-toolkit form-decode as the RFC says; Authlib's server
percent-decodes ``%XX`` but does not turn ``+`` into a space; some gateways do not decode at all. We therefore
encode with ``quote(value, safe="")`` (everything but the RFC 3986 unreserved characters as ``%XX``, a space
as ``%20`` rather than ``+``), which RFC decoders and ``%XX``-only decoders both read back correctly
(``BasicEncoding "form"``). For the servers that do not decode at all, ``"raw"`` sends the credentials
unencoded; the client (``client.py``) retries once with it when the first attempt is answered as an invalid
client *and* encoding actually changed the ID or secret *and* the raw form is unambiguous (no ``:`` in the
client ID), to the same URL over the same TLS, and remembers which encoding worked per (token URL, client ID);
when the remembered encoding is refused later (a rotated secret, a reconfigured gateway) the other one is
tried once the same way.
For the common case of alphanumeric credentials both forms are identical and no retry ever happens.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from urllib.parse import quote, urlencode

from ..api import RESERVED_PARAMS, AuthMethod
from ..errors import CredentialsNotFound, InvalidSpec
from .clientauth import JWT_BEARER_ASSERTION_TYPE, build_client_assertion
from .model import ClientConfig

__all__ = [
    "FORM_CONTENT_TYPE",
    "BasicEncoding",
    "PreparedRequest",
    "basic_credentials",
    "basic_encoding_matters",
    "build_token_request",
]

BasicEncoding = Literal["form", "raw"]
"""How the client ID and secret are encoded inside HTTP Basic: RFC 6749 §2.3.1 ``"form"`` or ``"raw"``."""

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class PreparedRequest:
    """Everything needed to send one token request. ``repr`` never shows header values or the form."""

    url: str
    headers: dict[str, str] = field(repr=False)
    form: list[tuple[str, str]] = field(repr=False)

    def body(self) -> bytes:
        """The ``application/x-www-form-urlencoded`` body (spaces as ``+``, as HTML forms do)."""
        return urlencode(self.form).encode("ascii")

    def secret_values(self) -> tuple[str, ...]:
        """Strings in this request that must never appear in a message (for :func:`classify.redact`)."""
        values: list[str] = []
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            values.append(authorization.removeprefix("Basic "))
        values.extend(value for name, value in self.form if name in ("client_secret", "client_assertion"))
        return tuple(values)


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


def build_token_request(
    config: ClientConfig,
    token_url: str,
    *,
    now: datetime,
    jti: str,
    basic_encoding: BasicEncoding = "form",
) -> PreparedRequest:
    """The token request for ``config`` sent to ``token_url`` (the configured or discovered endpoint).

    Form order: ``grant_type``, ``scope``, ``audience``, ``resource``..., the client authentication
    parameters, then ``extra_params``. ``now`` and ``jti`` only matter for ``private_key_jwt``.
    """
    if not config.client_id:
        where = config.credentials_source or "the client credentials Secret"
        raise CredentialsNotFound(f"{where} holds an empty client ID (clientCredentialsSecretRef.clientIDKey)")
    reserved = sorted({name for name, _ in config.extra_params} & RESERVED_PARAMS)
    if reserved:
        raise InvalidSpec(f"extraParams may not set {', '.join(reserved)}: use the dedicated fields")
    headers = {"Accept": "application/json", "Content-Type": FORM_CONTENT_TYPE}
    form: list[tuple[str, str]] = [("grant_type", "client_credentials")]
    if config.scopes:
        form.append(("scope", " ".join(config.scopes)))
    if config.audience:
        form.append(("audience", config.audience))
    form.extend(("resource", resource) for resource in config.resources)

    method = config.auth_method
    if method is AuthMethod.CLIENT_SECRET_BASIC:
        headers["Authorization"] = basic_credentials(config.client_id, _secret(config), basic_encoding)
    elif method is AuthMethod.CLIENT_SECRET_POST:
        form += [("client_id", config.client_id), ("client_secret", _secret(config))]
    elif method is AuthMethod.PRIVATE_KEY_JWT:
        assertion = build_client_assertion(config, token_url, now=now, jti=jti)
        form += [
            ("client_id", config.client_id),
            ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
            ("client_assertion", assertion),
        ]
    elif method is AuthMethod.TLS_CLIENT_AUTH:
        if not (config.tls.client_cert_pem and config.tls.client_key_pem):
            raise InvalidSpec(
                "authMethod tls_client_auth needs a client certificate and key (tls.clientCertificateSecretRef)"
            )
        form.append(("client_id", config.client_id))
    else:  # pragma: no cover - AuthMethod is closed; this keeps a new member from being silently ignored
        raise InvalidSpec(f"unsupported authMethod {method}")

    form.extend(config.extra_params)
    return PreparedRequest(url=token_url, headers=headers, form=form)


def _secret(config: ClientConfig) -> str:
    secret = config.client_secret.get_secret_value() if config.client_secret is not None else ""
    if not secret:
        where = config.credentials_source or "the client credentials Secret"
        raise CredentialsNotFound(
            f"authMethod {config.auth_method} needs a client secret, but {where} "
            "has none (clientCredentialsSecretRef.clientSecretKey)"
        )
    return secret
