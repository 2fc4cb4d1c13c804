"""A small test-side Kubernetes helper over the official client: create, read, wait.

Tests talk to the real API server through this (never to the operator's internals), so what they assert is
what a user would see with kubectl.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "oauth-token-operator.dev", "v1alpha1", "oauthclientcredentials"
REFRESH_ANNOTATION = f"{GROUP}/refresh"
T = TypeVar("T")


class Kube:
    def __init__(self, kubeconfig: Path) -> None:
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=config)
        self.api_client = kubernetes.client.ApiClient(config)
        # Typed as Any on purpose: the client accepts plain dicts at run time, which keeps these tests readable,
        # while its stubs demand model objects.
        self.core: Any = kubernetes.client.CoreV1Api(self.api_client)
        self.custom: Any = kubernetes.client.CustomObjectsApi(self.api_client)
        self.apps: Any = kubernetes.client.AppsV1Api(self.api_client)
        self.rbac: Any = kubernetes.client.RbacAuthorizationV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    # -- namespaces, secrets -----------------------------------------------------------------------------

    def create_namespace(self, name: str) -> None:
        self.core.create_namespace({"metadata": {"name": name}})

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def apply_secret(
        self,
        namespace: str,
        name: str,
        string_data: dict[str, str],
        *,
        secret_type: str = "Opaque",
        labels: dict[str, str] | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "metadata": {"name": name, "labels": labels or {}},
            "type": secret_type,
            "stringData": string_data,
        }
        try:
            self.core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = self.core.read_namespaced_secret(name, namespace)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            body["data"] = {}
            self.core.replace_namespaced_secret(name, namespace, body)

    def apply_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {"metadata": {"name": name}, "data": data}
        try:
            self.core.create_namespaced_config_map(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_config_map(name, namespace, body)

    def delete_secret(self, namespace: str, name: str) -> None:
        self.core.delete_namespaced_secret(name, namespace)

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def secret(self, namespace: str, name: str) -> Any:
        try:
            return self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # -- OAuthClientCredential ---------------------------------------------------------------------------

    def create_occ(
        self, namespace: str, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "OAuthClientCredential",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec,
        }
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        return result

    def get_occ(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            return result
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_occ(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)

    def delete_occ(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def request_refresh(self, namespace: str, name: str) -> None:
        """What `kubectl annotate occ NAME oauth-token-operator.dev/refresh=... --overwrite` does."""
        self.patch_occ(namespace, name, {"metadata": {"annotations": {REFRESH_ANNOTATION: str(time.time_ns())}}})

    def ready(self, namespace: str, name: str) -> dict[str, Any]:
        occ = self.get_occ(namespace, name) or {}
        for condition in (occ.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Ready":
                return dict(condition)
        return {}

    def events(self, namespace: str, name: str) -> list[Any]:
        events = self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        return sorted(events.items, key=lambda e: e.metadata.creation_timestamp)


def wait_for(
    predicate: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.2, message: str = "condition"
) -> T:
    """Poll until ``predicate()`` is truthy; return its value. No fixed sleeps in tests."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
