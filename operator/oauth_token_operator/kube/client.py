"""The Kubernetes API edge: the official ``kubernetes`` client, run in a bounded thread pool.

The official client is synchronous. Calling it inside Kopf's async handlers would block the event loop (and
with it every other resource's timer and watch), so every call is moved to a dedicated ``ThreadPoolExecutor``
sized by ``settings.kube_client_threads``; the default executor is left alone because Kopf uses it for its own
sync work. We ask for raw JSON (``_preload_content=False``) instead of the client's model objects: it is
several times cheaper per call at thousands of resources, and the rest of the operator works on plain dicts.

Counts of requests by verb are kept in :attr:`KubeClient.requests` so that the benchmark and the e2e tests can
measure what one refresh costs.

Failures leave this module as the operator's own errors, never as the client's exceptions: 404 and 409 as
:class:`NotFound` and :class:`Conflict` (control flow for the caller), 422 as :class:`Invalid` (with the API
server's message, which names fields, never values), any other 4xx as
:class:`~oauth_token_operator.errors.KubernetesRequestRefused`, and everything that waiting may cure (connection
refused or reset, timeouts, 429, 5xx) as :class:`~oauth_token_operator.errors.KubernetesUnavailable`. Every
call has a timeout, so a half-open connection cannot pin one of the pool's threads for good. While the API
server is unreachable, :class:`ApiGate` lets one call through every couple of seconds and fails the others at
once: an outage costs no request storm, and the first successful call tells the workers to try again.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from .. import api
from ..errors import InvalidSpec, KubernetesRequestRefused, KubernetesUnavailable
from .resource_watch import LEGACY_FINALIZER, ResourceEvent, ResourceWatch
from .watch import Event, MetadataWatch, WatchTarget

__all__ = ["ApiGate", "Conflict", "Invalid", "KubeClient", "NotFound", "kubeconfig_client"]

JSON = dict[str, Any]
#: Connect and read timeouts of every call (seconds): an API server that accepted the connection but never
#: answers must not hold a pool thread longer than this.
CONNECT_TIMEOUT_SECONDS = 5.0
#: The longest message of the API server's we quote (it names fields and rules, never values).
MAX_API_MESSAGE = 300


class NotFound(Exception):
    """The object does not exist (404)."""


class Conflict(Exception):
    """Optimistic concurrency failed (409): somebody else wrote the object since we read it."""


class Invalid(Exception):
    """The API server refused the object we sent (422), with its message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiGate:
    """Circuit breaker for the API server itself. Not thread-safe: used on the event loop only.

    Closed, every call goes through. After a call finds the server unreachable, one call per
    ``probe_interval`` seconds is let through (the probe) and the rest fail at once with the last error, until
    a call succeeds; then ``on_recovered`` runs (the workers waiting for the API server retry)."""

    def __init__(self, *, probe_interval: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 on_recovered: Callable[[], None] | None = None) -> None:
        self.probe_interval = probe_interval
        self.on_recovered = on_recovered
        self._clock = clock
        self._error: KubernetesUnavailable | None = None
        self._last_probe = 0.0

    @property
    def down(self) -> bool:
        return self._error is not None

    def admit(self) -> None:
        """Raise the last error unless this call may go to the server."""
        if self._error is None:
            return
        now = self._clock()
        if now - self._last_probe < self.probe_interval:
            raise KubernetesUnavailable(self._error.message)
        self._last_probe = now

    def succeeded(self) -> None:
        if self._error is not None:
            self._error = None
            if self.on_recovered is not None:
                self.on_recovered()

    def failed(self, error: KubernetesUnavailable) -> None:
        if self._error is None:
            self._last_probe = self._clock()
        self._error = error


def classify_api_exception(exc: ApiException, what: str) -> Exception:
    """What an ``ApiException`` means to the operator (see the module docstring)."""
    status = int(exc.status or 0)
    if status == 404:
        return NotFound(f"{status} {exc.reason}")
    if status == 409:
        return Conflict(f"{status} {exc.reason}")
    if status == 422:
        return Invalid(_api_message(exc) or f"{status} {exc.reason}")
    if status == 0 or status == 429 or status >= 500:
        return KubernetesUnavailable(f"the Kubernetes API server did not answer {what} ({status} {exc.reason})")
    detail = _api_message(exc)
    return KubernetesRequestRefused(f"the Kubernetes API server refused {what}: {status} {exc.reason}"
                                    + (f": {detail}" if detail else ""))


def _api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or b"{}")
    except (ValueError, TypeError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str):
        return ""
    return "".join(ch for ch in message if ch.isprintable())[:MAX_API_MESSAGE]


