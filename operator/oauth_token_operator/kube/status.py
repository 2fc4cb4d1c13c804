"""What the resource's status and Events say. Pure functions, no I/O.

Conditions follow the Kubernetes API conventions: ``lastTransitionTime`` changes only when ``status`` flips,
``observedGeneration`` names the spec generation the condition describes. Events follow kubectl's shape so
that ``kubectl describe`` and ``kubectl events`` show them with the resource.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from ..api import API_VERSION, KIND, ObjectMeta
from ..reasons import Reason
from .target import rfc3339

__all__ = ["event_body", "ready_condition"]

JSON = dict[str, Any]
COMPONENT = "oauth-token-operator"


def ready_condition(previous: list[JSON], *, ready: bool, reason: Reason, message: str, now: datetime,
                    generation: int) -> JSON:
    status = "True" if ready else "False"
    old = next((c for c in previous if c.get("type") == "Ready"), None)
    transition = old.get("lastTransitionTime") if old and old.get("status") == status else None
    return {
        "type": "Ready",
        "status": status,
        "reason": str(reason),
        "message": message,
        "lastTransitionTime": transition or rfc3339(now),
        "observedGeneration": generation,
    }


def event_body(meta: ObjectMeta, *, kind: Literal["Normal", "Warning"], reason: str, message: str,
               now: datetime) -> JSON:
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
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
    }
