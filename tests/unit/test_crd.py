"""The checked-in CRD is exactly what the API models generate, and it is structurally sound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from oauth_token_operator import api
from oauth_token_operator.crdgen import CRD_FILENAME, render_crd, render_crd_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_crd_matches_the_models() -> None:
    checked_in = (ROOT / "crds" / CRD_FILENAME).read_text()
    assert checked_in == render_crd_yaml(), (
        "crds/ drifted from api.py: run `oauth-token-operator crd > crds/" + CRD_FILENAME + "`")


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, sub in (node.get("properties") or {}).items():
        found += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}.*")
    return found


def test_schema_is_structural_and_documented() -> None:
    schema = render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema["properties"]["spec"], "spec") + _walk(schema["properties"]["status"], "status"):
        for forbidden in ("$ref", "anyOf", "allOf", "oneOf", "const", "title", "$defs"):
            assert forbidden not in node, f"{path} has {forbidden}"
        assert "type" in node, f"{path} has no type"
        if path.count(".") and not path.endswith(("[]", ".*")):
            assert node.get("description"), f"{path} has no description"
        assert not ("properties" in node and "additionalProperties" in node), path


def test_public_names_and_columns() -> None:
    crd = render_crd()
    assert crd["metadata"]["name"] == "oauthclientcredentials.oauth-token-operator.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("OAuthClientCredential",
                                                                   "oauthclientcredentials", ["occ"])
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert {"Ready", "Reason", "Expires", "Age"} <= set(columns)
    expiry = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Credentials Expire")
    assert expiry["jsonPath"] == ".status.credentialsExpireAt" and "priority" not in expiry  # in `kubectl get`
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(spec["properties"]) >= {"tokenURL", "issuerURL", "clientCredentialsSecretRef", "authMethod",
                                       "privateKeySecretRef", "signingAlgorithm", "signingKeyID",
                                       "assertionAudience", "scopes", "audience", "resources", "extraParams",
                                       "tls", "target", "rolloutRestartTargets"}
    assert spec["properties"]["authMethod"]["default"] == "client_secret_basic"
    assert sorted(spec["properties"]["authMethod"]["enum"]) == sorted(m.value for m in api.AuthMethod)
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "has(self.tokenURL) != has(self.issuerURL)" in rules
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_crd_file_is_valid_yaml_with_header() -> None:
    text = (ROOT / "crds" / CRD_FILENAME).read_text()
    assert text.startswith("# Generated")
    assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"
