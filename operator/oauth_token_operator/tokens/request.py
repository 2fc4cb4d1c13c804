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

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from ..api import RESERVED_PARAMS
from ..errors import CredentialsNotFound, InvalidSpec
from .clientauth import BasicEncoding, basic_credentials, basic_encoding_matters, strategy_for
from .model import ClientConfig

__all__ = [
    "FORM_CONTENT_TYPE",
    "BasicEncoding",
    "PreparedRequest",
    "basic_credentials",
    "basic_encoding_matters",
    "build_token_request",
]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class PreparedRequest:
    """Everything needed to send one token request. ``repr`` never shows header values or the form."""

    url: str
    headers: dict[str, str] = field(repr=False)
    form: list[tuple[str, str]] = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def body(self) -> bytes:
        """The ``application/x-www-form-urlencoded`` body (spaces as ``+``, as HTML forms do)."""
        return urlencode(self.form).encode("ascii")

    def secret_values(self) -> tuple[str, ...]:
        """Strings in this request that must never appear in a message (for :func:`classify.redact`): what
        the auth method's strategy says it put on the wire."""
        return self.secrets


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
    parameters (from the method's strategy in :mod:`.clientauth`), then ``extra_params``. ``now`` and ``jti``
    only matter for the JWT assertion methods.
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

    auth = strategy_for(config.auth_method).authenticate(
        config, token_url, now=now, jti=jti, basic_encoding=basic_encoding
    )
    headers.update(auth.headers)
    form.extend(auth.form)
    form.extend(config.extra_params)
    return PreparedRequest(url=token_url, headers=headers, form=form, secrets=auth.secrets)
