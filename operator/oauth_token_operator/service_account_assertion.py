"""``authMethod: kubernetes_service_account``: which audience to mint for, and whether the ServiceAccount allows it.

Minting a ServiceAccount token is power: whoever holds one acts as that workload towards every server that
trusts the cluster's issuer for that audience. A tenant who may create ``OAuthClientCredential`` objects but
not pods must not obtain, through the operator, a token of a ServiceAccount that did not opt in, nor one for
an audience it did not list. So the ServiceAccount opts in, per audience, with the annotation
:data:`TOKEN_AUDIENCES_ANNOTATION` (comma-separated, exact matches, no wildcards), and the operator checks it
before every TokenRequest. Pure functions here; the Kubernetes I/O is in :mod:`.kube.serviceaccounts`.
"""

from __future__ import annotations

from collections.abc import Mapping

from .api import GROUP, OAuthClientCredentialSpec

__all__ = ["TOKEN_AUDIENCES_ANNOTATION", "assertion_audience", "assertion_refusal", "permitted_audiences"]

TOKEN_AUDIENCES_ANNOTATION = f"{GROUP}/token-audiences"


def assertion_audience(spec: OAuthClientCredentialSpec, token_endpoint: str) -> str:
    """The ``aud`` to mint for: ``serviceAccountAssertion.audience``, default the token endpoint in use."""
    configured = spec.service_account_assertion.audience if spec.service_account_assertion else None
    return configured or token_endpoint


def permitted_audiences(annotations: Mapping[str, str] | None) -> frozenset[str]:
    """The audiences a ServiceAccount's annotations allow (empty when it did not opt in)."""
    text = (annotations or {}).get(TOKEN_AUDIENCES_ANNOTATION, "")
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def assertion_refusal(namespace: str, name: str, annotations: Mapping[str, str] | None, audience: str) -> str | None:
    """Why no token of ServiceAccount ``namespace/name`` may be minted for ``audience``, or None if it may."""
    allowed = permitted_audiences(annotations)
    if audience in allowed:
        return None
    if not allowed:
        return (f"ServiceAccount {namespace}/{name} does not allow the operator to mint tokens: annotate it with "
                f"{TOKEN_AUDIENCES_ANNOTATION}={audience} (a comma-separated list of the audiences allowed), or "
                "use another ServiceAccount")
    return (f"ServiceAccount {namespace}/{name} does not allow tokens for audience {audience}: its annotation "
            f"{TOKEN_AUDIENCES_ANNOTATION} lists only {', '.join(sorted(allowed))}; add {audience} to it, or "
            "change serviceAccountAssertion.audience")
