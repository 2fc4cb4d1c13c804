"""The Kubernetes API edge: the calls a refresh makes, on the event loop over aiohttp, with the official client's
configuration.

The official ``kubernetes`` client is synchronous: run in threads, each call cost ~0.9 ms of CPU here against
~0.4 ms for the same GET over aiohttp (already installed: Kopf's own API calls use it), plus the futures crossing
from the threads back to the loop (measured, bench/README.md). So the request/response calls are made here with
aiohttp, while everything about *where* and *as whom* comes from the official client's ``Configuration``: the
server URL, TLS (CA, client certificate, ``verify_ssl``, ``tls_server_name``), a proxy, and the Authorization
header, asked for on every call so that an in-cluster token or a kubeconfig credential that rotates is picked up
(the client's refresh hook). The long-running list+watch streams still use the official client in their own
threads (``kube/watch.py``, ``kube/resource_watch.py``): they are a few connections, not a call per refresh. We
read and send raw JSON, never the client's model objects; the rest of the operator works on plain dicts.

Counts of requests by verb are kept in :attr:`KubeClient.requests` so that the benchmark and the e2e tests can
measure what one refresh costs.

Failures leave this module as the operator's own errors, never as aiohttp's: 404 and 409 as
:class:`NotFound` and :class:`Conflict` (control flow for the caller), 422 as :class:`Invalid` (with the API
server's message, which names fields, never values), any other 4xx as
:class:`~oauth_token_operator.errors.KubernetesRequestRefused`, and everything that waiting may cure (connection
refused or reset, timeouts, 429, 5xx) as :class:`~oauth_token_operator.errors.KubernetesUnavailable`. Every
call has a timeout, so a half-open connection cannot hold one of the pool's connections for good. While the API
server is unreachable, :class:`ApiGate` lets one call through every couple of seconds and fails the others at
once: an outage costs no request storm, and the first successful call tells the workers to try again.
"""

from __future__ import annotations

import asyncio
import collections
import json
import ssl
import time
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import certifi
import kubernetes
import urllib3

from .. import USER_AGENT, api
from ..errors import InvalidSpec, KubernetesRequestRefused, KubernetesUnavailable
from .resource_watch import LEGACY_FINALIZER, ResourceEvent, ResourceWatch
from .watch import Event, MetadataWatch, OnSeed, WatchTarget

__all__ = ["ApiGate", "Conflict", "Invalid", "KubeClient", "NotFound", "kubeconfig_client"]

JSON = dict[str, Any]
#: Connect and read timeouts of every call (seconds): an API server that accepted the connection but never
#: answers must not hold a pool thread longer than this.
CONNECT_TIMEOUT_SECONDS = 5.0
#: The longest message of the API server's we quote (it names fields and rules, never values).
MAX_API_MESSAGE = 300
MERGE_PATCH = "application/merge-patch+json"
#: Who wrote what, as ``kubectl get -o yaml --show-managed-fields`` shows it (managedFields[].manager). Sent
#: explicitly with every write: left to the API server, the manager is the user agent's product name, which for
#: the official client is the generator's ("OpenAPI-Generator"), the same for every Python tool in the cluster.
FIELD_MANAGER = "oauth-token-operator"
#: What ``kubectl patch`` sends by default for built-in kinds (custom resources know only merge patches).
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


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


def classify_status(status: int, reason: str, body: bytes, what: str) -> Exception:
    """What an API server's non-2xx answer means to the operator (see the module docstring)."""
    if status == 404:
        return NotFound(f"{status} {reason}")
    if status == 409:
        return Conflict(f"{status} {reason}")
    if status == 422:
        return Invalid(_api_message(body) or f"{status} {reason}")
    if status == 429 or status >= 500:
        return KubernetesUnavailable(f"the Kubernetes API server did not answer {what} ({status} {reason})")
    detail = _api_message(body)
    return KubernetesRequestRefused(f"the Kubernetes API server refused {what}: {status} {reason}"
                                    + (f": {detail}" if detail else ""))


def _api_message(body: bytes) -> str:
    try:
        status = json.loads(body or b"{}")
    except (ValueError, TypeError):
        return ""
    message = status.get("message") if isinstance(status, dict) else None
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
    return _api_client(configuration)


