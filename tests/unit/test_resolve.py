"""Resolving references into a request configuration, from an in-memory object source."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from oauth_token_operator.api import OAuthClientCredential
from oauth_token_operator.errors import CredentialsNotFound
from oauth_token_operator.resolve import inputs_hash, referenced_objects, resolve_client_config


class Objects:
    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = list(objects)
        self.reads: list[tuple[str, str, str]] = []

    def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append((kind, namespace, name))
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name and obj["metadata"]["namespace"] == namespace:
                return obj
        return None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("Secret", namespace, name)

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("ConfigMap", namespace, name)


def secret(name: str, rv: str = "1", namespace: str = "team-a", **data: str) -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def resource(**spec: Any) -> OAuthClientCredential:
    body = {"tokenURL": "https://idp/token", "clientCredentialsSecretRef": {"name": "creds"},
            "target": {"secretName": "tok"}, **spec}
    return OAuthClientCredential.model_validate({"metadata": {"name": "r", "namespace": "team-a"}, "spec": body})


async def test_reads_credentials_and_strips_one_trailing_newline() -> None:
    objects = Objects(secret("creds", client_id="id-1\n", client_secret="p@ss:w+rd/100%=&x y\n"))
    resolved = await resolve_client_config(resource(scopes=["a", "b"], extraParams={"validity_period": "60"}),
                                           objects)
    assert resolved.config.client_id == "id-1"
    assert resolved.config.client_secret is not None
    assert resolved.config.client_secret.get_secret_value() == "p@ss:w+rd/100%=&x y"
    assert resolved.config.scopes == ("a", "b")
    assert resolved.config.extra_params == (("validity_period", "60"),)
    assert resolved.versions == {("Secret", "creds"): "1"}
    assert "p@ss" not in repr(resolved)


async def test_only_the_resources_namespace_is_read() -> None:
    objects = Objects(secret("creds", namespace="other", client_id="x", client_secret="y"))
    with pytest.raises(CredentialsNotFound, match="Secret team-a/creds not found"):
        await resolve_client_config(resource(), objects)
    assert all(ns == "team-a" for _, ns, _ in objects.reads)


async def test_missing_key_names_the_keys_present_but_no_values() -> None:
    objects = Objects(secret("creds", client_id="id", secret_value="CANARY"))
    with pytest.raises(CredentialsNotFound) as err:
        await resolve_client_config(resource(), objects)
    assert "no key 'client_secret'" in err.value.message and "secret_value" in err.value.message
    assert "CANARY" not in str(err.value)


async def test_custom_keys_string_data_and_tls_material() -> None:
    creds = {"kind": "Secret", "metadata": {"name": "creds", "namespace": "team-a", "resourceVersion": "3"},
             "stringData": {"key": "consumer", "secret": "s"}}
    ca = {"kind": "ConfigMap", "metadata": {"name": "ca", "namespace": "team-a", "resourceVersion": "9"},
          "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}}
    mtls = secret("mtls", rv="4", **{"tls.crt": "CERT", "tls.key": "KEY"})
    resolved = await resolve_client_config(resource(
        clientCredentialsSecretRef={"name": "creds", "clientIDKey": "key", "clientSecretKey": "secret"},
        tls={"caBundleRef": {"name": "ca"}, "clientCertificateSecretRef": {"name": "mtls"}},
    ), Objects(creds, ca, mtls))
    assert resolved.config.client_id == "consumer"
    assert resolved.config.tls.ca_bundle_pem == "-----BEGIN CERTIFICATE-----"
    assert resolved.config.tls.client_cert_pem == "CERT"
    assert resolved.versions == {("Secret", "creds"): "3", ("ConfigMap", "ca"): "9", ("Secret", "mtls"): "4"}


async def test_tls_client_auth_does_not_need_a_secret_key() -> None:
    objects = Objects(secret("creds", client_id="id"), secret("mtls", **{"tls.crt": "C", "tls.key": "K"}))
    resolved = await resolve_client_config(resource(
        authMethod="tls_client_auth", tls={"clientCertificateSecretRef": {"name": "mtls"}}), objects)
    assert resolved.config.client_secret is None


def test_inputs_hash_changes_with_spec_refs_and_refresh_annotation_only() -> None:
    r = resource()
    base = inputs_hash(r, {("Secret", "creds"): "1"})
    assert base == inputs_hash(resource(), {("Secret", "creds"): "1"})
    assert base != inputs_hash(r, {("Secret", "creds"): "2"})
    assert base != inputs_hash(resource(scopes=["x"]), {("Secret", "creds"): "1"})
    annotated = resource()
    annotated.metadata.annotations["oauth-token-operator.dev/refresh"] = "now"
    assert base != inputs_hash(annotated, {("Secret", "creds"): "1"})
    annotated.metadata.annotations = {"unrelated": "x"}
    assert base == inputs_hash(annotated, {("Secret", "creds"): "1"})


# ----------------------------------------------------------------------- spec.clientID and the new methods


def bare(**spec: Any) -> OAuthClientCredential:
    """A resource without clientCredentialsSecretRef."""
    body = {"tokenURL": "https://idp/token", "target": {"secretName": "tok"}, **spec}
    return OAuthClientCredential.model_validate({"metadata": {"name": "r", "namespace": "team-a"}, "spec": body})


async def test_client_id_in_the_spec_needs_no_secret_for_secret_free_methods() -> None:
    mtls = secret("mtls", **{"tls.crt": "C", "tls.key": "K"})
    key = secret("jwt-key", private_key="PEM")
    cases = [
        (bare(clientID="app", authMethod="tls_client_auth", tls={"clientCertificateSecretRef": {"name": "mtls"}}),
         {("Secret", "mtls")}),
        (bare(clientID="app", authMethod="private_key_jwt", privateKeySecretRef={"name": "jwt-key"}),
         {("Secret", "jwt-key")}),
        (bare(clientID="app", authMethod="kubernetes_service_account",
              serviceAccountAssertion={"serviceAccountName": "sa"}), set()),
    ]
    for occ, refs in cases:
        objects = Objects(mtls, key)
        resolved = await resolve_client_config(occ, objects)
        assert resolved.config.client_id == "app" and resolved.config.client_secret is None
        assert referenced_objects(occ) == refs
        assert {(kind, name) for kind, _, name in objects.reads} == refs, "only what is used is read"
        assert "spec.clientID" in (resolved.config.credentials_source or "")


async def test_client_id_in_the_spec_and_the_secret_in_a_secret() -> None:
    objects = Objects(secret("creds", client_secret="s3cr3t"))  # no client_id key: it is not read
    resolved = await resolve_client_config(resource(clientID="app", authMethod="client_secret_jwt"), objects)
    assert resolved.config.client_id == "app"
    assert resolved.config.client_secret is not None and resolved.config.client_secret.get_secret_value() == "s3cr3t"


async def test_private_key_is_not_read_by_methods_that_do_not_sign_with_it() -> None:
    occ = resource(privateKeySecretRef={"name": "jwt-key"})  # client_secret_basic: the key is unused
    assert referenced_objects(occ) == {("Secret", "creds")}
    objects = Objects(secret("creds", client_id="id", client_secret="s"))
    await resolve_client_config(occ, objects)
    assert ("Secret", "team-a", "jwt-key") not in objects.reads


async def test_credentials_expiry_from_the_default_key_or_a_named_one() -> None:
    plain = await resolve_client_config(resource(), Objects(secret("creds", client_id="i", client_secret="s")))
    assert plain.credentials_expire_at is None

    dated = Objects(secret("creds", client_id="i", client_secret="s", client_secret_expires_at="1798135200"))
    resolved = await resolve_client_config(resource(), dated)
    assert resolved.credentials_expire_at == datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
    assert "1798135200" not in repr(resolved.config)

    never = Objects(secret("creds", client_id="i", client_secret="s", client_secret_expires_at="0"))
    assert (await resolve_client_config(resource(), never)).credentials_expire_at is None

    named = resource(clientCredentialsSecretRef={"name": "creds", "expiresAtKey": "valid_until"})
    rfc3339 = Objects(secret("creds", client_id="i", client_secret="s", valid_until="2026-12-24T18:00:00Z"))
    assert (await resolve_client_config(named, rfc3339)).credentials_expire_at == datetime(2026, 12, 24, 18,
                                                                                           tzinfo=UTC)
    with pytest.raises(CredentialsNotFound, match="no key 'valid_until'"):  # a key named must exist
        await resolve_client_config(named, Objects(secret("creds", client_id="i", client_secret="s")))
    garbage = Objects(secret("creds", client_id="i", client_secret="s", client_secret_expires_at="soon"))
    with pytest.raises(CredentialsNotFound, match=r"Secret team-a/creds key 'client_secret_expires_at'.*RFC 3339"):
        await resolve_client_config(resource(), garbage)
