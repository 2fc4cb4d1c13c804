"""What the target Secret contains, and what an existing one tells us. Pure functions, no I/O.

The target Secret is ours only if it carries our managed-by label *and* an ownerReference to this very
resource (uid): a Secret that merely has the right name is someone else's, and we report the clash
(``TargetSecretConflict``) instead of overwriting it. Besides the token, the Secret's annotations record when
the token was issued and expires and which inputs it was requested with, so that a restarted operator (or one
whose status was lost) resumes the schedule instead of asking for a new token.

The annotation ``data-sha256`` is a digest of everything we wrote that a consumer or the schedule relies on
(the data and those three annotations): a Secret whose content no longer matches it was changed by somebody
else, and is repaired (:attr:`TargetState.intact`). It is computed over values already stored in the same
Secret, so it tells nobody anything the Secret does not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..api import GROUP, TEMPLATE_PLACEHOLDERS, OAuthClientCredential
from ..errors import InvalidSpec
from ..tokens.model import Token

__all__ = [
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "PLACEHOLDERS",
    "SeenTarget",
    "TargetState",
    "parse_time",
    "read_target_state",
    "render_target_secret",
    "rfc3339",
    "seen_target",
    "substitute",
    "unchanged_target",
]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "oauth-token-operator"
ISSUED_AT_ANNOTATION = f"{GROUP}/issued-at"
EXPIRES_AT_ANNOTATION = f"{GROUP}/expires-at"
INPUTS_ANNOTATION = f"{GROUP}/inputs-hash"
DIGEST_ANNOTATION = f"{GROUP}/data-sha256"
PLACEHOLDERS = TEMPLATE_PLACEHOLDERS
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")

JSON = dict[str, Any]


def rfc3339(moment: datetime) -> str:
    """UTC, second precision, ``Z`` suffix: what Kubernetes and most parsers expect."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as we write it (annotations, status), or None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def substitute(template: str, values: dict[str, str]) -> str:
    """Plain ``${name}`` replacement from the fixed list; anything else is an error, nothing is evaluated."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise InvalidSpec(f"target.template uses ${{{name}}}; only {', '.join(PLACEHOLDERS)} exist")
        return values[name]

    return _PLACEHOLDER.sub(replace, template)


def _data(resource: OAuthClientCredential, token: Token) -> dict[str, str]:
    values = {
        "access_token": token.access_token.get_secret_value(),
        "token_type": token.token_type,
        "expires_at": rfc3339(token.expires_at),
        "scope": token.scope or "",
    }
    template = resource.spec.target.template
    if template is None or template.data is None:
        return {k: values[k] for k in ("access_token", "token_type", "expires_at")}
    return {key: substitute(value, values) for key, value in template.data.items()}


def render_target_secret(resource: OAuthClientCredential, token: Token, inputs: str,
                         resource_version: str | None = None) -> JSON:
    """The full target Secret for a new token (a PUT body when ``resource_version`` is given)."""
    template = resource.spec.target.template
    labels = {**(template.labels if template else {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    annotations = {
        **(template.annotations if template else {}),
        ISSUED_AT_ANNOTATION: rfc3339(token.issued_at),
        EXPIRES_AT_ANNOTATION: rfc3339(token.expires_at),
        INPUTS_ANNOTATION: inputs,
    }
    metadata: JSON = {
        "name": resource.spec.target.secret_name,
        "namespace": resource.metadata.namespace,
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [{
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "name": resource.metadata.name,
            "uid": resource.metadata.uid,
            "controller": True,
        }],
    }
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    data = {k: base64.b64encode(v.encode()).decode() for k, v in _data(resource, token).items()}
    annotations[DIGEST_ANNOTATION] = content_digest(data, annotations)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata, "data": data}


def content_digest(data: dict[str, str], annotations: dict[str, str]) -> str:
    """The digest recorded in ``data-sha256``: the (base64) data and our schedule annotations."""
    material = {
        "data": data,
        "annotations": {k: annotations.get(k) for k in (ISSUED_AT_ANNOTATION, EXPIRES_AT_ANNOTATION,
                                                         INPUTS_ANNOTATION)},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class TargetState:
    """What an existing target Secret (or its absence) means to the operator."""

    exists: bool
    ours: bool
    resource_version: str | None = None
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    inputs: str | None = None
    has_token: bool = False
    intact: bool = False
    """The data and schedule annotations are exactly what we wrote (``data-sha256`` matches)."""


def read_target_state(secret: JSON | None, owner_uid: str) -> TargetState:
    if secret is None:
        return TargetState(exists=False, ours=False)
    meta = secret.get("metadata") or {}
    labels = meta.get("labels") or {}
    owners = meta.get("ownerReferences") or []
    ours = labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and any(o.get("uid") == owner_uid for o in owners)
    annotations = meta.get("annotations") or {}
    data = secret.get("data") or {}
    recorded = annotations.get(DIGEST_ANNOTATION)
    # Secrets written before the digest existed count as intact while they hold data (an upgrade must not
    # cost every resource a token request); the next write adds the digest.
    intact = bool(data) if recorded is None else recorded == content_digest(data, annotations)
    return TargetState(
        exists=True,
        ours=ours,
        resource_version=meta.get("resourceVersion"),
        issued_at=parse_time(annotations.get(ISSUED_AT_ANNOTATION)),
        expires_at=parse_time(annotations.get(EXPIRES_AT_ANNOTATION)),
        inputs=annotations.get(INPUTS_ANNOTATION),
        has_token=bool(data),
        intact=intact,
    )


@dataclass(frozen=True, slots=True)
class SeenTarget:
    """One of our target Secrets as a metadata listing shows it (no data): kept, compactly, for the minutes
    after a start in which workers take over (``workers.SEED_TTL_SECONDS``), so that a target nobody touched
    since our last write need not be read again (:func:`unchanged_target`)."""

    resource_version: str
    owner_uids: tuple[str, ...]
    issued_at: str | None
    expires_at: str | None
    inputs: str | None


def seen_target(metadata: JSON) -> SeenTarget | None:
    """The listing's metadata of a Secret that carries our managed-by label; None for anybody else's."""
    if (metadata.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
        return None
    annotations = metadata.get("annotations") or {}
    return SeenTarget(
        resource_version=str(metadata.get("resourceVersion") or ""),
        owner_uids=tuple(str(o.get("uid")) for o in metadata.get("ownerReferences") or ()),
        issued_at=annotations.get(ISSUED_AT_ANNOTATION),
        expires_at=annotations.get(EXPIRES_AT_ANNOTATION),
        inputs=annotations.get(INPUTS_ANNOTATION),
    )


def unchanged_target(seen: SeenTarget | None, *, written_version: str | None, known_version: str | None,
                     owner_uid: str) -> TargetState | None:
    """The target Secret as we last wrote it, known without reading it, or None (read it).

    A resourceVersion is unique to one write of one object, so when the listing shows the very version our
    last write returned (``written_version``, recorded in ``status.targetResourceVersion``) and no watch event
    has shown another since (``known_version``), the Secret holds exactly what we wrote: our token, intact,
    with the schedule annotations the listing shows. Any other write (a hand edit, a deletion and re-creation,
    a write of ours whose status patch never happened) has another version and is read as before."""
    if seen is None or not written_version or not seen.resource_version:
        return None
    if not seen.resource_version == written_version == known_version or owner_uid not in seen.owner_uids:
        return None
    return TargetState(exists=True, ours=True, resource_version=seen.resource_version,
                       issued_at=parse_time(seen.issued_at), expires_at=parse_time(seen.expires_at),
                       inputs=seen.inputs, has_token=True, intact=True)
