"""The ``oauth-token-operator`` command: ``run`` the operator, request one ``token`` from a file, print the ``crd``.

Flags override ``OAUTH_TOKEN_OPERATOR_*`` environment variables, which override the defaults (pydantic-settings);
``token`` honours exactly the same settings as ``run`` and goes through the same code path (resolve the
references, build the request, classify the answer), so "it works with ``token -f``" means "it works in the
cluster".
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import secrets
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from . import __version__
from .errors import (
    EndpointUnavailable,
    InputError,
    InvalidSpec,
    InvalidTokenResponse,
    OperatorError,
    TokenRequestRefused,
)
from .settings import OperatorSettings

if TYPE_CHECKING:
    from .api import OAuthClientCredential
    from .tokens.client import TokenClient
    from .tokens.model import ClientConfig

__all__ = ["main"]

EXIT_OK, EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_UNAVAILABLE = 0, 2, 3, 4

TOKEN_EXAMPLE = textwrap.dedent("""\
    example (credentials.yaml):
      apiVersion: v1
      kind: Secret
      metadata: {name: torch-client}
      stringData: {client_id: my-consumer-key, client_secret: my-consumer-secret}
      ---
      apiVersion: oauth-token-operator.dev/v1alpha1
      kind: OAuthClientCredential
      metadata: {name: torch}
      spec:
        tokenURL: https://api.example.gov/oauth/accesstoken
        authMethod: client_secret_post
        clientCredentialsSecretRef: {name: torch-client}
        target: {secretName: torch-token}

      $ oauth-token-operator token -f credentials.yaml
      {"tokenType": "Bearer", "expiresAt": "2026-11-24T18:30:00Z", "scope": null, "tokenSHA256": "9f86d0..."}

    authMethod kubernetes_service_account mints the ServiceAccount token in the cluster of $KUBECONFIG (the
    ServiceAccount named in the file, in the resource's namespace); without KUBECONFIG it exits with 2.

    exit status: 0 token issued; 2 bad input (file, spec, missing reference); 3 the server refused
    (401/403, invalid_client, other 4xx); 4 endpoint unavailable or invalid response.
    """)


def _settings(args: argparse.Namespace) -> OperatorSettings:
    overrides: dict[str, Any] = {}
    for field in ("metrics_port", "health_port", "log_format", "log_level", "peering", "peering_priority"):
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    if getattr(args, "allow_insecure_http", False):
        overrides["allow_insecure_http"] = True
    if getattr(args, "namespace", None):
        overrides["namespaces"] = args.namespace
    return OperatorSettings(**overrides)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oauth-token-operator",
        description="Keeps OAuth 2.0 client_credentials access tokens fresh in Kubernetes Secrets.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the cluster from KUBECONFIG or in-cluster")
    run.add_argument("--namespace", action="append", metavar="NS",
                     help="watch only this namespace (repeatable); default: all namespaces")
    run.add_argument("--metrics-port", type=int, help="Prometheus /metrics port; 0 turns metrics off")
    run.add_argument("--health-port", type=int, help="liveness endpoint (/healthz) port; 0 turns it off")
    run.add_argument("--allow-insecure-http", action="store_true", default=None,
                     help="allow plain http:// token URLs (flagged on every such resource)")
    run.add_argument("--peering", metavar="NAME", help="Kopf peering name, for several replicas (HA)")
    run.add_argument("--peering-priority", type=int, metavar="N",
                     help="peering priority of this replica (highest live one works); default: random per start")
    run.add_argument("--log-format", choices=["text", "json"])
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    token = commands.add_parser(
        "token", help="request one token outside any cluster, exactly as the operator would",
        description="Request one token with the operator's own code path. FILE is a multi-document YAML with "
                    "one OAuthClientCredential and every Secret/ConfigMap it references.",
        epilog=TOKEN_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    token.add_argument("-f", "--file", required=True, type=Path, metavar="FILE", help="YAML file ('-': stdin)")
    token.add_argument("--show-token", action="store_true", help="also print the access token itself")
    token.add_argument("--allow-insecure-http", action="store_true", default=None,
                       help="allow a plain http:// token URL")

    commands.add_parser("crd", help="print the CustomResourceDefinition (generated from the API models)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"InvalidSettings: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command == "crd":
        from .crdgen import render_crd_yaml

        sys.stdout.write(render_crd_yaml())
        return EXIT_OK
    if args.command == "token":
        return asyncio.run(_token(args.file, settings, show_token=args.show_token))
    return _run(settings)


def _run(settings: OperatorSettings) -> int:
    import kopf

    from .app import App
    from .handlers import register
    from .logs import configure_logging

    configure_logging(settings)
    app = App.build(settings)
    if settings.metrics_port:
        app.metrics.serve(settings.metrics_port)
    registry = kopf.OperatorRegistry()
    register(registry)
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.peering.lifetime = settings.peering_lifetime_seconds
    # Kopf pauses every peer that sees a live peer of equal priority: replicas of one Deployment share their
    # flags, so unless told otherwise each start draws its own priority (a tie is a 1 in 2**31 event).
    priority = settings.peering_priority
    if priority is None:
        priority = secrets.randbelow(2**31)
    asyncio.run(kopf.operator(
        registry=registry,
        settings=kopf_settings,
        memo=kopf.Memo(app=app),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=settings.peering is None,
        peering_name=settings.peering,
        priority=priority,
        liveness_endpoint=liveness,
    ))
    return EXIT_OK


class _FileObjects:
    """Secrets and ConfigMaps from the token command's file, served like the API server would."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self._objects = documents

    def _find(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        for doc in self._objects:
            meta = doc.get("metadata") or {}
            if doc.get("kind") == kind and meta.get("name") == name and meta.get("namespace", namespace) == namespace:
                return doc
        return None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._find("Secret", namespace, name)

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._find("ConfigMap", namespace, name)


def _load_documents(path: Path) -> list[dict[str, Any]]:
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if not all(isinstance(d, dict) for d in docs):
        raise InvalidSpec(f"{path}: every YAML document must be a Kubernetes object (a mapping)")
    return docs


async def _with_minted_assertion(resource: OAuthClientCredential, config: ClientConfig,
                                 client: TokenClient) -> ClientConfig:
    """authMethod kubernetes_service_account: mint the ServiceAccount token with the cluster of $KUBECONFIG."""
    if not os.environ.get("KUBECONFIG"):
        raise InvalidSpec(
            "authMethod kubernetes_service_account needs a cluster to mint the ServiceAccount token: set "
            "KUBECONFIG to a kubeconfig that may get serviceaccounts and create serviceaccounts/token in "
            f"namespace {resource.metadata.namespace}")
    import kubernetes

    from .kube.client import KubeClient
    from .kube.serviceaccounts import with_service_account_assertion

    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except Exception as exc:  # ConfigException, a missing or unreadable file, bad YAML: all "fix KUBECONFIG"
        raise InvalidSpec(f"cannot use KUBECONFIG to mint the ServiceAccount token ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    kube = KubeClient(kubernetes.client.ApiClient(configuration), threads=1)
    try:
        endpoint = await client.token_endpoint(config)
        return await with_service_account_assertion(kube, resource, config, endpoint)
    finally:
        await kube.close()


async def _token(path: Path, settings: OperatorSettings, *, show_token: bool) -> int:
    from datetime import UTC, datetime

    from .app import token_client
    from .credentials_expiry import credentials_expiry_condition, expiry_warning, note_expired_credentials
    from .kube.target import rfc3339
    from .reconcile import parse_resource
    from .resolve import resolve_client_config
    from .schedule import default_lifetime
    from .tokens.clientauth import Credential, strategy_for

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        try:
            docs = _load_documents(path)
        except OSError as exc:
            raise InvalidSpec(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise InvalidSpec(f"cannot read {path}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            raise InvalidSpec(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        resources = [d for d in docs if d.get("kind") == "OAuthClientCredential"]
        if len(resources) != 1:
            raise InvalidSpec(f"{path} must hold exactly one OAuthClientCredential (found {len(resources)})")
        body = resources[0]
        if not isinstance(body.get("metadata"), dict):
            raise InvalidSpec(f"{path}: the OAuthClientCredential needs metadata with a name")
        body["metadata"].setdefault("namespace", "default")
        resource = parse_resource(body)
        resolved = await resolve_client_config(resource, _FileObjects(docs))
        expiry = credentials_expiry_condition(
            resolved.credentials_expire_at, now=datetime.now(UTC),
            warning=expiry_warning(resource.spec.credentials_expiry_warning, settings.credentials_expiry_warning),
            where=resolved.config.credentials_source or "the credentials Secret")
        if expiry is not None and expiry.status == "True":
            print(f"warning: {expiry.message}", file=sys.stderr)
        lifetime = default_lifetime(resource.spec.refresh_policy, settings)
        client = token_client(settings)
        try:
            config = resolved.config
            if Credential.SERVICE_ACCOUNT_TOKEN in strategy_for(config.auth_method).needs:
                config = await _with_minted_assertion(resource, config, client)
            result = await client.fetch_token(config, default_lifetime=lifetime)
        except TokenRequestRefused as exc:  # after the expiry date, that is nearly always why
            raise note_expired_credentials(exc, resolved.credentials_expire_at, now=datetime.now(UTC)) from None
        finally:
            await client.aclose()
    except OperatorError as exc:
        print(f"{exc.reason}: {exc.message}", file=sys.stderr)
        if isinstance(exc, InputError):
            return EXIT_BAD_INPUT
        if isinstance(exc, TokenRequestRefused):
            return EXIT_REFUSED
        if isinstance(exc, EndpointUnavailable | InvalidTokenResponse):
            return EXIT_UNAVAILABLE
        return EXIT_BAD_INPUT
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    token = result.token
    secret = token.access_token.get_secret_value()
    output: dict[str, Any] = {
        "tokenType": token.token_type,
        "expiresAt": rfc3339(token.expires_at),
        "scope": token.scope,
        "tokenSHA256": hashlib.sha256(secret.encode()).hexdigest(),
    }
    if show_token:
        output["accessToken"] = secret
    print(json.dumps(output))
    return EXIT_OK
