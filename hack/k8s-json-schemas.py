"""Generate the Kubernetes JSON schemas kubeconform validates against, offline, from a real kube-apiserver.

Why this exists: kubeconform normally downloads its schemas from the yannh/kubernetes-json-schema repository on
GitHub, which CI here cannot reach, and no PyPI/npm package ships an up-to-date copy. But the project already
builds a real kube-apiserver for its envtest tests (``hack/envtest-assets.sh``), and every API server publishes
the authoritative OpenAPI v3 documents of the API it serves at ``/openapi/v3/<group-version>``. So we start that
API server (no controller manager), read those documents and convert them the way upstream's ``openapi2jsonschema``
does, into the same layout kubeconform expects::

    OUT/v1.35.4-standalone/deployment-apps-v1.json
    OUT/v1.35.4-standalone-strict/deployment-apps-v1.json   (additionalProperties: false on every described object)

and use them with::

    kubeconform -kubernetes-version 1.35.4 -strict -schema-location \
      'OUT/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json'

The conversion (draft-07, each file self-contained with a ``definitions`` section, so recursive types work):
``$ref: #/components/schemas/X`` becomes ``#/definitions/X``; ``nullable: true`` becomes a ``"null"`` type;
``IntOrString`` and ``Quantity`` accept a string or a number, as the API server does.

Idempotent: a finished directory carries a stamp file and is not regenerated. The last line of stdout is OUT.
Run from the repository root with the project's venv (it needs ``tests/support/envtest.py``)::

    .venv/bin/python hack/k8s-json-schemas.py --out ~/.cache/oauth-token-operator/tools/schemas
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.envtest import EnvTest, assets_dir, pinned_k8s_version  # noqa: E402

STAMP = ".schemas-complete"
SCHEMA_PREFIX = "#/components/schemas/"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"


def fetch_openapi_v3(env: EnvTest) -> dict[str, dict[str, Any]]:
    """All component schemas of every group-version the API server serves, by name."""
    client = env.api_client()
    try:
        def get(path: str) -> Any:
            # The admin client's urllib3 pool carries the API server CA and the client certificate.
            rsp = client.rest_client.pool_manager.request("GET", env.server + path)
            if rsp.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {rsp.status}")
            return json.loads(rsp.data)

        index = get("/openapi/v3")
        schemas: dict[str, dict[str, Any]] = {}
        for gv, entry in sorted(index["paths"].items()):
            if not (gv == "api/v1" or gv.startswith("apis/")) or gv.count("/") < 1:
                continue
            doc = get(entry["serverRelativeURL"])
            schemas.update(doc.get("components", {}).get("schemas", {}))
        return schemas
    finally:
        client.close()  # type: ignore[no-untyped-call]


def convert(node: Any, *, strict: bool) -> Any:
    """One OpenAPI v3 schema node → a draft-07 JSON schema node (recursively)."""
    if isinstance(node, list):
        return [convert(item, strict=strict) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: convert(value, strict=strict) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(SCHEMA_PREFIX):
        out["$ref"] = "#/definitions/" + ref[len(SCHEMA_PREFIX):]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("format") == "int-or-string":
        out.pop("type", None)
        out.pop("format")
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if (
        strict
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def referenced(name: str, schemas: dict[str, Any]) -> set[str]:
    """Names of every schema reachable from ``name`` (itself included)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen or current not in schemas:
            continue
        seen.add(current)
        stack: list[Any] = [schemas[current]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.startswith(SCHEMA_PREFIX):
                    todo.append(ref[len(SCHEMA_PREFIX):])
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return seen


def file_name(group: str, version: str, kind: str) -> str:
    """kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` for apiVersion group/version."""
    suffix = f"-{group.split('.')[0].lower()}-{version.lower()}" if group else f"-{version.lower()}"
    return f"{kind.lower()}{suffix}.json"


def special_cases(schemas: dict[str, Any]) -> dict[str, Any]:
    schemas = copy.deepcopy(schemas)
    for name in (INT_OR_STRING, QUANTITY):
        if name in schemas:
            description = schemas[name].get("description", "")
            schemas[name] = {"description": description,
                             "oneOf": [{"type": "string"}, {"type": "integer"} if name == INT_OR_STRING
                                       else {"type": "number"}]}
    return schemas


def write_schemas(schemas: dict[str, Any], out: Path, *, strict: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    schemas = special_cases(schemas)
    count = 0
    for name, schema in sorted(schemas.items()):
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            closure = referenced(name, schemas)
            root = convert(schema, strict=strict)
            document = {"$schema": "http://json-schema.org/draft-07/schema#", **root,
                        "definitions": {n: convert(schemas[n], strict=strict) for n in sorted(closure)}}
            path = out / file_name(gvk.get("group", ""), gvk["version"], gvk["kind"])
            path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="root directory of the schema tree")
    parser.add_argument("--force", action="store_true", help="regenerate even if the stamp says done")
    args = parser.parse_args(argv)

    version = pinned_k8s_version()
    out: Path = args.out.expanduser().resolve()
    dirs = {False: out / f"{version}-standalone", True: out / f"{version}-standalone-strict"}
    if not args.force and all((d / STAMP).exists() for d in dirs.values()):
        print(out)
        return 0

    assets = assets_dir()
    with tempfile.TemporaryDirectory(prefix="oto-schemas-") as tmp, \
            EnvTest(Path(tmp), assets, controller_manager=False) as env:
        schemas = fetch_openapi_v3(env)
    if not schemas:
        print("k8s-json-schemas: the API server published no OpenAPI v3 schemas", file=sys.stderr)
        return 1
    for strict, directory in dirs.items():
        (directory / STAMP).unlink(missing_ok=True)
        count = write_schemas(schemas, directory, strict=strict)
        (directory / STAMP).write_text(f"k8s={version}\nkinds={count}\nsource=kube-apiserver /openapi/v3\n")
        print(f"k8s-json-schemas: wrote {count} schemas to {directory}", file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
