"""From a resource and the objects it references to a :class:`~.tokens.ClientConfig`.

The operator reads the referenced Secrets and ConfigMaps from the API server, the ``token`` command from a YAML
file; both hand an :class:`ObjectSource` to :func:`resolve_client_config`, so a file that works with
``oauth-token-operator token -f`` works in the cluster. Only the resource's own namespace is ever read: a
resource cannot point at another team's Secret.

Values read from Secrets lose one trailing newline (``echo secret > file`` then ``--from-file`` is the most
common way to create them, and no client secret ends in a newline); nothing else is altered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import SecretStr

from .api import CLIENT_SECRET_EXPIRES_AT_KEY, REFRESH_ANNOTATION, OAuthClientCredential
from .credentials_expiry import parse_credentials_expiry
from .errors import CredentialsNotFound, InvalidSpec
from .tokens.clientauth import Credential, strategy_for
from .tokens.model import ClientConfig, TLSMaterial

__all__ = ["ObjectSource", "RefKey", "Resolved", "inputs_hash", "referenced_objects", "resolve_client_config"]

JSON = dict[str, Any]
RefKey = tuple[str, str]  # (kind, name) in the resource's namespace


class ObjectSource(Protocol):
    """Where referenced objects come from: the API server or a file."""

    async def get_secret(self, namespace: str, name: str) -> JSON | None: ...

    async def get_configmap(self, namespace: str, name: str) -> JSON | None: ...


@dataclass(frozen=True)
class Resolved:
    config: ClientConfig
    versions: dict[RefKey, str]  # resourceVersion of every object read, to notice changes
    credentials_expire_at: datetime | None = None
    """When the client secret expires, as the credentials Secret says (None: it does not say, or never)."""


def referenced_objects(resource: OAuthClientCredential) -> set[RefKey]:
    """Every object the resource reads, whether or not it exists yet (so its creation can be noticed)."""
    spec = resource.spec
    needs = strategy_for(spec.auth_method).needs
    refs: set[RefKey] = set()
    if spec.client_credentials_secret_ref is not None:
        refs.add(("Secret", spec.client_credentials_secret_ref.name))
    if Credential.PRIVATE_KEY in needs and spec.private_key_secret_ref is not None:
        refs.add(("Secret", spec.private_key_secret_ref.name))
    if spec.tls is not None:
        if spec.tls.ca_bundle_ref is not None:
            refs.add((spec.tls.ca_bundle_ref.kind, spec.tls.ca_bundle_ref.name))
        if spec.tls.client_certificate_secret_ref is not None:
            refs.add(("Secret", spec.tls.client_certificate_secret_ref.name))
    return refs


def _strip_newline(value: str) -> str:
    return value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value


class _Reader:
    def __init__(self, source: ObjectSource, namespace: str) -> None:
        self.source = source
        self.namespace = namespace
        self.versions: dict[RefKey, str] = {}
        self._cache: dict[RefKey, JSON] = {}

    async def _object(self, kind: str, name: str) -> JSON:
        key = (kind, name)
        if key not in self._cache:
            getter = self.source.get_secret if kind == "Secret" else self.source.get_configmap
            obj = await getter(self.namespace, name)
            if obj is None:
                raise CredentialsNotFound(f"{kind} {self.namespace}/{name} not found")
            self._cache[key] = obj
            self.versions[key] = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        return self._cache[key]

    async def optional_value(self, kind: str, name: str, key: str) -> str | None:
        """The value of ``key``, or None when the object (which must exist) has no such key."""
        obj = await self._object(kind, name)
        if not any(key in (obj.get(part) or {}) for part in ("stringData", "data", "binaryData")):
            return None
        return await self.value(kind, name, key)

    async def value(self, kind: str, name: str, key: str) -> str:
        obj = await self._object(kind, name)
        string_data = obj.get("stringData") or {}
        data = obj.get("data") or {}
        binary = obj.get("binaryData") or {}
        if key in string_data:
            text = str(string_data[key])
        elif key in data and kind == "ConfigMap":
            text = str(data[key])
        elif key in data or key in binary:
            try:
                text = base64.b64decode(data.get(key) or binary[key], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise CredentialsNotFound(
                    f"{kind} {self.namespace}/{name} key {key} is not valid base64-encoded UTF-8") from None
        else:
            present = sorted({*string_data, *data, *binary})
            raise CredentialsNotFound(
                f"{kind} {self.namespace}/{name} has no key {key!r} (it has: {', '.join(present) or 'none'})")
        text = _strip_newline(text)
        if not text:
            raise CredentialsNotFound(f"{kind} {self.namespace}/{name} key {key!r} is empty")
        return text


async def resolve_client_config(resource: OAuthClientCredential, source: ObjectSource) -> Resolved:
    """Read every referenced object and build the request configuration, or raise CredentialsNotFound."""
    spec = resource.spec
    namespace = resource.metadata.namespace
    strategy = strategy_for(spec.auth_method)
    reader = _Reader(source, namespace)
    creds = spec.client_credentials_secret_ref
    if creds is None and (spec.client_id is None or strategy.needs_client_secret):
        # The models refuse such a spec; this keeps an object stored before the rule from failing obscurely.
        raise InvalidSpec(f"authMethod {spec.auth_method} needs clientCredentialsSecretRef")
    if spec.client_id is not None:
        client_id = spec.client_id
        source_text = f"spec.clientID of OAuthClientCredential {namespace}/{resource.metadata.name}"
    else:
        assert creds is not None
        client_id = await reader.value("Secret", creds.name, creds.client_id_key)
    if creds is not None:
        source_text = f"Secret {namespace}/{creds.name}"
    client_secret: SecretStr | None = None
    if strategy.needs_client_secret:
        assert creds is not None
        client_secret = SecretStr(await reader.value("Secret", creds.name, creds.client_secret_key))
    expires_at: datetime | None = None
    if creds is not None:
        key = creds.expires_at_key or CLIENT_SECRET_EXPIRES_AT_KEY
        read = reader.value if creds.expires_at_key else reader.optional_value
        text = await read("Secret", creds.name, key)
        if text is not None:
            expires_at = parse_credentials_expiry(text, where=f"Secret {namespace}/{creds.name} key {key!r}")
    private_key: SecretStr | None = None
    if Credential.PRIVATE_KEY in strategy.needs and spec.private_key_secret_ref is not None:
        ref = spec.private_key_secret_ref
        private_key = SecretStr(await reader.value("Secret", ref.name, ref.key))
    tls = TLSMaterial()
    if spec.tls is not None:
        ca_pem = cert_pem = None
        key_pem: SecretStr | None = None
        if spec.tls.ca_bundle_ref is not None:
            ca = spec.tls.ca_bundle_ref
            ca_pem = await reader.value(ca.kind, ca.name, ca.key)
        if spec.tls.client_certificate_secret_ref is not None:
            name = spec.tls.client_certificate_secret_ref.name
            cert_pem = await reader.value("Secret", name, "tls.crt")
            key_pem = SecretStr(await reader.value("Secret", name, "tls.key"))
        tls = TLSMaterial(ca_bundle_pem=ca_pem, client_cert_pem=cert_pem, client_key_pem=key_pem,
                          insecure_skip_verify=spec.tls.insecure_skip_verify)
    config = ClientConfig(
        client_id=client_id,
        token_url=spec.token_url,
        issuer_url=spec.issuer_url,
        client_secret=client_secret,
        auth_method=spec.auth_method,
        private_key_pem=private_key,
        signing_algorithm=spec.signing_algorithm,
        signing_key_id=spec.signing_key_id,
        assertion_audience=spec.assertion_audience,
        scopes=tuple(spec.scopes),
        audience=spec.audience,
        resources=tuple(spec.resources),
        extra_params=tuple(sorted(spec.extra_params.items())),
        tls=tls,
        credentials_source=source_text,
    )
    return Resolved(config=config, versions=reader.versions, credentials_expire_at=expires_at)


def inputs_hash(resource: OAuthClientCredential, versions: dict[RefKey, str]) -> str:
    """Identifies what a token was requested with: the spec, the refresh annotation, the referenced objects'
    versions. A change to any of them requests a new token at once. Versions, not contents, are hashed, so no
    function of a secret value is ever stored."""
    material = {
        "spec": resource.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "refresh": resource.metadata.annotations.get(REFRESH_ANNOTATION, ""),
        "refs": sorted(f"{kind}/{name}@{version}" for (kind, name), version in versions.items()),
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return digest[:16]
