"""Minting ServiceAccount tokens for ``authMethod: kubernetes_service_account`` (the TokenRequest API).

For every token request the operator mints a fresh, short-lived token of the spec's ServiceAccount, for the
audience the authorization server expects, and sends it as the RFC 7523 ``client_assertion``. Before any
TokenRequest the ServiceAccount's opt-in annotation is checked (:mod:`..service_account_assertion`): a
ServiceAccount that did not list the audience gets nothing minted, and the resource says
``AssertionNotPermitted``.

The minted token is a :class:`~pydantic.SecretStr` from the moment it is parsed, never logged, stored or put
into a message; error messages quote the API server's own error text only (which never holds a token).

Wiring (one call, after the token endpoint is known and before ``TokenClient.fetch_token``)::

    endpoint = await token_client.token_endpoint(config)
    config = await with_service_account_assertion(kube, resource, config, endpoint)
    result = await token_client.fetch_token(config)
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol

import urllib3
from kubernetes.client.exceptions import ApiException
from pydantic import SecretStr

from ..api import OAuthClientCredential
from ..errors import AssertionNotPermitted, CredentialsNotFound, EndpointUnavailable, InvalidSpec
from ..service_account_assertion import assertion_audience, assertion_refusal
from ..tokens.clientauth import Credential, strategy_for
from ..tokens.model import ClientConfig

__all__ = ["ServiceAccountAPI", "mint_service_account_token", "with_service_account_assertion"]

JSON = dict[str, Any]


class ServiceAccountAPI(Protocol):
    """What minting needs from the Kubernetes API (:class:`~.client.KubeClient` has it)."""

    async def get_service_account(self, namespace: str, name: str) -> JSON | None: ...

    async def create_service_account_token(self, namespace: str, name: str, audience: str,
                                           expiration_seconds: int) -> JSON: ...


def _api_error(exc: ApiException, what: str) -> InvalidSpec | EndpointUnavailable | CredentialsNotFound:
    status = int(exc.status or 0)
    try:
        said = str(json.loads(exc.body or "{}").get("message", ""))[:300]
    except (ValueError, AttributeError):
        said = ""
    detail = f": {said}" if said else ""
    if status == 403:
        return InvalidSpec(f"the operator may not {what} (403{detail}); its RBAC needs get on serviceaccounts and "
                           "create on serviceaccounts/token (the chart and deploy/ grant both)")
    if status == 404:
        return CredentialsNotFound(f"cannot {what}: not found{detail}")
    if status in (400, 422):
        return InvalidSpec(f"the API server refused to {what} ({status}{detail}); check serviceAccountAssertion")
    return EndpointUnavailable(f"the Kubernetes API answered {status} when asked to {what}{detail}")


async def mint_service_account_token(kube: ServiceAccountAPI, namespace: str, name: str, audience: str,
                                     expiration_seconds: int) -> SecretStr:
    """A fresh token of ServiceAccount ``namespace/name`` for ``audience``, if its annotation allows it.

    Raises CredentialsNotFound (no such ServiceAccount), AssertionNotPermitted (it did not opt in to this
    audience: nothing is minted), InvalidSpec (RBAC, refused request) or EndpointUnavailable (API server).
    """
    what = f"get ServiceAccount {namespace}/{name}"
    try:
        account = await kube.get_service_account(namespace, name)
    except ApiException as exc:
        raise _api_error(exc, what) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise EndpointUnavailable(f"the Kubernetes API could not be reached to {what} ({type(exc).__name__})") from None
    if account is None:
        raise CredentialsNotFound(
            f"ServiceAccount {namespace}/{name} not found (serviceAccountAssertion.serviceAccountName)")
    refusal = assertion_refusal(namespace, name, (account.get("metadata") or {}).get("annotations"), audience)
    if refusal is not None:
        raise AssertionNotPermitted(refusal)
    what = f"create a token of ServiceAccount {namespace}/{name} (serviceaccounts/token)"
    try:
        answer = await kube.create_service_account_token(namespace, name, audience, expiration_seconds)
    except ApiException as exc:
        raise _api_error(exc, what) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise EndpointUnavailable(f"the Kubernetes API could not be reached to {what} ({type(exc).__name__})") from None
    token = (answer.get("status") or {}).get("token")
    if not isinstance(token, str) or not token:
        raise EndpointUnavailable(f"the Kubernetes API answered the TokenRequest for ServiceAccount "
                                  f"{namespace}/{name} without a token")
    return SecretStr(token)


async def with_service_account_assertion(kube: ServiceAccountAPI, resource: OAuthClientCredential,
                                         config: ClientConfig, token_endpoint: str) -> ClientConfig:
    """``config`` with a freshly minted ServiceAccount token when its method needs one; else ``config`` itself.

    ``token_endpoint`` is the endpoint in use (``tokenURL`` or the discovered one): the default audience.
    """
    spec = resource.spec
    if Credential.SERVICE_ACCOUNT_TOKEN not in strategy_for(spec.auth_method).needs:
        return config
    if spec.service_account_assertion is None:  # the models refuse this; objects stored before may not
        raise InvalidSpec("authMethod kubernetes_service_account needs serviceAccountAssertion")
    assertion = spec.service_account_assertion
    minted = await mint_service_account_token(
        kube, resource.metadata.namespace, assertion.service_account_name,
        assertion_audience(spec, token_endpoint), assertion.expiration_seconds)
    return dataclasses.replace(config, client_assertion=minted)