def load_kube_config() -> kubernetes.client.ApiClient:
    """In-cluster service account when running in a pod, else ``KUBECONFIG``/``~/.kube/config``."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    # One quick reconnect for a connection the server closed while idle; never a retry of a read that timed
    # out (it would multiply the timeout) nor of a status (our own backoff decides).
    configuration.retries = urllib3.Retry(total=1, connect=1, read=0, status=0, redirect=0, other=0)
    if not configuration.verify_ssl:
        # urllib3 warns on every request; once is enough (and goes through logging, so JSON logs stay JSON).
        warnings.filterwarnings("once", category=urllib3.exceptions.InsecureRequestWarning)
    return kubernetes.client.ApiClient(configuration)


def kubeconfig_client() -> KubeClient:
    """A one-thread client from ``$KUBECONFIG`` for the ``token`` command (minting a ServiceAccount token);
    an unusable kubeconfig is the user's input error."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except Exception as exc:  # ConfigException, a missing or unreadable file, bad YAML: all "fix KUBECONFIG"
        raise InvalidSpec(f"cannot use KUBECONFIG to mint the ServiceAccount token ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    return KubeClient(kubernetes.client.ApiClient(configuration), threads=1)


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
                 on_request: Callable[[str, str], None] | None = None, timeout: float = 15.0,
                 gate: ApiGate | None = None) -> None:
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
        self._timeout = (CONNECT_TIMEOUT_SECONDS, timeout)
        self.gate = gate or ApiGate()

    async def _call(self, verb: str, resource: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        what = f"{verb} {resource}"
        self.gate.admit()
        self.requests[verb, resource] += 1
        if self._on_request is not None:
            self._on_request(verb, resource)
        loop = asyncio.get_running_loop()
        kwargs.setdefault("_request_timeout", self._timeout)
        try:
            body = await loop.run_in_executor(self._executor, functools.partial(_read_body, fn, *args, **kwargs))
        except ApiException as exc:
            error = classify_api_exception(exc, what)
            if isinstance(error, KubernetesUnavailable):
                self.gate.failed(error)
            else:
                self.gate.succeeded()  # the server answered
            raise error from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # Connection refused or reset, timeouts, TLS failures: the server may be restarting.
            unavailable = KubernetesUnavailable(
                f"the Kubernetes API server did not answer {what} ({type(exc).__name__})")
            self.gate.failed(unavailable)
            raise unavailable from None
        self.gate.succeeded()
        return body

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

    async def release_legacy_finalizer(self, event: ResourceEvent) -> None:
        """Remove the finalizer an older version's Kopf daemons put on a resource (only at its deletion, which
        would otherwise hang). A merge patch carrying the resourceVersion it read: if the list changed
        meanwhile (:class:`Conflict`), the next watch event brings the new list."""
        remaining = [f for f in event.finalizers if f != LEGACY_FINALIZER]
        patch = {"metadata": {"finalizers": remaining or None, "resourceVersion": event.resource_version}}
        await self._call("patch", api.PLURAL, self._custom.patch_namespaced_custom_object, api.GROUP, api.VERSION,
                         event.namespace, api.PLURAL, event.name, patch, _preload_content=False)

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

    def metadata_watch(self, target: WatchTarget, *, loop: asyncio.AbstractEventLoop,
                       is_referenced: Callable[[str, str, str], bool],
                       on_events: Callable[[str, list[Event]], None],
                       on_seed: Callable[[str, dict[tuple[str, str], str]], None] | None = None,
                       on_synced: Callable[[], None] | None = None,
                       count: Callable[[str, bool, int], None] | None = None,
                       is_used: Callable[[str, str, str], bool] | None = None) -> MetadataWatch:
        """A metadata-only list+watch sharing this client's credentials (see ``kube/watch.py``)."""
        return MetadataWatch(self._api_client, target, loop=loop, is_referenced=is_referenced,
                             on_events=on_events, on_seed=on_seed, on_synced=on_synced,
                             on_reconnected=self.gate.succeeded, count=count, is_used=is_used)

    def resource_watch(self, namespace: str | None, *, loop: asyncio.AbstractEventLoop,
                       on_events: Callable[[list[ResourceEvent]], None],
                       on_synced: Callable[[], None] | None = None) -> ResourceWatch:
        """A list+watch of our own resources sharing this client's credentials (see ``kube/resource_watch.py``)."""
        return ResourceWatch(self._api_client, namespace, loop=loop, on_events=on_events, on_synced=on_synced,
                             on_reconnected=self.gate.succeeded)

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
