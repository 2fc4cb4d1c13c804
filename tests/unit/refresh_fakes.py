"""In-memory fakes of the Kubernetes and token clients for unit tests of the refresh cycle.

They keep the contracts the real clients keep (resourceVersions, 409 on a stale PUT, 422 for keys the API
server refuses, merge-patched status) so that the cycle can be run in milliseconds through every path.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from oauth_token_operator.endpoint_health import EndpointHealth
from oauth_token_operator.errors import KubernetesUnavailable, OperatorError
from oauth_token_operator.kube.client import Conflict, Invalid, NotFound
from oauth_token_operator.kube.target import seen_target
from oauth_token_operator.metrics import Metrics
from oauth_token_operator.reconcile import Refresher
from oauth_token_operator.settings import OperatorSettings
from oauth_token_operator.state import WorkerState
from oauth_token_operator.tokens.client import TokenResult
from oauth_token_operator.tokens.model import ClientConfig, Token
from oauth_token_operator.workers import WorkerRegistry

JSON = dict[str, Any]
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], JSON] = {}
        self.status: dict[tuple[str, str], JSON] = {}
        self.events: list[JSON] = []
        self.calls: list[tuple[str, str]] = []
        self.down = False
        self.minted: list[tuple[str, str]] = []
        self._rv = 100

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _check(self, verb: str, resource: str) -> None:
        self.calls.append((verb, resource))
        if self.down:
            raise KubernetesUnavailable(f"the Kubernetes API server did not answer {verb} {resource} (fake)")

    def put(self, kind: str, namespace: str, name: str, body: JSON) -> JSON:
        """Create or overwrite an object as a user would (a new resourceVersion)."""
        obj = copy.deepcopy(body)
        obj.setdefault("metadata", {}).update(name=name, namespace=namespace, resourceVersion=self._next_rv())
        self.objects[(kind, namespace, name)] = obj
        return obj

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        obj = self.objects.get(("Secret", namespace, name))
        if obj is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}

    async def get_secret(self, namespace: str, name: str) -> JSON | None:
        self._check("get", "secrets")
        obj = self.objects.get(("Secret", namespace, name))
        return copy.deepcopy(obj) if obj else None

    async def get_configmap(self, namespace: str, name: str) -> JSON | None:
        self._check("get", "configmaps")
        obj = self.objects.get(("ConfigMap", namespace, name))
        return copy.deepcopy(obj) if obj else None

    def _validate(self, body: JSON) -> None:
        name = body["metadata"]["name"]
        bad = [k for k in body.get("data") or {} if not _KEY.match(k)]
        if bad:
            raise Invalid(f'Secret "{name}" is invalid: data[{bad[0]}]: Invalid value')
        labels = [k for k, v in (body["metadata"].get("labels") or {}).items() if not _LABEL_VALUE.match(v)]
        if labels:
            raise Invalid(f'Secret "{name}" is invalid: metadata.labels: Invalid value: a valid label must be an '
                          f'empty string or consist of alphanumeric characters ({labels[0]})')

    async def create_secret(self, namespace: str, body: JSON) -> JSON:
        self._check("create", "secrets")
        key = ("Secret", namespace, body["metadata"]["name"])
        if key in self.objects:
            raise Conflict("409 AlreadyExists")
        self._validate(body)
        return copy.deepcopy(self.put("Secret", namespace, key[2], body))

    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON:
        self._check("update", "secrets")
        current = self.objects.get(("Secret", namespace, name))
        if current is None:
            raise NotFound("404")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict("409")
        self._validate(body)
        return copy.deepcopy(self.put("Secret", namespace, name, body))

    async def patch_status(self, namespace: str, name: str, status: JSON) -> None:
        self._check("patch", "oauthclientcredentials/status")
        self.status.setdefault((namespace, name), {}).update(copy.deepcopy(status))

    async def create_event(self, namespace: str, body: JSON) -> None:
        self._check("create", "events")
        self.events.append(body)

    async def get_service_account(self, namespace: str, name: str) -> JSON | None:
        self._check("get", "serviceaccounts")
        obj = self.objects.get(("ServiceAccount", namespace, name))
        return copy.deepcopy(obj) if obj else None

    async def create_service_account_token(self, namespace: str, name: str, audience: str,
                                           expiration_seconds: int) -> JSON:
        self._check("create", "serviceaccounts/token")
        self.minted.append((name, audience))
        return {"status": {"token": f"MINTED-CANARY-{len(self.minted)}"}}

    async def restart_workload(self, namespace: str, kind: str, name: str, stamp: str) -> None:
        self._check("patch", kind.lower() + "s")

    def ready(self, namespace: str = "ns", name: str = "r") -> JSON:
        conditions = self.status.get((namespace, name), {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), {})

    def event_reasons(self) -> list[str]:
        return [e["reason"] for e in self.events]


@dataclass
class FakeTokens:
    """A token endpoint: issues numbered tokens, or raises what it is told to."""

    lifetime: float = 3600.0
    fail_with: OperatorError | None = None
    access_token: str | None = None
    requests: list[ClientConfig] = field(default_factory=list)
    clock: Clock | None = None

    async def token_endpoint(self, config: ClientConfig) -> str:
        assert config.token_url is not None
        return config.token_url

    async def fetch_token(self, config: ClientConfig, *, default_lifetime: float | None = None) -> TokenResult:
        self.requests.append(config)
        if self.fail_with is not None:
            raise self.fail_with
        now = self.clock() if self.clock else START
        token = Token(access_token=SecretStr(self.access_token or f"token-{len(self.requests)}"),
                      token_type="Bearer", issued_at=now, expires_at=now + timedelta(seconds=self.lifetime),
                      expiry_source="expires_in")
        assert config.token_url is not None
        return TokenResult(token=token, endpoint=config.token_url)


def resource(namespace: str = "ns", name: str = "r", *, generation: int = 1, status: JSON | None = None,
             **spec: Any) -> JSON:
    body: JSON = {
        "apiVersion": "oauth-token-operator.dev/v1alpha1",
        "kind": "OAuthClientCredential",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": generation},
        "spec": {"tokenURL": "https://idp.example/token", "clientCredentialsSecretRef": {"name": "creds"},
                 "target": {"secretName": "tok"}, **spec},
    }
    if status is not None:
        body["status"] = status
    return body


@dataclass
class Harness:
    kube: FakeKube
    tokens: FakeTokens
    clock: Clock
    refresher: Refresher
    state: WorkerState
    settings: OperatorSettings

    listing: bool = False

    async def run(self, body: JSON) -> datetime:
        if self.listing:
            # The new process's metadata watches list before any worker runs (workers.py waits for them):
            # the start-up seed is what the cluster holds at the first run, not at the restart.
            self.listing = False
            registry = WorkerRegistry()
            for kind in ("Secret", "ConfigMap"):
                listed = {(ns, name): obj for (k, ns, name), obj in self.kube.objects.items() if k == kind}
                registry.seed(kind, {key: obj["metadata"]["resourceVersion"] for key, obj in listed.items()},
                              {key: seen for key, obj in listed.items()
                               if kind == "Secret" and (seen := seen_target(obj["metadata"])) is not None})
            self.refresher.on_references = registry.track
        return await self.refresher.run(body, self.state)

    def restart(self) -> None:
        """A new operator process: nothing in memory but what its first listing shows."""
        self.state = WorkerState(uid=self.state.uid)
        self.refresher = _refresher(self.kube, self.tokens, self.clock, self.settings)
        self.listing = True


def _refresher(kube: FakeKube, tokens: FakeTokens, clock: Clock, settings: OperatorSettings) -> Refresher:
    return Refresher(kube=kube, tokens=tokens, health=EndpointHealth(), metrics=Metrics(),  # type: ignore[arg-type]
                     settings=settings, clock=clock)


def harness(**settings: Any) -> Harness:
    kube, clock = FakeKube(), Clock()
    tokens = FakeTokens(clock=clock)
    kube.put("Secret", "ns", "creds", {"data": {"client_id": base64.b64encode(b"id").decode(),
                                                "client_secret": base64.b64encode(b"s3cr3t").decode()}})
    config = OperatorSettings(**settings)
    return Harness(kube=kube, tokens=tokens, clock=clock, refresher=_refresher(kube, tokens, clock, config),
                   state=WorkerState(uid="uid-r"), settings=config)
