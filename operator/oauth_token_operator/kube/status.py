"""What the resource's status and Events say. Pure functions, no I/O.

Conditions follow the Kubernetes API conventions: ``lastTransitionTime`` changes only when ``status`` flips,
``observedGeneration`` names the spec generation the condition describes. They are the typed
:class:`~oauth_token_operator.api.Condition` model, so a misspelt field is a type error, not a silently dropped
key. Events follow kubectl's shape so that ``kubectl describe`` and ``kubectl events`` show them with the
resource.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from ..api import API_VERSION, KIND, Condition, ObjectMeta
from ..reasons import EventReason, Reason
from .target import rfc3339

__all__ = ["event_body", "set_condition", "whole_seconds"]

JSON = dict[str, Any]
COMPONENT = "oauth-token-operator"


def whole_seconds(moment: datetime) -> datetime:
    """Status times are whole seconds in UTC, as Kubernetes writes them."""
    return moment.astimezone(UTC).replace(microsecond=0)


def set_condition(previous: list[Condition], *, type: str, status: bool, reason: StrEnum, message: str,
                  now: datetime, generation: int) -> list[Condition]:
    """``previous`` with the condition of ``type`` replaced (appended if new); other conditions are kept."""
    text = "True" if status else "False"
    old = next((c for c in previous if c.type == type), None)
    transition = old.last_transition_time if old is not None and old.status == text else None
    condition = Condition(type=type, status=text, reason=str(reason), message=message,
                          last_transition_time=transition or whole_seconds(now), observed_generation=generation)
    kept = [c for c in previous if c.type != type]
    return [condition, *kept] if type == "Ready" else [*kept, condition]


def event_body(meta: ObjectMeta, *, kind: Literal["Normal", "Warning"], reason: Reason | EventReason,
               message: str, now: datetime) -> JSON:
    """A core/v1 Event about the resource with metadata ``meta`` (unique name, like kubectl's ``<name>.<hex>``)."""
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.name}.{time.time_ns():x}", "namespace": meta.namespace},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": meta.name,
            "namespace": meta.namespace,
            "uid": meta.uid,
        },
        "type": kind,
        "reason": str(reason),
        "message": message[:1024],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
    }
