"""The one reporting funnel: every outcome reaches the user as a condition, Events and metrics, together.

ESO's ``markAsFailed``/``markAsDone`` lesson: a second path that sets only two of the three is a bug waiting to
be found. :meth:`Reporter.report` is the only caller of ``patch_status`` and ``create_event`` in the refresh
logic, and the only place the per-resource metrics change (:meth:`Reporter.resumed` publishes the status a
restarted worker found, before any outcome). Status is written through the typed model
(``model_dump(by_alias=True)``), and only when it changed (a steady refresh costs one status write, a failure
repeated on every retry costs none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .api import Condition, OAuthClientCredentialStatus, ObjectMeta
from .credentials_expiry import CONDITION_TYPE, credentials_expiry_event
from .kube.client import KubeClient, NotFound
from .kube.status import event_body, set_condition
from .metrics import Metrics
from .outcomes import CredentialsNote, Notice, Outcome
from .reasons import EventReason
from .state import WorkerState

__all__ = ["Reporter", "status_patch"]

log = logging.getLogger(__name__)


def status_patch(status: OAuthClientCredentialStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


class Reporter:
    def __init__(self, *, kube: KubeClient, metrics: Metrics, clock: Callable[[], datetime]) -> None:
        self.kube = kube
        self.metrics = metrics
        self.clock = clock

    async def report(self, meta: ObjectMeta, state: WorkerState, outcome: Outcome) -> None:
        """Condition + status, Events, metrics. Raises only ``KubernetesError`` from the status write (the
        caller backs off); Events are best effort."""
        now = self.clock()
        conditions = state.status.conditions
        fields = dict(outcome.status)
        notices = list(outcome.notices)
        if outcome.ready is not None:
            self.metrics.observe_resource(
                namespace=meta.namespace, name=meta.name, ready=outcome.ready, failures=outcome.failures,
                expires_at=outcome.expires_at.timestamp() if outcome.expires_at else None)
            conditions = set_condition(conditions, type="Ready", status=outcome.ready, reason=outcome.reason,
                                       message=outcome.message, now=now, generation=meta.generation)
            fields["observed_generation"] = meta.generation
        if outcome.credentials is not None:
            conditions, notice = self._credentials(meta, conditions, outcome.credentials, now)
            fields["credentials_expire_at"] = outcome.credentials.expires_at
            if notice is not None:
                notices.append(notice)
        updated = state.status.model_copy(update={**fields, "conditions": conditions})
        patch = status_patch(updated)
        if patch != status_patch(state.status):
            try:
                await self.kube.patch_status(meta.namespace, meta.name, patch)
            except NotFound:
                return  # the resource is being deleted
            state.status = updated
        if outcome.ready is not None:
            if outcome.on_transition is not None and str(outcome.reason) != state.last_reason:
                notices.insert(0, outcome.on_transition)
            state.last_reason = str(outcome.reason)
        for notice in notices:
            await self.notify(meta, notice)

    def _credentials(self, meta: ObjectMeta, conditions: list[Condition], note: CredentialsNote,
                     now: datetime) -> tuple[list[Condition], Notice | None]:
        """The CredentialsExpiring condition, its Event on entering the window and on passing the date, and the
        expiry metric: part of the funnel so that none of the three can be missed."""
        self.metrics.observe_credentials_expiry(
            namespace=meta.namespace, name=meta.name,
            expires_at=note.expires_at.timestamp() if note.expires_at else None)
        previous = next((c.reason for c in conditions if c.type == CONDITION_TYPE), None)
        event = credentials_expiry_event(previous, note.condition)
        notice = Notice("Warning", EventReason(event.reason.value), event.message) if event else None
        if note.condition is None:
            return [c for c in conditions if c.type != CONDITION_TYPE], notice
        # The condition's reasons are its own (CredentialsValid / CredentialsExpiring / CredentialsExpired).
        updated = set_condition(conditions, type=CONDITION_TYPE, status=note.condition.status == "True",
                                reason=note.condition.reason, message=note.condition.message, now=now,
                                generation=meta.generation)
        return updated, notice

    def resumed(self, meta: ObjectMeta, state: WorkerState) -> None:
        """A worker took over its resource (start or restart): publish what its status records, so that the
        per-resource metrics count it at once, not only after its next outcome (with fresh tokens, that is a
        refresh interval later). Writes nothing: the status already says it."""
        ready = next((c for c in state.status.conditions if c.type == "Ready"), None)
        expires_at = state.status.expires_at
        self.metrics.observe_resource(
            namespace=meta.namespace, name=meta.name, ready=ready is not None and ready.status == "True",
            failures=state.status.consecutive_failures,
            expires_at=expires_at.timestamp() if expires_at else None)
        credentials = state.status.credentials_expire_at
        if credentials is not None:
            self.metrics.observe_credentials_expiry(namespace=meta.namespace, name=meta.name,
                                                    expires_at=credentials.timestamp())

    async def notify(self, meta: ObjectMeta, notice: Notice) -> None:
        """Post one Event (and count it). Only :meth:`report` and once-only notices call this."""
        self.metrics.events.labels(type=notice.kind, reason=str(notice.reason)).inc()
        try:
            await self.kube.create_event(meta.namespace, event_body(
                meta, kind=notice.kind, reason=notice.reason, message=notice.message, now=self.clock()))
        except Exception as exc:  # an Event is best effort; never let it break a refresh
            log.warning("%s/%s: could not post an Event: %s", meta.namespace, meta.name, type(exc).__name__)
