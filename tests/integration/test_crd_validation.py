"""The API server refuses at apply time what the operator would refuse later (parity of CRD and models).

A spec the pydantic models reject would otherwise be accepted by ``kubectl apply`` and only turn into
``Ready=False InvalidSpec`` once the operator reads it; the CRD's OpenAPI schema and CEL rules catch the same
mistakes before they are stored, with a message that says what to fix. Each invalid case is also checked
against ``OAuthClientCredentialSpec.model_validate``, so the two stay in step. Server-side dry runs keep the
cluster clean; the accepted example is really created, to read the defaults the API server applied.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from tests.support.envtest import EnvTest

from oauth_token_operator import OAuthClientCredentialSpec

GROUP, VERSION, PLURAL = "oauth-token-operator.dev", "v1alpha1", "oauthclientcredentials"

#: The example from API.md, with one of tokenURL / issuerURL (the example shows both to document both).
FULL_EXAMPLE: dict[str, Any] = {
    "tokenURL": "https://idp.example.com/oauth/accesstoken",
    "clientCredentialsSecretRef": {"name": "torch-client", "clientIDKey": "client_id",
                                   "clientSecretKey": "client_secret"},
    "authMethod": "client_secret_basic",
    "privateKeySecretRef": {"name": "torch-jwt-key", "key": "private_key"},
    "signingAlgorithm": "RS256",
    "signingKeyID": "client-rsa",
    "assertionAudience": "https://idp.example.com/realms/apps",
    "scopes": ["api:read", "api:write"],
    "audience": "https://api.example.com",
    "resources": ["https://api.example.com"],
    "extraParams": {"validity_period": "3600"},
    "tls": {
        "caBundleRef": {"kind": "ConfigMap", "name": "idp-ca", "key": "ca.crt"},
        "clientCertificateSecretRef": {"name": "torch-mtls"},
        "insecureSkipVerify": False,
    },
    "target": {
        "secretName": "torch-token",
        "template": {"data": {"Authorization": "Bearer ${access_token}"}, "labels": {"team": "a"},
                     "annotations": {}},
    },
    "rolloutRestartTargets": [{"kind": "Deployment", "name": "torch-client"}],
}

MINIMAL: dict[str, Any] = {
    "tokenURL": "https://idp.example.com/oauth2/token",
    "clientCredentialsSecretRef": {"name": "torch-client"},
    "target": {"secretName": "torch-token"},
}


def minimal(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(MINIMAL)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


#: (id, spec, a fragment of the API server's message that tells the user what to fix)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("both-urls", minimal(issuerURL="https://idp.example.com"), "set exactly one of tokenURL and issuerURL"),
    ("no-url", minimal(tokenURL=None), "set exactly one of tokenURL and issuerURL"),
    ("ftp-url", minimal(tokenURL="ftp://idp.example.com/token"), "spec.tokenURL"),
    ("url-without-scheme", minimal(tokenURL="idp.example.com/token"), "spec.tokenURL"),
    ("issuer-not-http", minimal(tokenURL=None, issuerURL="ldap://idp.example.com"), "spec.issuerURL"),
    ("jwt-without-key", minimal(authMethod="private_key_jwt"), "private_key_jwt needs privateKeySecretRef"),
    ("mtls-without-tls", minimal(authMethod="tls_client_auth"), "tls_client_auth needs tls.clientCertificateSecretRef"),
    ("mtls-without-cert", minimal(authMethod="tls_client_auth", tls={"caBundleRef": {"name": "idp-ca"}}),
     "tls_client_auth needs tls.clientCertificateSecretRef"),
    ("unknown-auth-method", minimal(authMethod="client_secret_hmac"), "spec.authMethod"),
    ("bad-secret-name", minimal(target={"secretName": "Torch_Token"}), "spec.target.secretName"),
    ("no-target", minimal(target=None), "spec.target"),
    ("no-credentials", minimal(clientCredentialsSecretRef=None), "set clientID or clientCredentialsSecretRef"),
    ("client-id-alone-for-a-secret-method", minimal(clientID="app", clientCredentialsSecretRef=None),
     "this authMethod needs clientCredentialsSecretRef"),
    ("client-id-alone-for-secret-jwt", minimal(clientID="app", clientCredentialsSecretRef=None,
                                               authMethod="client_secret_jwt"),
     "this authMethod needs clientCredentialsSecretRef"),
    ("two-client-ids", minimal(clientID="app", clientCredentialsSecretRef={"name": "c", "clientIDKey": "id"}),
     "set the client ID in one place"),
    ("empty-client-id", minimal(clientID=""), "spec.clientID"),
    ("hs-with-private-key-jwt", minimal(authMethod="private_key_jwt", privateKeySecretRef={"name": "k"},
                                        signingAlgorithm="HS256"),
     "HS256, HS384 and HS512 are only for authMethod client_secret_jwt"),
    ("hs-with-basic", minimal(signingAlgorithm="HS512"),
     "HS256, HS384 and HS512 are only for authMethod client_secret_jwt"),
    ("secret-jwt-with-rs256", minimal(authMethod="client_secret_jwt", signingAlgorithm="RS256"),
     "client_secret_jwt signs with signingAlgorithm HS256, HS384 or HS512"),
    ("sa-without-assertion", minimal(authMethod="kubernetes_service_account"),
     "kubernetes_service_account needs serviceAccountAssertion"),
    ("assertion-without-sa", minimal(serviceAccountAssertion={"serviceAccountName": "sa"}),
     "serviceAccountAssertion is only for that authMethod"),
    ("sa-with-assertion-audience", minimal(authMethod="kubernetes_service_account",
                                           serviceAccountAssertion={"serviceAccountName": "sa"},
                                           assertionAudience="https://idp.example.com"),
     "takes its audience from serviceAccountAssertion.audience"),
    ("sa-expiration-too-short", minimal(authMethod="kubernetes_service_account",
                                        serviceAccountAssertion={"serviceAccountName": "sa", "expirationSeconds": 60}),
     "spec.serviceAccountAssertion.expirationSeconds"),
    ("sa-expiration-too-long", minimal(authMethod="kubernetes_service_account",
                                       serviceAccountAssertion={"serviceAccountName": "sa",
                                                                "expirationSeconds": 86400}),
     "spec.serviceAccountAssertion.expirationSeconds"),
    ("sa-bad-name", minimal(authMethod="kubernetes_service_account",
                            serviceAccountAssertion={"serviceAccountName": "Torch_SA"}),
     "spec.serviceAccountAssertion.serviceAccountName"),
    ("sa-without-name", minimal(authMethod="kubernetes_service_account", serviceAccountAssertion={}),
     "spec.serviceAccountAssertion.serviceAccountName"),
    ("bad-expiry-warning", minimal(credentialsExpiryWarning="a week"), "spec.credentialsExpiryWarning"),
    ("bad-expires-at-key", minimal(clientCredentialsSecretRef={"name": "c", "expiresAtKey": "a/b"}),
     "spec.clientCredentialsSecretRef.expiresAtKey"),
    ("bad-credentials-name", minimal(clientCredentialsSecretRef={"name": "team/creds"}),
     "spec.clientCredentialsSecretRef.name"),
    ("unknown-restart-kind", minimal(rolloutRestartTargets=[{"kind": "Pod", "name": "x"}]),
     "spec.rolloutRestartTargets[0].kind"),
    ("renew-percentage-out-of-range", minimal(refreshPolicy={"renewBeforePercentage": 99}),
     "spec.refreshPolicy.renewBeforePercentage"),
    ("reserved-extra-param", minimal(extraParams={"grant_type": "password"}), "extraParams may not set"),
    ("unknown-template-placeholder",
     minimal(target={"secretName": "t", "template": {"data": {"x": "${env}"}}}),
     "target.template.data may only use"),
    ("two-renew-rules", minimal(refreshPolicy={"renewBefore": "10m", "renewBeforePercentage": 30}),
     "at most one of renewBefore and renewBeforePercentage"),
]


def body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OAuthClientCredential", "metadata": {"name": name},
            "spec": spec}


@pytest.fixture(scope="module")
def custom(kube_env: EnvTest) -> Iterator[client.CustomObjectsApi]:
    with kube_env.api_client() as api:
        yield client.CustomObjectsApi(api)


def apply(custom: client.CustomObjectsApi, spec: dict[str, Any], *, dry_run: bool = True) -> dict[str, Any]:
    name = f"v-{uuid.uuid4().hex[:8]}"
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, body(name, spec), dry_run="All" if dry_run else None)
    return cast(dict[str, Any], created)


def read(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    return cast(dict[str, Any], custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name))


@pytest.mark.parametrize(("spec", "says"), [(spec, says) for _, spec, says in INVALID],
                         ids=[case for case, _, _ in INVALID])
def test_rejected_by_the_api_server_and_by_the_models(
        custom: client.CustomObjectsApi, spec: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError):
        OAuthClientCredentialSpec.model_validate(spec)

    with pytest.raises(ApiException) as refused:
        apply(custom, spec)
    assert refused.value.status == 422, refused.value.body
    message = json.loads(str(refused.value.body))["message"]
    assert says in message, f"the API server's message should point at the problem: {message}"


def test_full_api_md_example_is_accepted_and_stored_as_written(custom: client.CustomObjectsApi) -> None:
    OAuthClientCredentialSpec.model_validate(FULL_EXAMPLE)
    created = apply(custom, FULL_EXAMPLE, dry_run=False)
    name = created["metadata"]["name"]
    try:
        stored = read(custom, name)
        assert stored["spec"] == FULL_EXAMPLE, "nothing pruned, nothing altered"
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)


#: The examples of API.md's "Credentials without a static secret" section, as a user would write them.
NO_STATIC_SECRET_EXAMPLES: list[dict[str, Any]] = [
    minimal(clientID="torch-app", authMethod="client_secret_jwt", signingAlgorithm="HS256",
            clientCredentialsSecretRef={"name": "torch-client", "expiresAtKey": "valid_until"},
            credentialsExpiryWarning="336h"),
    minimal(clientID="torch-app", authMethod="client_secret_jwt", signingAlgorithm="HS512"),
    minimal(tokenURL=None, issuerURL="https://sso.example.com/realms/apps", clientID="torch-app",
            clientCredentialsSecretRef=None, authMethod="kubernetes_service_account",
            serviceAccountAssertion={"serviceAccountName": "torch-client",
                                     "audience": "https://sso.example.com/realms/apps", "expirationSeconds": 600}),
    minimal(clientID="torch-app", clientCredentialsSecretRef=None, authMethod="private_key_jwt",
            privateKeySecretRef={"name": "torch-jwt-key", "key": "private_key"}),
    minimal(clientID="torch-app", clientCredentialsSecretRef=None, authMethod="tls_client_auth",
            tls={"clientCertificateSecretRef": {"name": "torch-mtls"}}),
]


@pytest.mark.parametrize("spec", NO_STATIC_SECRET_EXAMPLES, ids=["secret-jwt", "secret-jwt-hs512", "service-account",
                                                                 "private-key-jwt-client-id", "mtls-client-id"])
def test_credentials_without_a_static_secret_are_accepted(custom: client.CustomObjectsApi,
                                                          spec: dict[str, Any]) -> None:
    model = OAuthClientCredentialSpec.model_validate(spec)
    stored = apply(custom, spec)["spec"]
    # What the server stored (with its defaults) is what the models read, and no Secret reference appears.
    assert OAuthClientCredentialSpec.model_validate(stored).model_dump() == model.model_dump()
    assert ("clientCredentialsSecretRef" in stored) == ("clientCredentialsSecretRef" in spec)


def test_service_account_assertion_defaults(custom: client.CustomObjectsApi) -> None:
    spec = minimal(clientID="app", clientCredentialsSecretRef=None, authMethod="kubernetes_service_account",
                   serviceAccountAssertion={"serviceAccountName": "sa"})
    stored = apply(custom, spec)["spec"]
    model = OAuthClientCredentialSpec.model_validate(spec).service_account_assertion
    assert model is not None
    assert stored["serviceAccountAssertion"] == {"serviceAccountName": "sa",
                                                 "expirationSeconds": model.expiration_seconds}


def test_issuer_url_alone_is_accepted(custom: client.CustomObjectsApi) -> None:
    spec = minimal(tokenURL=None, issuerURL="https://idp.example.com/realms/apps")
    OAuthClientCredentialSpec.model_validate(spec)
    assert apply(custom, spec)["spec"]["issuerURL"] == spec["issuerURL"]


def test_defaults_applied_by_the_api_server_match_the_models(custom: client.CustomObjectsApi) -> None:
    created = apply(custom, minimal(tls={"caBundleRef": {"name": "idp-ca"}},
                                    privateKeySecretRef={"name": "jwt-key"}), dry_run=False)
    name = created["metadata"]["name"]
    try:
        spec = read(custom, name)["spec"]
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    assert spec["authMethod"] == "client_secret_basic"
    assert spec["clientCredentialsSecretRef"] == {"name": "torch-client", "clientIDKey": "client_id",
                                                  "clientSecretKey": "client_secret"}
    assert spec["tls"]["caBundleRef"] == {"kind": "ConfigMap", "name": "idp-ca", "key": "ca.crt"}
    assert spec["privateKeySecretRef"] == {"name": "jwt-key", "key": "private_key"}

    model = OAuthClientCredentialSpec.model_validate(MINIMAL)
    assert model.auth_method.value == spec["authMethod"]
    assert model.client_credentials_secret_ref.client_id_key == "client_id"
    assert model.client_credentials_secret_ref.client_secret_key == "client_secret"
    # What the server stored is what the models read: defaulting twice changes nothing.
    assert OAuthClientCredentialSpec.model_validate(spec).model_dump() == OAuthClientCredentialSpec.model_validate(
        minimal(tls={"caBundleRef": {"name": "idp-ca"}}, privateKeySecretRef={"name": "jwt-key"})).model_dump()


