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
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from . import __version__
from .errors import EXIT_BAD_INPUT, EXIT_OK, InvalidSpec, OperatorError, TokenRequestRefused
from .settings import OperatorSettings

if TYPE_CHECKING:
    from .api import OAuthClientCredential
    from .tokens.client import TokenClient
    from .tokens.model import ClientConfig

__all__ = ["main"]

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
    if getattr(args, "allow_insecure_skip_verify", False):
        overrides["allow_insecure_skip_verify"] = True
    for flag in ("enable_rollout_restarts", "require_secret_label"):
        if getattr(args, flag, False):
            overrides[flag] = True
    if getattr(args, "denied_endpoint_networks", None) is not None:
        overrides["denied_endpoint_networks"] = args.denied_endpoint_networks
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
    _add_endpoint_flags(run)
    run.add_argument("--peering", metavar="NAME", help="Kopf peering name, for several replicas (HA)")
    run.add_argument("--peering-priority", type=int, metavar="N",
                     help="peering priority of this replica (highest live one works); default: random per start")
    run.add_argument("--enable-rollout-restarts", action="store_true", default=None,
                     help="act on spec.rolloutRestartTargets (the install must grant patch on workloads)")
    run.add_argument("--require-secret-label", action="store_true", default=None,
                     help="read only Secrets labelled oauth-token-operator.dev/allow-read=true (SECURITY.md)")
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
    token.add_argument("--require-secret-label", action="store_true", default=None,
                       help="refuse Secrets without the label oauth-token-operator.dev/allow-read=true, as the "
                            "operator does with OAUTH_TOKEN_OPERATOR_REQUIRE_SECRET_LABEL")
    _add_endpoint_flags(token)

    commands.add_parser("crd", help="print the CustomResourceDefinition (generated from the API models)")
    return parser


def _add_endpoint_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--denied-endpoint-networks", metavar="CIDRS",
                        help="comma-separated CIDRs no endpoint may connect to; default: loopback, link-local, "
                             "unspecified, cloud metadata and the API server; '' denies nothing")
    parser.add_argument("--allow-insecure-skip-verify", action="store_true", default=None,
                        help="allow tls.insecureSkipVerify on resources (flagged on every such resource)")


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
    from .kopf_edge.run import run_operator

    run_operator(settings)
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
    from .kube.client import kubeconfig_client
    from .kube.serviceaccounts import with_service_account_assertion

    kube = kubeconfig_client()
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
        resolved = await resolve_client_config(resource, _FileObjects(docs),
                                               require_secret_label=settings.require_secret_label)
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
        return exc.exit_code
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
