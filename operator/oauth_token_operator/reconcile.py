"""One resource's refresh cycle: gather the facts, ask ``decide``, carry the decision out, report.

:class:`Refresher` is what the scheduler (``scheduler.py``) runs for each resource; it returns when it next wants
to run. It decides nothing itself: *what* to do comes from :func:`~oauth_token_operator.decide.decide` (an ordered
chain of named policies), *when* from ``schedule``, *what the user is told* from ``outcomes``, and every
outcome leaves through the one funnel :meth:`~oauth_token_operator.report.Reporter.report`. The worker's
memory is :class:`~oauth_token_operator.state.WorkerState`, changed only through its methods.

Cost of a steady refresh (measured in the e2e tests and the benchmark): one token request, one Secret write
(PUT with the resourceVersion we wrote last), one status patch. No reads: the resolved configuration is cached
under a key of the spec and the referenced objects' versions, which watch events keep current; the target
Secret's version is the one our own write returned.

Failures of the Kubernetes API server are the loop's own transient failures (a short backoff of
:data:`~oauth_token_operator.schedule.KUBERNETES_CAP_SECONDS` at most, and an immediate retry when the
client's gate sees the server answer again): they never escape to the scheduler, whose crash backoff is a minute.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from . import outcomes, schedule
from .api import OAuthClientCredential, OAuthClientCredentialStatus, ObjectMeta
from .credentials_expiry import (
    CONDITION_TYPE,
    credentials_expiry_condition,
    expiry_warning,
    next_expiry_transition,
    note_expired_credentials,
)
from .decide import Action, Decision, Facts, Trigger, decide
from .endpoint_health import EndpointHealth, circuit_key
from .errors import (
    InputError,
    InvalidSpec,
    KubernetesError,
    KubernetesUnavailable,
    OperatorError,
    TargetSecretConflict,
    TargetSecretRejected,
    TokenError,
)
from .kube.client import Conflict, Invalid, KubeClient, NotFound
from .kube.serviceaccounts import with_service_account_assertion
from .kube.target import TargetState, read_target_state, render_target_secret, unchanged_target
from .metrics import Metrics
from .outcomes import CredentialsNote, Notice, Outcome
from .reasons import EventReason, Reason
from .report import Reporter
from .resolve import ObjectSource, Resolved, inputs_hash, referenced_objects, resolve_client_config
from .settings import OperatorSettings
from .state import WorkerState
from .tokens.classify import without_userinfo
from .tokens.client import TokenClient
from .tokens.model import Token
from .tokens.tls import tls_material_key

__all__ = ["Refresher", "parse_resource"]

JSON = dict[str, Any]

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


def spec_digest(resource: OAuthClientCredential) -> str:
    """Identifies the spec a resolved configuration was built from (part of that cache's key)."""
    spec = resource.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


class Refresher:
    """Shared by all workers of one operator process."""

    def __init__(self, *, kube: KubeClient, tokens: TokenClient, health: EndpointHealth,
                 metrics: Metrics, settings: OperatorSettings,
                 on_endpoint_recovered: Callable[[str], None] | None = None,
                 on_references: Callable[[WorkerState, OAuthClientCredential], None] | None = None,
                 reads: ObjectSource | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.on_endpoint_recovered = on_endpoint_recovered
        # Told which objects a worker depends on before it reads any of them, so that a change arriving
        # while it runs (even its very first run) still reaches it.
        self.on_references = on_references
        self.kube = kube
        # Where the referenced Secrets and ConfigMaps are read from: shared_reads.SharedReads in the operator
        # (one read per version, however many resources reference an object), the client itself in tests.
        self.reads: ObjectSource = reads if reads is not None else kube  # (an empty cache is falsy)
        self.tokens = tokens
        self.health = health
        self.metrics = metrics
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self.reporter = Reporter(kube=kube, metrics=metrics, clock=self.now)

    def now(self) -> datetime:
        return self._clock()

    async def run(self, body: JSON, state: WorkerState) -> datetime:
        """One cycle for one resource; returns when to run again (earlier if woken by a change)."""
        now = self.now()
        try:
            resource = parse_resource(body)
        except InvalidSpec as exc:
            return await self._unparseable(body, state, exc, now)
        if not state.loaded:
            state.resume(resource.status)
            self.reporter.resumed(resource.metadata, state)
        # Nothing can be read or written while the API server is failing us: wait for the backoff (the
        # client's gate moves it earlier as soon as the server answers again).
        if state.kube_retry_at is not None and state.kube_retry_at > now:
            return state.kube_retry_at
        state.target_name = resource.spec.target.secret_name
        state.references = frozenset(referenced_objects(resource))
        if self.on_references is not None:
            self.on_references(state, resource)
        try:
            due = await self._cycle(resource, state, now)
        except KubernetesError as exc:
            return await self._kube_failed(resource, state, exc)
        state.kube_answered()
        # The CredentialsExpiring condition changes with time alone: wake up for that too.
        transition = self._next_expiry_transition(resource, state, now)
        return min(due, transition) if transition is not None else due

    # -- facts -----------------------------------------------------------------------------------------------

    async def _cycle(self, resource: OAuthClientCredential, state: WorkerState, now: datetime) -> datetime:
        digest = spec_digest(resource)
        # The inputs are known without reading anything when the cache is current, or when the watches report
        # a version for every referenced object (after a restart: from the start-up seed). The objects
        # themselves are read only when a token is to be requested.
        versions = None if state.needs_resolve(digest, state.references) else state.resolved_versions()
        if versions is None:
            versions = state.watched_versions()
        if versions is None:
            failed = await self._resolve(resource, state, digest, now)
            if failed is not None:
                return failed
            versions = state.resolved_versions()
        assert versions is not None
        target = await self._target(resource, state)
        inputs = inputs_hash(resource, versions)
        decision = decide(self._facts(resource, state, target, inputs, now))
        log.debug("%s/%s: %s (%s)", resource.metadata.namespace, resource.metadata.name, decision.action,
                  decision.trigger)
        if decision.action is Action.WAIT:
            assert decision.at is not None
            await self._credentials_changed(resource, state, now)
            return decision.at
        if decision.action is Action.CONFLICT:
            meta = resource.metadata
            return await self._failed(resource, state, TargetSecretConflict(
                f"Secret {meta.namespace}/{resource.spec.target.secret_name} exists and was not created by this "
                f"resource; delete or rename it, or choose another target.secretName"), now, endpoint=None)
        if decision.action is Action.WRITE:
            assert state.held is not None
            endpoint = state.status.token_endpoint or without_userinfo(
                resource.spec.token_url or resource.spec.issuer_url or "")
            notices: tuple[Notice, ...] = ()
            if decision.trigger is Trigger.TARGET_TAMPERED:
                notices = (Notice("Warning", EventReason.TARGET_SECRET_REPAIRED,
                                  f"Secret {resource.spec.target.secret_name} was changed by somebody else; the "
                                  "current token was written back"),)
            return await self._store(resource, state, state.held.token, endpoint=endpoint, warnings=(),
                                     inputs=inputs, notices=notices, new_token=False)
        if state.needs_resolve(digest, state.references):
            failed = await self._resolve(resource, state, digest, now)
            if failed is not None:
                return failed
            fresh = inputs_hash(resource, state.resolved_versions() or {})
            if fresh != inputs:  # changed between the watch event and our read: decide again
                return self.now()
        assert state.resolved is not None
        return await self._request(resource, state, state.resolved, inputs, decision, now)

    async def _resolve(self, resource: OAuthClientCredential, state: WorkerState, digest: str,
                       now: datetime) -> datetime | None:
        """Read the referenced objects into the cache; on an input error report it and return the recheck."""
        try:
            resolved = await resolve_client_config(resource, self.reads,
                                                   require_secret_label=self.settings.require_secret_label)
        except InputError as exc:
            state.resolved = None
            state.attempted_inputs = ""  # any fix (a new version of the object) requests at once
            return await self._failed(resource, state, exc, now, endpoint=None)
        state.store_resolved(digest, resolved)
        return None

    def _facts(self, resource: OAuthClientCredential, state: WorkerState, target: TargetState, inputs: str,
               now: datetime) -> Facts:
        held = state.held
        refresh_at = None
        if target.exists and target.has_token and target.expires_at is not None:
            issued = target.issued_at or target.expires_at - timedelta(seconds=self._default_lifetime(resource))
            refresh_at = schedule.next_refresh_time(
                issued_at=issued, expires_at=target.expires_at, jitter_key=resource.metadata.uid,
                policy=schedule.Policy.from_spec(resource.spec.refresh_policy, self.settings))
        return Facts(
            now=now,
            target=target,
            inputs=inputs,
            attempted_inputs=state.attempted_inputs if state.attempted_inputs is not None else target.inputs,
            failures=state.failures,
            next_attempt=state.next_attempt,
            held_token_valid=held is not None and held.inputs == inputs and held.token.expires_at > now,
            held_token_written=held is not None and held.written,
            write_rejected=state.rejected_inputs == inputs,
            refresh_at=refresh_at,
        )

    async def _target(self, resource: OAuthClientCredential, state: WorkerState) -> TargetState:
        if state.target is None:
            # After a start: a target the listing shows as our last write left it is not read again.
            unchanged = unchanged_target(
                state.take_seen_target(), written_version=state.status.target_resource_version,
                known_version=state.known_versions.get(("Secret", state.target_name)),
                owner_uid=resource.metadata.uid)
            if unchanged is not None:
                state.target_read(unchanged)
        if state.target is None or state.target_stale:
            secret = await self.kube.get_secret(resource.metadata.namespace, resource.spec.target.secret_name)
            state.target_read(read_target_state(secret, resource.metadata.uid))
        assert state.target is not None
        return state.target

    def _default_lifetime(self, resource: OAuthClientCredential) -> float:
        return schedule.default_lifetime(resource.spec.refresh_policy, self.settings)

    # -- actions ---------------------------------------------------------------------------------------------

    async def _request(self, resource: OAuthClientCredential, state: WorkerState, resolved: Resolved,
                       inputs: str, decision: Decision, now: datetime) -> datetime:
        state.attempted_inputs = inputs
        endpoint = without_userinfo(resource.spec.token_url or resource.spec.issuer_url or "")
        try:
            endpoint = await self.tokens.token_endpoint(resolved.config)
        except OperatorError as exc:
            return await self._failed(resource, state, exc, now, endpoint=endpoint)
        circuit = circuit_key(endpoint, tls_material_key(resolved.config.tls))
        admission = self.health.acquire(circuit, now, expires_at=self._current_expiry(state))
        if not admission.allowed and not decision.requested_by_user:
            # The endpoint is failing for everybody who reaches it as we do: report its failure without adding
            # to its load.
            assert admission.error is not None and admission.retry_at is not None
            state.blocked_on = circuit
            return await self._failed(resource, state, admission.error, now, endpoint=endpoint, counted=False,
                                      retry_at=admission.retry_at)
        state.blocked_on = None
        circuit_was_open = self.health.retry_at(circuit) is not None
        started = time.monotonic()
        try:
            # kubernetes_service_account: a fresh ServiceAccount token per request, never cached or stored.
            config = await with_service_account_assertion(self.kube, resource, resolved.config, endpoint)
            result = await self.tokens.fetch_token(config, default_lifetime=self._default_lifetime(resource))
        except KubernetesError:
            self.health.release(circuit)  # minting failed: nothing was sent to the endpoint
            raise
        except OperatorError as exc:
            exc = note_expired_credentials(exc, resolved.credentials_expire_at, now=self.now())
            self.health.record_failure(circuit, exc, self.now())
            if isinstance(exc, TokenError):
                self.metrics.observe_request(reason=exc.reason, url=endpoint, seconds=time.monotonic() - started)
            return await self._failed(resource, state, exc, self.now(), endpoint=endpoint)
        except BaseException:
            self.health.release(circuit)  # cancelled (resource deleted, operator stopping): free the probe
            raise
        self.health.record_success(circuit, self.now())
        if circuit_was_open and self.on_endpoint_recovered is not None:
            self.on_endpoint_recovered(circuit)  # everybody waiting for this circuit may try now
        self.metrics.observe_request(reason=Reason.TOKEN_ISSUED, url=result.endpoint,
                                     seconds=time.monotonic() - started)
        # Held before it is written: a write the API server fails is retried with this token, not a new one.
        state.hold(result.token, inputs, written=False)
        return await self._store(resource, state, result.token, endpoint=result.endpoint, warnings=result.warnings,
                                 inputs=inputs, notices=(), new_token=True)

    async def _store(self, resource: OAuthClientCredential, state: WorkerState, token: Token, *, endpoint: str,
                     warnings: tuple[str, ...], inputs: str, notices: tuple[Notice, ...],
                     new_token: bool) -> datetime:
        """Write ``token`` into the target Secret and report it."""
        meta = resource.metadata
        try:
            written = await self._write_target(resource, state, token, inputs)
        except TargetSecretRejected as exc:
            state.drop_held()
            state.rejected_inputs = inputs  # only a change of the inputs can help: do not request again
            return await self._failed(resource, state, exc, self.now(), endpoint=endpoint)
        if not written:
            return self.now()  # the Secret changed under us: look again (the held token is kept)
        state.hold(token, inputs, written=True)
        state.succeeded(token)
        now = self.now()
        next_refresh = schedule.next_refresh_time(
            issued_at=token.issued_at, expires_at=token.expires_at, jitter_key=meta.uid,
            policy=schedule.Policy.from_spec(resource.spec.refresh_policy, self.settings))
        notes: list[str] = []
        restart_notices: list[Notice] = []
        if resource.spec.rollout_restart_targets:
            if not self.settings.enable_rollout_restarts:
                notes.append("rolloutRestartTargets is ignored: the operator runs without "
                             "--enable-rollout-restarts (OAUTH_TOKEN_OPERATOR_ENABLE_ROLLOUT_RESTARTS)")
                if "rollout-restarts-disabled" not in state.notified:
                    state.notified.add("rollout-restarts-disabled")
                    restart_notices.append(Notice("Warning", EventReason.ROLLOUT_RESTARTS_DISABLED, notes[-1]))
            elif new_token:
                restart_notices.extend(await self._restart_workloads(resource))
        outcome = outcomes.issued(token=token, endpoint=endpoint, secret_name=resource.spec.target.secret_name,
                                  inputs=inputs, next_refresh=next_refresh, now=now, warnings=warnings,
                                  previous_reason=state.last_reason, notes=tuple(notes),
                                  notices=(*notices, *restart_notices),
                                  target_version=state.target.resource_version if state.target else None)
        await self._report(resource, state, outcome)
        log.info("%s/%s: token %s, expires %s, next refresh %s", meta.namespace, meta.name,
                 "issued" if new_token else "written back", outcome.status["expires_at"].isoformat(),
                 outcome.status["next_refresh_time"].isoformat())
        return now if state.target_stale else next_refresh

    async def _write_target(self, resource: OAuthClientCredential, state: WorkerState, token: Token,
                            inputs: str) -> bool:
        """PUT (or create) the target Secret. False when it changed or vanished meanwhile (look again)."""
        meta = resource.metadata
        name = resource.spec.target.secret_name
        target = state.target
        written: JSON | None = None
        state.begin_write()
        try:
            if target is not None and target.exists:
                body = render_target_secret(resource, token, inputs, target.resource_version)
                written = await self.kube.replace_secret(meta.namespace, name, body)
            else:
                written = await self.kube.create_secret(meta.namespace, render_target_secret(resource, token, inputs))
        except (Conflict, NotFound):
            return False
        except Invalid as exc:
            raise TargetSecretRejected(
                f"the Kubernetes API server refused Secret {meta.namespace}/{name}: {exc.message}") from None
        finally:
            state.end_write(read_target_state(written, meta.uid) if written is not None else None)
        return True

    async def _restart_workloads(self, resource: OAuthClientCredential) -> list[Notice]:
        # Microseconds, unlike kubectl's whole seconds: two tokens within one second (a refresh requested just
        # after the first token) must still change the pod template, or the second token never reaches pods.
        stamp = self.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        failed: list[Notice] = []
        for target in resource.spec.rollout_restart_targets:
            try:
                await self.kube.restart_workload(resource.metadata.namespace, target.kind, target.name, stamp)
            except (KubernetesError, NotFound, Conflict, Invalid) as exc:
                detail = exc.message if isinstance(exc, KubernetesError | Invalid) else type(exc).__name__
                failed.append(Notice("Warning", EventReason.ROLLOUT_RESTART_FAILED,
                                     f"could not restart {target.kind} {target.name}: {detail}"))
        return failed

    # -- reporting -------------------------------------------------------------------------------------------

    def _credentials_expiry(self, resource: OAuthClientCredential,
                            state: WorkerState) -> tuple[datetime | None, timedelta, str]:
        """When the client secret expires (from the last read, else from status), the warning window, and
        which Secret says so."""
        resolved = state.resolved
        expires = resolved.credentials_expire_at if resolved is not None else state.status.credentials_expire_at
        where = (resolved.config.credentials_source if resolved is not None else None) or "the credentials Secret"
        warning = expiry_warning(resource.spec.credentials_expiry_warning, self.settings.credentials_expiry_warning)
        return expires, warning, where

    def _credentials_note(self, resource: OAuthClientCredential, state: WorkerState,
                          now: datetime) -> CredentialsNote:
        expires, warning, where = self._credentials_expiry(resource, state)
        return CredentialsNote(expires, credentials_expiry_condition(expires, now=now, warning=warning, where=where))

    async def _report(self, resource: OAuthClientCredential, state: WorkerState, outcome: Outcome) -> None:
        """Every outcome goes to the funnel with what the credentials Secret says about its expiry."""
        note = self._credentials_note(resource, state, self.now())
        await self.reporter.report(resource.metadata, state, dataclasses.replace(outcome, credentials=note))

    async def _credentials_changed(self, resource: OAuthClientCredential, state: WorkerState,
                                   now: datetime) -> None:
        """Report the expiry alone when it entered its warning window or passed while nothing else happened."""
        note = self._credentials_note(resource, state, now)
        stored = next((c for c in state.status.conditions if c.type == CONDITION_TYPE), None)
        unchanged = (note.expires_at == state.status.credentials_expire_at
                     and (stored.reason if stored else None) == (note.condition.reason if note.condition else None))
        if not unchanged:
            await self.reporter.report(resource.metadata, state, outcomes.credentials_only(note))

    def _next_expiry_transition(self, resource: OAuthClientCredential, state: WorkerState,
                                now: datetime) -> datetime | None:
        expires, warning, _ = self._credentials_expiry(resource, state)
        return next_expiry_transition(expires, now=now, warning=warning)

    # -- failures --------------------------------------------------------------------------------------------

    @staticmethod
    def _current_expiry(state: WorkerState) -> datetime | None:
        return state.expires_at or (state.target.expires_at if state.target else None)

    async def _failed(self, resource: OAuthClientCredential, state: WorkerState, error: OperatorError,
                      now: datetime, *, endpoint: str | None, counted: bool = True,
                      retry_at: datetime | None = None) -> datetime:
        meta = resource.metadata
        expires = self._current_expiry(state)
        if isinstance(error, InputError):
            # No backoff state: only a change helps, and a change wakes the worker; the recheck covers a
            # missed watch event.
            retry_at = now + timedelta(seconds=schedule.retry_delay(
                error=error, consecutive_failures=1, now=now, expires_at=expires, jitter_key=meta.uid))
        else:
            if retry_at is None:
                delay = schedule.retry_delay(error=error, consecutive_failures=state.failures + int(counted),
                                             now=now, expires_at=expires, jitter_key=meta.uid)
                retry_at = now + timedelta(seconds=delay)
            state.failed(retry_at=retry_at, counted=counted)
        outcome = outcomes.failure(error=error, now=now, retry_at=retry_at, expires_at=expires,
                                   failures=state.failures, shared=not counted, endpoint=endpoint,
                                   attempted_inputs=state.attempted_inputs)
        await self._report(resource, state, outcome)
        log.warning("%s/%s: %s: %s", meta.namespace, meta.name, error.reason, outcome.message)
        return retry_at

    async def _kube_failed(self, resource: OAuthClientCredential, state: WorkerState,
                           error: KubernetesError) -> datetime:
        meta = resource.metadata
        now = self.now()
        delay = schedule.retry_delay(error=error, consecutive_failures=state.kube_failures + 1, now=now,
                                     expires_at=None, jitter_key=meta.uid)
        retry_at = now + timedelta(seconds=delay)
        state.kube_failed(retry_at)
        log.warning("%s/%s: %s; retrying in %s", meta.namespace, meta.name, error.message,
                    schedule.humanize_duration(delay))
        if not isinstance(error, KubernetesUnavailable):
            # The server answered (RBAC or admission said no): tell the user where they look.
            outcome = outcomes.failure(error=error, now=now, retry_at=retry_at, expires_at=self._current_expiry(state),
                                       failures=state.failures, shared=False, endpoint=None,
                                       attempted_inputs=state.attempted_inputs)
            try:
                await self._report(resource, state, outcome)
            except KubernetesError as again:
                log.warning("%s/%s: could not report it either: %s", meta.namespace, meta.name, again.message)
        return retry_at

    async def _unparseable(self, body: JSON, state: WorkerState, error: InvalidSpec, now: datetime) -> datetime:
        """A resource our models cannot even parse: say so in its condition, an Event and the metrics."""
        raw = body.get("metadata") or {}
        meta = ObjectMeta(name=raw.get("name", ""), namespace=raw.get("namespace", ""), uid=raw.get("uid", ""),
                          generation=int(raw.get("generation") or 0))
        if not state.loaded:
            try:
                status = OAuthClientCredentialStatus.model_validate(body.get("status") or {})
            except ValidationError:
                status = OAuthClientCredentialStatus()
            state.resume(status)
        try:
            await self.reporter.report(meta, state, outcomes.unparseable(error))
        except KubernetesError as exc:
            log.warning("%s/%s: could not report an unparseable resource: %s", meta.namespace, meta.name,
                        exc.message)
        log.warning("%s/%s: %s", meta.namespace, meta.name, error.message)
        return now + timedelta(seconds=schedule.INPUT_RECHECK_SECONDS)
