"""The Kubernetes API edge: the official ``kubernetes`` client, run in a bounded thread pool.

The official client is synchronous. Calling it inside Kopf's async handlers would block the event loop (and
with it every other resource's timer and watch), so every call is moved to a dedicated ``ThreadPoolExecutor``
sized by ``settings.kube_client_threads``; the default executor is left alone because Kopf uses it for its own
sync work. We ask for raw JSON (``_preload_content=False``) instead of the client's model objects: it is
several times cheaper per call at thousands of resources, and the rest of the operator works on plain dicts.

Counts of requests by verb are kept in :attr:`KubeClient.requests` so that the benchmark and the e2e tests can
measure what one refresh costs.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from .. import api

__all__ = ["Conflict", "KubeClient", "NotFound"]

JSON = dict[str, Any]


class NotFound(Exception):
    """The object does not exist (404)."""


class Conflict(Exception):
    """Optimistic concurrency failed (409): somebody else wrote the object since we read it."""


def load_kube_config() -> kubernetes.client.ApiClient:
    """In-cluster service account when running in a pod, else ``KUBECONFIG``/``~/.kube/config``."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient(configuration)


def _read_body(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    """Call ``fn`` and read the whole response in the worker thread. An unread urllib3 response keeps its
    connection out of the pool, so the next request opened a new TLS connection (measured at 10,000
    resources: 47 % of the operator's CPU in TLS handshakes); reading here also keeps the socket read off
    the event loop."""
    response = fn(*args, **kwargs)
    body: bytes = response.data
    return body


class KubeClient:
    """Async facade over the sync client, one instance per operator process."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, threads: int = 16,
                 on_request: Callable[[str, str], None] | None = None) -> None:
        # The pool's connections must match the threads, or threads queue for a connection.
        api_client.configuration.connection_pool_maxsize = max(threads, 4)
        api_client.rest_client.pool_manager.connection_pool_kw["maxsize"] = max(threads, 4)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._api_client = api_client
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._on_request = on_request

    async def _call(self, verb: str, resource: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        self.requests[verb, resource] += 1
        if self._on_request is not None:
            self._on_request(verb, resource)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(_read_body, fn, *args, **kwargs))
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"{exc.status} {exc.reason}") from None
            if exc.status == 409:
                raise Conflict(f"{exc.status} {exc.reason}") from None
            raise

    @staticmethod
    def _json(body: bytes) -> JSON:
        data = json.loads(body)
        assert isinstance(data, dict)
        return data

    async def get_secret(self, namespace: str, name: str) -> JSON | None:
        try:
            resp = await self._call("get", "secrets", self._core.read_namespaced_secret, name, namespace,
                                    _preload_content=False)
        except NotFound:
            return None
        return self._json(resp)

    async def get_configmap(self, namespace: str, name: str) -> JSON | None:
        try:
            resp = await self._call("get", "configmaps", self._core.read_namespaced_config_map, name, namespace,
                                    _preload_content=False)
        except NotFound:
            return None
        return self._json(resp)

    async def create_secret(self, namespace: str, body: JSON) -> JSON:
        resp = await self._call("create", "secrets", self._core.create_namespaced_secret, namespace, body,
                                _preload_content=False)
        return self._json(resp)

    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON:
        """PUT with the body's resourceVersion: raises :class:`Conflict` if the Secret changed meanwhile."""
        resp = await self._call("update", "secrets", self._core.replace_namespaced_secret, name, namespace, body,
                                _preload_content=False)
        return self._json(resp)

    async def patch_status(self, namespace: str, name: str, status: JSON) -> None:
        """Merge-patch ``status`` through the status subresource (spec and metadata are untouchable there)."""
        await self._call("patch", "oauthclientcredentials/status", self._custom.patch_namespaced_custom_object_status,
                         api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"status": status},
                         _preload_content=False)

    async def create_event(self, namespace: str, body: JSON) -> None:
        await self._call("create", "events", self._core.create_namespaced_event, namespace, body,
                         _preload_content=False)

    async def restart_workload(self, namespace: str, kind: str, name: str, stamp: str) -> None:
        """What ``kubectl rollout restart`` does: bump a pod-template annotation."""
        patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        method = {
            "Deployment": self._apps.patch_namespaced_deployment,
            "StatefulSet": self._apps.patch_namespaced_stateful_set,
            "DaemonSet": self._apps.patch_namespaced_daemon_set,
        }[kind]
        await self._call("patch", kind.lower() + "s", method, name, namespace, patch, _preload_content=False)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.get_running_loop().run_in_executor(None, self._api_client.close)

    # --- ServiceAccount tokens (authMethod kubernetes_service_account; see kube/serviceaccounts.py) ---

    async def get_service_account(self, namespace: str, name: str) -> JSON | None:
        try:
            resp = await self._call("get", "serviceaccounts", self._core.read_namespaced_service_account, name,
                                    namespace, _preload_content=False)
        except NotFound:
            return None
        return self._json(resp)

    async def create_service_account_token(self, namespace: str, name: str, audience: str,
                                           expiration_seconds: int) -> JSON:
        """A TokenRequest (``serviceaccounts/token``): the answer's ``status.token`` is the minted token."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience], "expirationSeconds": expiration_seconds}}
        resp = await self._call("create", "serviceaccounts/token", self._core.create_namespaced_service_account_token,
                                name, namespace, body, _preload_content=False)
        return self._json(resp)