def _api_client(configuration: kubernetes.client.Configuration) -> kubernetes.client.ApiClient:
    """The official client for ``configuration``, introducing itself as the operator (its list+watch streams
    and our own calls alike)."""
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = USER_AGENT
    return client


def kubeconfig_client() -> KubeClient:
    """A one-connection client from ``$KUBECONFIG`` for the ``token`` command (minting a ServiceAccount token);
    an unusable kubeconfig is the user's input error."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except Exception as exc:  # ConfigException, a missing or unreadable file, bad YAML: all "fix KUBECONFIG"
        raise InvalidSpec(f"cannot use KUBECONFIG to mint the ServiceAccount token ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    return KubeClient(_api_client(configuration), connections=1)


def _ssl_context(configuration: kubernetes.client.Configuration) -> ssl.SSLContext:
    """The TLS the official client would use for ``configuration`` (its ``rest.py``: the CA or certifi's,
    ``verify_ssl``, ``assert_hostname``, the client certificate)."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or certifi.where())
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif configuration.assert_hostname is False:
        context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


class KubeClient:
    """The Kubernetes calls of the refresh cycles, one instance per operator process; used on one event loop."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, connections: int = 16,
                 on_request: Callable[[str, str], None] | None = None, timeout: float = 15.0,
                 gate: ApiGate | None = None) -> None:
        configuration = api_client.configuration
        self._api_client = api_client
        self._configuration = configuration
        self._base = configuration.host.rstrip("/")
        self._ssl = _ssl_context(configuration)
        self._server_hostname: str | None = getattr(configuration, "tls_server_name", None) or None
        self._proxy: str | None = configuration.proxy or None
        self._user_agent = str(api_client.user_agent)
        self._connections = max(connections, 1)
        # Connect and read deadlines of every call, as the official client's (connect, read) timeout pair: a
        # server that accepted the connection but never answers fails the call after ``timeout`` seconds.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS, sock_read=timeout)
        self._http: aiohttp.ClientSession | None = None
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._on_request = on_request
        self.gate = gate or ApiGate()

    def _session(self) -> aiohttp.ClientSession:
        """The connection pool, made on first use: an aiohttp session belongs to the loop it was made on."""
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl, keepalive_timeout=30.0)
            self._http = aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False,
                                               headers={"User-Agent": self._user_agent},
                                               cookie_jar=aiohttp.DummyCookieJar())  # requests share no state
        return self._http

    def _headers(self, content_type: str | None) -> dict[str, str]:
        # auth_settings() asks the configuration for the current credential on every call: its refresh hook
        # re-reads a rotated in-cluster token, or runs a kubeconfig's exec plugin again once the old one expired.
        headers = {"Accept": "application/json"}
        for setting in self._configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    async def _call(self, verb: str, resource: str, method: str, path: str, body: JSON | None = None, *,
                    content_type: str = "application/json") -> bytes:
        what = f"{verb} {resource}"
        self.gate.admit()
        self.requests[verb, resource] += 1
        if self._on_request is not None:
            self._on_request(verb, resource)
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        if method != "GET":
            path += ("&" if "?" in path else "?") + f"fieldManager={FIELD_MANAGER}"
        try:
            async with self._session().request(
                method, self._base + path, data=data, headers=self._headers(None if data is None else content_type),
                proxy=self._proxy, server_hostname=self._server_hostname,
            ) as response:
                payload = await response.read()
                status, reason = response.status, response.reason or ""
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Connection refused or reset, timeouts, TLS failures: the server may be restarting.
            unavailable = KubernetesUnavailable(
                f"the Kubernetes API server did not answer {what} ({type(exc).__name__})")
            self.gate.failed(unavailable)
            raise unavailable from None
        if not 200 <= status < 300:
            error = classify_status(status, reason, payload, what)
            if isinstance(error, KubernetesUnavailable):
                self.gate.failed(error)
            else:
                self.gate.succeeded()  # the server answered
            raise error
        self.gate.succeeded()
        return payload

    @staticmethod
    def _json(body: bytes) -> JSON:
        data = json.loads(body)
        assert isinstance(data, dict)
        return data

    async def get_secret(self, namespace: str, name: str) -> JSON | None:
        try:
            resp = await self._call("get", "secrets", "GET", _core(namespace, "secrets", name))
        except NotFound:
            return None
        return self._json(resp)

    async def get_configmap(self, namespace: str, name: str) -> JSON | None:
        try:
            resp = await self._call("get", "configmaps", "GET", _core(namespace, "configmaps", name))
        except NotFound:
            return None
        return self._json(resp)

    async def create_secret(self, namespace: str, body: JSON) -> JSON:
        resp = await self._call("create", "secrets", "POST", _core(namespace, "secrets"), body)
        return self._json(resp)

    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON:
        """PUT with the body's resourceVersion: raises :class:`Conflict` if the Secret changed meanwhile."""
        resp = await self._call("update", "secrets", "PUT", _core(namespace, "secrets", name), body)
        return self._json(resp)

    async def patch_status(self, namespace: str, name: str, status: JSON) -> None:
        """Merge-patch ``status`` through the status subresource (spec and metadata are untouchable there)."""
        await self._call("patch", "oauthclientcredentials/status", "PATCH", _ours(namespace, name) + "/status",
                         {"status": status}, content_type=MERGE_PATCH)

    async def release_legacy_finalizer(self, event: ResourceEvent) -> None:
        """Remove the finalizer an older version's Kopf daemons put on a resource (only at its deletion, which
        would otherwise hang). A merge patch carrying the resourceVersion it read: if the list changed
        meanwhile (:class:`Conflict`), the next watch event brings the new list."""
        remaining = [f for f in event.finalizers if f != LEGACY_FINALIZER]
        patch = {"metadata": {"finalizers": remaining or None, "resourceVersion": event.resource_version}}
        await self._call("patch", api.PLURAL, "PATCH", _ours(event.namespace, event.name), patch,
                         content_type=MERGE_PATCH)

    async def create_event(self, namespace: str, body: JSON) -> None:
        await self._call("create", "events", "POST", _core(namespace, "events"), body)

    async def restart_workload(self, namespace: str, kind: str, name: str, stamp: str) -> None:
        """What ``kubectl rollout restart`` does: bump a pod-template annotation (a strategic merge patch)."""
        patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        plural = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}[kind]
        path = f"/apis/apps/v1/namespaces/{quote(namespace, safe='')}/{plural}/{quote(name, safe='')}"
        await self._call("patch", plural, "PATCH", path, patch, content_type=STRATEGIC_MERGE_PATCH)

    def metadata_watch(self, target: WatchTarget, *, loop: asyncio.AbstractEventLoop,
                       is_referenced: Callable[[str, str, str], bool],
                       on_events: Callable[[str, list[Event]], None],
                       on_seed: OnSeed | None = None,
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
        if self._http is not None:
            await self._http.close()
        await asyncio.get_running_loop().run_in_executor(None, self._api_client.close)

    # --- ServiceAccount tokens (authMethod kubernetes_service_account; see kube/serviceaccounts.py) ---

    async def get_service_account(self, namespace: str, name: str) -> JSON | None:
        try:
            resp = await self._call("get", "serviceaccounts", "GET", _core(namespace, "serviceaccounts", name))
        except NotFound:
            return None
        return self._json(resp)

    async def create_service_account_token(self, namespace: str, name: str, audience: str,
                                           expiration_seconds: int) -> JSON:
        """A TokenRequest (``serviceaccounts/token``): the answer's ``status.token`` is the minted token."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience], "expirationSeconds": expiration_seconds}}
        resp = await self._call("create", "serviceaccounts/token", "POST",
                                _core(namespace, "serviceaccounts", name) + "/token", body)
        return self._json(resp)


def _core(namespace: str, plural: str, name: str | None = None) -> str:
    """The path of a core (``/api/v1``) collection or object; names are quoted, although the API server's own
    validation already keeps them to DNS labels, so that no value can change the path."""
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/{plural}"
    return path if name is None else f"{path}/{quote(name, safe='')}"


def _ours(namespace: str, name: str) -> str:
    return (f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{quote(namespace, safe='')}/{api.PLURAL}/"
            f"{quote(name, safe='')}")
