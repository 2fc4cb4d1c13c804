"""Resolving references into a request configuration, from an in-memory object source."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from oauth_token_operator.api import OAuthClientCredential
from oauth_token_operator.errors import CredentialsNotFound
from oauth_token_operator.resolve import inputs_hash, resolve_client_config


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


async def test_with_the_opt_in_label_required_an_unlabelled_secret_is_not_read_into_a_request() -> None:
    from oauth_token_operator.errors import SecretNotPermitted

    unlabelled = secret("creds", client_id="id", client_secret="CANARY-value")
    with pytest.raises(SecretNotPermitted) as refused:
        await resolve_client_config(resource(), Objects(unlabelled), require_secret_label=True)
    assert "oauth-token-operator.dev/allow-read=true" in refused.value.message
    assert "CANARY" not in refused.value.message
    labelled = secret("creds", client_id="id", client_secret="s")
    labelled["metadata"]["labels"] = {"oauth-token-operator.dev/allow-read": "true"}
    resolved = await resolve_client_config(resource(), Objects(labelled), require_secret_label=True)
    assert resolved.config.client_id == "id"
    # Off (the default), any Secret of the namespace may be referenced, as before.
    assert (await resolve_client_config(resource(), Objects(unlabelled))).config.client_id == "id"


async def test_a_missing_key_does_not_list_the_keys_the_secret_has() -> None:
    objects = Objects(secret("creds", client_id="id", db_password="x", api_key="y"))
    with pytest.raises(CredentialsNotFound) as missing:
        await resolve_client_config(resource(), objects)
    assert "client_secret" in missing.value.message
    assert "db_password" not in missing.value.message and "api_key" not in missing.value.message
