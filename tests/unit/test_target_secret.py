"""What the target Secret holds, and whether an existing Secret is ours."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from oauth_token_operator.api import OAuthClientCredential
from oauth_token_operator.kube.target import read_target_state, render_target_secret, seen_target, unchanged_target
from oauth_token_operator.tokens.model import Token

ISSUED = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
TOKEN = Token(access_token=SecretStr("tok-123"), token_type="Bearer", issued_at=ISSUED,
              expires_at=ISSUED + timedelta(minutes=30), expiry_source="expires_in", scope="read write")


def resource(target: dict[str, Any] | None = None) -> OAuthClientCredential:
    return OAuthClientCredential.model_validate({
        "metadata": {"name": "torch", "namespace": "team-a", "uid": "uid-1"},
        "spec": {"tokenURL": "https://idp/token", "clientCredentialsSecretRef": {"name": "c"},
                 "target": target or {"secretName": "torch-token"}},
    })


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_default_keys_owner_and_label() -> None:
    secret = render_target_secret(resource(), TOKEN, "h1")
    assert decoded(secret) == {"access_token": "tok-123", "token_type": "Bearer",
                               "expires_at": "2026-11-24T17:30:00Z"}
    assert secret["type"] == "Opaque"
    meta = secret["metadata"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "oauth-token-operator"
    assert meta["ownerReferences"] == [{"apiVersion": "oauth-token-operator.dev/v1alpha1",
                                        "kind": "OAuthClientCredential", "name": "torch", "uid": "uid-1",
                                        "controller": True}]
    assert "resourceVersion" not in meta


def test_template_substitutes_only_known_names_and_never_evaluates() -> None:
    target = {"secretName": "t", "template": {
        "data": {"Authorization": "${token_type} ${access_token}",
                 "app.properties": "token=${access_token}\nexpires=${expires_at}\nscope=${scope}\n",
                 "literal": "$${access_token} {{ 7*7 }} $(whoami)"},
        "labels": {"team": "a"}, "annotations": {"note": "x"}}}
    secret = render_target_secret(resource(target), TOKEN, "h1", resource_version="42")
    data = decoded(secret)
    assert data["Authorization"] == "Bearer tok-123"
    assert data["app.properties"] == "token=tok-123\nexpires=2026-11-24T17:30:00Z\nscope=read write\n"
    assert data["literal"] == "$tok-123 {{ 7*7 }} $(whoami)"
    assert set(data) == {"Authorization", "app.properties", "literal"}
    assert secret["metadata"]["labels"]["team"] == "a"
    assert secret["metadata"]["annotations"]["note"] == "x"
    assert secret["metadata"]["resourceVersion"] == "42"


def test_state_round_trip_lets_a_restart_resume() -> None:
    secret = render_target_secret(resource(), TOKEN, "h1")
    secret["metadata"]["resourceVersion"] = "7"
    state = read_target_state(secret, "uid-1")
    assert state.ours and state.exists and state.has_token
    assert (state.issued_at, state.expires_at, state.inputs) == (ISSUED, TOKEN.expires_at, "h1")
    assert state.resource_version == "7"


@pytest.mark.parametrize("mutate", [
    lambda m: m["labels"].clear(),
    lambda m: m.__setitem__("ownerReferences", [{"uid": "someone-else"}]),
    lambda m: m.pop("ownerReferences"),
])
def test_a_secret_we_did_not_create_is_not_ours(mutate: Any) -> None:
    secret = render_target_secret(resource(), TOKEN, "h1")
    mutate(secret["metadata"])
    state = read_target_state(secret, "uid-1")
    assert state.exists and not state.ours


def test_absent_secret() -> None:
    state = read_target_state(None, "uid-1")
    assert not state.exists and not state.ours and not state.has_token


def listed(secret: dict[str, Any], version: str = "500") -> dict[str, Any]:
    """The metadata a listing shows of a Secret the API server stored at ``version`` (no data)."""
    return {**secret["metadata"], "resourceVersion": version}


def test_a_listed_target_as_we_wrote_it_is_known_without_reading_it() -> None:
    secret = render_target_secret(resource(), TOKEN, "h1")
    seen = seen_target(listed(secret))
    known = unchanged_target(seen, written_version="500", known_version="500", owner_uid="uid-1")
    read = read_target_state({**secret, "metadata": listed(secret)}, "uid-1")
    assert known == read, "the same facts the read would have given"
    assert known is not None and known.intact and known.has_token


@pytest.mark.parametrize(("written", "known", "owner", "why"), [
    ("499", "500", "uid-1", "written by somebody else since our write (or our status patch never happened)"),
    ("500", "501", "uid-1", "a watch event showed another version since the listing"),
    ("500", None, "uid-1", "deleted since the listing"),
    (None, "500", "uid-1", "a status from before versions were recorded"),
    ("500", "500", "uid-2", "the Secret of another resource of the same name"),
])
def test_anything_else_is_read(written: str | None, known: str | None, owner: str, why: str) -> None:
    seen = seen_target(listed(render_target_secret(resource(), TOKEN, "h1")))
    assert unchanged_target(seen, written_version=written, known_version=known, owner_uid=owner) is None, why


def test_only_our_labelled_secrets_are_kept_from_a_listing() -> None:
    assert seen_target({"name": "helm-release", "resourceVersion": "7", "labels": {"owner": "helm"}}) is None
    assert unchanged_target(None, written_version="7", known_version="7", owner_uid="uid-1") is None
