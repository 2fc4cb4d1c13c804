"""What one resource's worker remembers between runs, and every change to it: the one owner of that state.

Only a cache: the resource's status and the target Secret are the durable record, and a fresh
:class:`WorkerState` (after a restart) rebuilds itself from them (:meth:`WorkerState.resume`). The refresh cycle
(``reconcile``) and the watch side (``workers``) both change it, but only through the methods below, so that a
protocol such as "an echo of our own write wakes nobody" lives in one place.

Caches here are keyed on everything they derive from (``STYLE.md``): the resolved client configuration is
valid for one spec digest and one set of referenced objects' versions (:meth:`WorkerState.needs_resolve`);
a newer version seen by the watch, a different spec or a deleted object makes it stale, whatever the clock says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from .api import OAuthClientCredentialStatus
from .kube.target import SeenTarget, TargetState
from .resolve import RefKey, Resolved
from .tokens.model import Token

__all__ = ["HeldToken", "WorkerState"]

# Re-read the referenced objects at least this often even without watch events: a missed event must not keep
# a rotated secret unseen forever.
REFS_MAX_AGE = 3600.0


@dataclass(frozen=True)
class HeldToken:
    """A token this process obtained, kept in memory so that a failed write or a tampered target Secret can
    be put right without asking the server for another one."""

    token: Token
    inputs: str
    written: bool


@dataclass
class WorkerState:
    uid: str
    loaded: bool = False
    # --- what the resource reads -------------------------------------------------------------------------
    references: frozenset[RefKey] = frozenset()
    resolved: Resolved | None = None
    resolved_spec: str | None = None
    resolved_at: float = 0.0
    # The newest version of each referenced object (and of the target) that a read or a watch event showed;
    # None: deleted.
    known_versions: dict[RefKey, str | None] = field(default_factory=dict)
    # --- the target Secret ---------------------------------------------------------------------------------
    target_name: str = ""
    target: TargetState | None = None
    target_stale: bool = True
    # After a start: the target as the first listing showed it (kube/target.unchanged_target), until used.
    seen_target: SeenTarget | None = None
    writing_target: bool = False
    # While we write the target Secret, its watch event may arrive before our write's response: events are
    # parked here (None: none came; "": deleted) and compared with the version our write returned.
    target_event_during_write: str | None = None
    held: HeldToken | None = None
    rejected_inputs: str | None = None  # inputs whose target Secret the API server refused (422)
    # --- history -------------------------------------------------------------------------------------------
    attempted_inputs: str | None = None
    failures: int = 0
    next_attempt: datetime | None = None
    kube_failures: int = 0
    kube_retry_at: datetime | None = None
    last_reason: str | None = None
    expires_at: datetime | None = None
    status: OAuthClientCredentialStatus = field(default_factory=OAuthClientCredentialStatus)
    blocked_on: str | None = None  # the open circuit (endpoint_health.circuit_key) this worker is waiting for
    notified: set[str] = field(default_factory=set)  # once-only Events already posted (by key)

    # -- resuming ------------------------------------------------------------------------------------------

    def resume(self, status: OAuthClientCredentialStatus) -> None:
        """First run after a start or restart: continue from what status recorded."""
        self.loaded = True
        self.failures = status.consecutive_failures
        self.next_attempt = status.next_refresh_time if status.consecutive_failures else None
        self.expires_at = status.expires_at
        ready = next((c for c in status.conditions if c.type == "Ready"), None)
        self.last_reason = ready.reason if ready else None
        self.attempted_inputs = status.inputs_hash
        self.status = status

    # -- referenced objects ----------------------------------------------------------------------------------

    def needs_resolve(self, spec_digest: str, references: frozenset[RefKey]) -> bool:
        """Whether the cached client configuration is stale for this spec and these referenced objects."""
        resolved = self.resolved
        if resolved is None or self.resolved_spec != spec_digest or set(resolved.versions) != references:
            return True
        if time.monotonic() - self.resolved_at >= REFS_MAX_AGE:
            return True
        return any(self.known_versions.get(ref, version) != version for ref, version in resolved.versions.items())

    def resolved_versions(self) -> dict[RefKey, str] | None:
        return dict(self.resolved.versions) if self.resolved is not None else None

    def watched_versions(self) -> dict[RefKey, str] | None:
        """The versions of every referenced object as the watches (or the start-up seed) report them, when
        all are known and none was deleted: enough to tell whether the inputs changed without reading them."""
        versions: dict[RefKey, str] = {}
        for ref in self.references:
            version = self.known_versions.get(ref)
            if version is None:
                return None
            versions[ref] = version
        return versions

    def store_resolved(self, spec_digest: str, resolved: Resolved) -> None:
        self.resolved, self.resolved_spec, self.resolved_at = resolved, spec_digest, time.monotonic()
        self.known_versions.update(resolved.versions)

    # -- watch events -----------------------------------------------------------------------------------------

    def observe(self, key: RefKey, version: str | None) -> bool:
        """A watch event for an object this worker reads or writes (``version`` None: deleted). Returns
        whether the worker should wake: only for a change it has not seen (its own write coming back, or the
        listing after a restart, wakes nobody)."""
        is_target = key == ("Secret", self.target_name)
        if version is not None and self.known_versions.get(key) == version:
            return False
        if is_target and self.writing_target:
            # Probably our own write, echoed before its response arrived: the writer decides.
            self.target_event_during_write = version or ""
            return False
        self.known_versions[key] = version
        if is_target:
            self.target_stale = True
        return True

    # -- writing the target -------------------------------------------------------------------------------------

    def begin_write(self) -> None:
        self.writing_target, self.target_event_during_write = True, None

    def end_write(self, written: TargetState | None) -> None:
        """Our write finished (``written``: what the API server returned; None: it failed)."""
        self.writing_target = False
        parked, self.target_event_during_write = self.target_event_during_write, None
        if written is None:
            self.target_stale = True
            return
        self.target = written
        self.known_versions[("Secret", self.target_name)] = written.resource_version
        # Somebody else touched the Secret right after our write: look again.
        self.target_stale = parked is not None and parked != written.resource_version

    def take_seen_target(self) -> SeenTarget | None:
        seen, self.seen_target = self.seen_target, None
        return seen

    def target_read(self, target: TargetState) -> None:
        self.target, self.target_stale = target, False
        if target.resource_version:
            self.known_versions[("Secret", self.target_name)] = target.resource_version

    def hold(self, token: Token, inputs: str, *, written: bool) -> None:
        self.held = HeldToken(token=token, inputs=inputs, written=written)

    def drop_held(self) -> None:
        self.held = None

    # -- outcomes ---------------------------------------------------------------------------------------------------

    def succeeded(self, token: Token) -> None:
        """A token is in the target Secret. The next refresh time is not stored: the schedule computes it
        from the Secret's own record of the token (one source of truth)."""
        self.failures = 0
        self.next_attempt = None
        self.expires_at = token.expires_at
        self.blocked_on = None

    def failed(self, *, retry_at: datetime, counted: bool) -> None:
        """A failure of the token request (``counted``) or one shared with other resources (not counted)."""
        if counted:
            self.failures += 1
        self.next_attempt = retry_at

    def kube_answered(self) -> None:
        """A whole cycle went by without an API server failure."""
        self.kube_failures, self.kube_retry_at = 0, None

    def kube_failed(self, retry_at: datetime) -> None:
        self.kube_failures += 1
        self.kube_retry_at = retry_at

    def kube_recovered(self, at: datetime) -> None:
        """The API server answers again: retry at ``at`` rather than at the end of the backoff."""
        if self.kube_retry_at is not None:
            self.kube_retry_at = at
