"""One resource's refresh cycle: decide, request a token if due, write the Secret, report.

:class:`Refresher` is what the Kopf daemon of each resource calls in a loop; it returns when it next wants to
run. Everything it decides comes from pure functions (``schedule``, ``kube.target``, ``kube.status``,
``tokens``); this module only sequences them and does the I/O.

Cost of a steady refresh (measured in the e2e tests and the benchmark): one token request, one Secret write
(PUT with the resourceVersion we wrote last), one status patch. No reads: the referenced objects are cached
from the last read and invalidated by watch events (``Worker.refs_changed``), the target Secret's version is
the one our own write returned. Every outcome is reported from one place, :meth:`Refresher._report`: status
condition, Event on transitions, metrics, log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from . import schedule
from .api import OAuthClientCredential, ObjectMeta
from .endpoint_health import EndpointHealth
from .errors import InputError, InvalidSpec, OperatorError, TargetSecretConflict, TokenError
from .kube.client import Conflict, KubeClient, NotFound
from .kube.status import event_body, ready_condition
from .kube.target import TargetState, read_target_state, render_target_secret, rfc3339
from .metrics import Metrics
from .reasons import Reason
from .resolve import RefKey, Resolved, inputs_hash, referenced_objects, resolve_client_config
from .settings import OperatorSettings
from .tokens.client import TokenClient, TokenResult

__all__ = ["Refresher", "Worker", "parse_resource"]

JSON = dict[str, Any]
# Re-read the referenced objects at least this often even without watch events (a missed event must not
# keep a rotated secret unseen forever).
REFS_MAX_AGE = 3600.0

log = logging.getLogger(__name__)


def parse_resource(body: JSON) -> OAuthClientCredential:
    """The resource as our models see it; a spec that fails validation is an ``InvalidSpec``."""
    try:
        return OAuthClientCredential.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise InvalidSpec(f"the spec cannot be used: {problems}") from None


@dataclass
class Worker:
    """What one resource's worker remembers between runs. Only a cache: status and the target Secret are
    the durable record, and a fresh Worker (after a restart) rebuilds itself from them."""

    uid: str
    resolved: Resolved | None = None
    resolved_at: float = 0.0
    refs_changed: bool = True
    target: TargetState | None = None
    target_changed: bool = True
    loaded: bool = False
    attempted_inputs: str | None = None
    failures: int = 0
    last_reason: str | None = None
    next_attempt: datetime | None = None
    expires_at: datetime | None = None
    last_status: JSON | None = None
    seen_versions: dict[RefKey, str] = field(default_factory=dict)
    references: set[RefKey] = field(default_factory=set)
    blocked_on: str | None = None  # the endpoint whose open circuit this worker is waiting for
    # While we write the target Secret, its watch event may arrive before our write's response: events are
    # parked here (None: none came; "" : deleted) and compared with the version our write returned.
    writing_target: bool = False
    target_event_during_write: str | None = None


class Refresher:
    """Shared by all workers of one operator process."""

    def __init__(self, *, kube: KubeClient, tokens: TokenClient, health: EndpointHealth,
                 metrics: Metrics, settings: OperatorSettings,
                 on_endpoint_recovered: Callable[[str], None] | None = None,
                 on_references: Callable[[Worker, OAuthClientCredential], None] | None = None) -> None:
        self.on_endpoint_recovered = on_endpoint_recovered
        # Told which objects a worker depends on before it reads any of them, so that a change arriving
        # while it runs (even its very first run) still reaches it.
        self.on_references = on_references
        self.kube = kube
        self.tokens = tokens
        self.health = health
        self.metrics = metrics
        self.settings = settings

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    async def run(self, body: JSON, worker: Worker) -> datetime:
        """One cycle for one resource; returns when to run again (earlier if woken by a change)."""
        now = self.now()
        try:
            resource = parse_resource(body)
        except InvalidSpec as exc:
            meta = body.get("metadata") or {}
            await self._report_invalid(body, exc, now)
            log.warning("%s/%s: %s", meta.get("namespace"), meta.get("name"), exc.message)
            return now + timedelta(seconds=schedule.INPUT_RECHECK_SECONDS)
        if not worker.loaded:
            self._load(resource, worker)
        worker.references = referenced_objects(resource)
        if self.on_references is not None:
            self.on_references(worker, resource)
        try:
            resolved = await self._resolve(resource, worker)
            target = await self._target(resource, worker)
        except InputError as exc:
            worker.attempted_inputs = None
            return await self._failed(resource, worker, exc, now, endpoint=None)
        inputs = inputs_hash(resource, resolved.versions)
        due = self._due(resource, worker, target, inputs, now)
        if due > now:
            return due
        # A change the user made (spec, referenced object, refresh annotation) is a deliberate request: it
        # is sent even while the endpoint's circuit is open, and doubles as a probe.
        requested_by_user = inputs != worker.attempted_inputs and target.has_token
        worker.attempted_inputs = inputs
        endpoint = resource.spec.token_url or resource.spec.issuer_url or ""
        try:
            endpoint = await self.tokens.token_endpoint(resolved.config)
        except OperatorError as exc:
            return await self._failed(resource, worker, exc, now, endpoint=endpoint)
        admission = self.health.acquire(endpoint, now, expires_at=self._current_expiry(worker))
        if not admission.allowed and not requested_by_user:
            # The endpoint is failing for everybody: report its failure without adding to its load.
            assert admission.error is not None and admission.retry_at is not None
            worker.blocked_on = endpoint
            return await self._failed(resource, worker, admission.error, now, endpoint=endpoint,
                                      requested=False, retry_at=admission.retry_at)
        worker.blocked_on = None
        circuit_was_open = self.health.retry_at(endpoint) is not None
        started = time.monotonic()
        try:
            result = await self.tokens.fetch_token(resolved.config,
                                                   default_lifetime=self._default_lifetime(resource))
        except OperatorError as exc:
            self.health.record_failure(endpoint, exc, self.now())
            if isinstance(exc, TokenError):
                self.metrics.observe_request(reason=exc.reason, url=endpoint, seconds=time.monotonic() - started)
            return await self._failed(resource, worker, exc, self.now(), endpoint=endpoint)
        except BaseException:
            self.health.release(endpoint)  # cancelled (resource deleted, operator stopping): free the probe
            raise
        self.health.record_success(endpoint, self.now())
        if circuit_was_open and self.on_endpoint_recovered is not None:
            self.on_endpoint_recovered(endpoint)  # everybody waiting for this endpoint may try now
        self.metrics.observe_request(reason=Reason.TOKEN_ISSUED, url=result.endpoint,
                                     seconds=time.monotonic() - started)
        return await self._succeeded(resource, worker, result, inputs)

    @staticmethod
    def _current_expiry(worker: Worker) -> datetime | None:
        return worker.expires_at or (worker.target.expires_at if worker.target else None)

    # -- inputs -------------------------------------------------------------------------------------------

    def _load(self, resource: OAuthClientCredential, worker: Worker) -> None:
        """Resume from what status recorded (first run after a start or restart)."""
        status = resource.status
        worker.loaded = True
        worker.failures = status.consecutive_failures
        worker.next_attempt = status.next_refresh_time
        worker.expires_at = status.expires_at
        ready = next((c for c in status.conditions if c.type == "Ready"), None)
        worker.last_reason = ready.reason if ready else None
        worker.attempted_inputs = status.inputs_hash
        worker.last_status = resource.status.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def _resolve(self, resource: OAuthClientCredential, worker: Worker) -> Resolved:
        fresh = time.monotonic() - worker.resolved_at < REFS_MAX_AGE
        if worker.resolved is None or worker.refs_changed or not fresh:
            worker.refs_changed = False
            worker.resolved = await resolve_client_config(resource, self.kube)
            worker.resolved_at = time.monotonic()
            worker.seen_versions.update(worker.resolved.versions)
        return worker.resolved

    async def _target(self, resource: OAuthClientCredential, worker: Worker) -> TargetState:
        if worker.target is None or worker.target_changed:
            worker.target_changed = False
            secret = await self.kube.get_secret(resource.metadata.namespace, resource.spec.target.secret_name)
            worker.target = read_target_state(secret, resource.metadata.uid)
            if worker.target.resource_version:
                worker.seen_versions[("Secret", resource.spec.target.secret_name)] = worker.target.resource_version
        if worker.target.exists and not worker.target.ours:
            raise TargetSecretConflict(
                f"Secret {resource.metadata.namespace}/{resource.spec.target.secret_name} exists and was not "
                f"created by this resource; delete or rename it, or choose another target.secretName")
        return worker.target

    def _default_lifetime(self, resource: OAuthClientCredential) -> float:
        return schedule.default_lifetime(resource.spec.refresh_policy, self.settings)

    def _due(self, resource: OAuthClientCredential, worker: Worker, target: TargetState, inputs: str,
             now: datetime) -> datetime:
        """When the next token request is due (``<= now``: at once). Pure given its arguments."""
        if not target.exists or not target.has_token or target.expires_at is None:
            return now  # nothing usable in the Secret yet (or it was deleted): get one
        if inputs != worker.attempted_inputs:
            return now  # the spec, a referenced object or the refresh annotation changed
        if worker.failures > 0 and worker.next_attempt is not None:
            return worker.next_attempt
        issued = target.issued_at or target.expires_at - timedelta(seconds=self._default_lifetime(resource))
        policy = schedule.Policy.from_spec(resource.spec.refresh_policy, self.settings)
        return schedule.next_refresh_time(issued_at=issued, expires_at=target.expires_at, policy=policy,
                                          jitter_key=resource.metadata.uid)

    # -- outcomes -----------------------------------------------------------------------------------------

    async def _succeeded(self, resource: OAuthClientCredential, worker: Worker, result: TokenResult,
                         inputs: str) -> datetime:
        token = result.token
        meta = resource.metadata
        name = resource.spec.target.secret_name
        target = worker.target
        worker.writing_target, worker.target_event_during_write = True, None
        try:
            if target is not None and target.exists:
                body = render_target_secret(resource, token, inputs, target.resource_version)
                written = await self.kube.replace_secret(meta.namespace, name, body)
            else:
                written = await self.kube.create_secret(meta.namespace, render_target_secret(resource, token,
                                                                                             inputs))
        except (Conflict, NotFound):
            # Someone changed or deleted the Secret since we last saw it: look again, then retry at once.
            worker.target_changed = True
            worker.attempted_inputs = None
            return self.now()
        except InvalidSpec as exc:  # a template that cannot be rendered
            return await self._failed(resource, worker, exc, self.now(), endpoint=result.endpoint)
        finally:
            worker.writing_target = False
        worker.target = read_target_state(written, meta.uid)
        if worker.target.resource_version:
            worker.seen_versions[("Secret", name)] = worker.target.resource_version
        parked = worker.target_event_during_write
        if parked is not None and parked != worker.target.resource_version:
            worker.target_changed = True  # somebody else touched the Secret right after our write
        now = self.now()
        policy = schedule.Policy.from_spec(resource.spec.refresh_policy, self.settings)
        next_time = schedule.next_refresh_time(issued_at=token.issued_at, expires_at=token.expires_at,
                                               policy=policy, jitter_key=meta.uid)
        recovered = worker.last_reason is not None and worker.last_reason != Reason.TOKEN_ISSUED
        first = worker.last_reason is None
        worker.failures = 0
        worker.next_attempt = next_time
        worker.expires_at = token.expires_at
        message = (f"token from {result.endpoint} valid until {rfc3339(token.expires_at)} "
                   f"({schedule.humanize_duration((token.expires_at - now).total_seconds())}); "
                   + schedule.describe_next(now=now, next_attempt_at=next_time, expires_at=token.expires_at,
                                            failing=False))
        if token.expiry_source == "default":
            message += "; the server sent no expires_in, so the default lifetime is assumed"
        for warning in result.warnings:
            message += f"; WARNING: {warning}"
        status = {
            "conditions": [ready_condition(self._conditions(worker), ready=True, reason=Reason.TOKEN_ISSUED,
                                           message=message, now=now, generation=meta.generation)],
            "expiresAt": rfc3339(token.expires_at),
            "expirySource": token.expiry_source,
            "lastRefreshTime": rfc3339(token.issued_at),
            "nextRefreshTime": rfc3339(next_time),
            "consecutiveFailures": 0,
            "tokenEndpoint": result.endpoint,
            "scope": token.scope,
            "observedGeneration": meta.generation,
            "inputsHash": inputs,
        }
        event: tuple[Literal["Normal", "Warning"], str, str] | None = None
        if first or recovered:
            verb = "issued" if first else "issued again after failures"
            event = ("Normal", str(Reason.TOKEN_ISSUED),
                     f"Token {verb}; stored in Secret {name}, valid until {rfc3339(token.expires_at)}")
        await self._report(resource, worker, status, event, ready=True)
        for warning in result.warnings:  # flagged on every use, not only on transitions
            await self._event(resource.metadata, "Warning", "InsecureTransport", warning)
        await self._restart_workloads(resource)
        log.info("%s/%s: token issued, expires %s, next refresh %s", meta.namespace, meta.name,
                 rfc3339(token.expires_at), rfc3339(next_time))
        return now if worker.target_changed else next_time

    async def _failed(self, resource: OAuthClientCredential, worker: Worker, error: OperatorError,
                      now: datetime, *, endpoint: str | None, requested: bool = True,
                      retry_at: datetime | None = None) -> datetime:
        meta = resource.metadata
        if requested:
            worker.failures += 1
        expires = self._current_expiry(worker)
        if retry_at is None:
            delay = schedule.retry_delay(error=error, consecutive_failures=max(worker.failures, 1), now=now,
                                         expires_at=expires, jitter_key=meta.uid)
            retry_at = now + timedelta(seconds=delay)
        worker.next_attempt = retry_at
        next_time = retry_at
        if isinstance(error, InputError):
            message = (f"{error.message}; waiting for a change to the resource or the objects it references"
                       + self._validity(expires, now))
        else:
            shared = "" if requested else " (shared by every resource using this endpoint)"
            message = f"{error.message}{shared}; " + schedule.describe_next(
                now=now, next_attempt_at=next_time, expires_at=expires, failing=True)
        status: JSON = {
            "conditions": [ready_condition(self._conditions(worker), ready=False, reason=error.reason,
                                           message=message, now=now, generation=meta.generation)],
            "nextRefreshTime": rfc3339(next_time),
            "consecutiveFailures": worker.failures,
            "observedGeneration": meta.generation,
            "inputsHash": worker.attempted_inputs,
        }
        if endpoint:
            status["tokenEndpoint"] = endpoint
        event: tuple[Literal["Normal", "Warning"], str, str] | None = None
        if worker.last_reason != str(error.reason):
            event = ("Warning", str(error.reason), message)
        await self._report(resource, worker, status, event, ready=False)
        log.warning("%s/%s: %s: %s", meta.namespace, meta.name, error.reason, message)
        return next_time

    @staticmethod
    def _validity(expires: datetime | None, now: datetime) -> str:
        if expires is None:
            return "; no valid token in the target Secret"
        if expires > now:
            return f"; current token valid for {schedule.humanize_duration((expires - now).total_seconds())}"
        return "; the current token has expired"

    def _conditions(self, worker: Worker) -> list[JSON]:
        return list((worker.last_status or {}).get("conditions") or [])

    async def _report(self, resource: OAuthClientCredential, worker: Worker, status: JSON,
                      event: tuple[Literal["Normal", "Warning"], str, str] | None, *, ready: bool) -> None:
        """The one place an outcome reaches the user: status, Event, metrics."""
        meta = resource.metadata
        reason = status["conditions"][0]["reason"]
        merged = {**(worker.last_status or {}), **status}
        if merged != worker.last_status:
            try:
                await self.kube.patch_status(meta.namespace, meta.name, status)
                worker.last_status = merged
            except NotFound:
                pass  # the resource is being deleted
        worker.last_reason = reason
        if event is not None:
            await self._event(resource.metadata, *event)
        self.metrics.observe_resource(
            namespace=meta.namespace, name=meta.name, ready=ready, failures=worker.failures,
            expires_at=worker.expires_at.timestamp() if worker.expires_at else None)

    async def _event(self, meta: ObjectMeta, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        try:
            await self.kube.create_event(meta.namespace, event_body(meta, kind=kind, reason=reason, message=message,
                                                                    now=self.now()))
        except Exception as exc:  # an Event is best effort; never let it break a refresh
            log.warning("%s/%s: could not post an Event: %s", meta.namespace, meta.name, type(exc).__name__)

    async def _report_invalid(self, body: JSON, error: InvalidSpec, now: datetime) -> None:
        """A resource our models cannot even parse: say so in its condition and a Warning Event (once)."""
        meta = body.get("metadata") or {}
        conditions = ((body.get("status") or {}).get("conditions")) or []
        old: JSON = next((c for c in conditions if c.get("type") == "Ready"), {})
        if old.get("reason") == str(error.reason) and old.get("message") == error.message:
            return
        condition = ready_condition(conditions, ready=False, reason=error.reason, message=error.message,
                                    now=now, generation=int(meta.get("generation") or 0))
        try:
            await self.kube.patch_status(meta.get("namespace", ""), meta.get("name", ""),
                                         {"conditions": [condition]})
        except NotFound:
            return
        await self._event(ObjectMeta(name=meta.get("name", ""), namespace=meta.get("namespace", ""),
                                     uid=meta.get("uid", "")), "Warning", str(error.reason), error.message)

    async def _restart_workloads(self, resource: OAuthClientCredential) -> None:
        # Microseconds, unlike kubectl's whole seconds: two tokens within one second (a refresh requested just
        # after the first token) must still change the pod template, or the second token never reaches pods.
        stamp = self.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for target in resource.spec.rollout_restart_targets:
            try:
                await self.kube.restart_workload(resource.metadata.namespace, target.kind, target.name, stamp)
            except Exception as exc:
                await self._event(resource.metadata, "Warning", "RolloutRestartFailed",
                                  f"could not restart {target.kind} {target.name}: {type(exc).__name__}")
