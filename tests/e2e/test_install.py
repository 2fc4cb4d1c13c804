"""Each way to install the operator works with exactly the permissions it grants (issue 6, item 4).

For the Helm chart (cluster-wide and namespaced) and the kustomize trees (``deploy/``, ``deploy/namespaced``):
render with the pinned tools, apply everything but the Deployment (no kubelet here: no pods run) to the test API
server, then run the operator as its own process with a token of the rendered ServiceAccount and exactly the
rendered container's args and env. The token flow must work with no ``Forbidden`` in the log, and permissions
the install does not grant must really be refused to that ServiceAccount.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.kube import GROUP, PLURAL, VERSION, Kube, wait_for
from tests.support.manifests import (
    REPO_ROOT,
    Applier,
    Manifest,
    by_kind,
    deployment_container,
    helm_template,
    kustomize_build,
    operator_command,
    service_account_token,
    tools_or_skip,
)
from tests.support.operator_process import OperatorProcess

pytestmark = pytest.mark.e2e

#: Objects that only make sense with a kubelet (no pods run against the test API server).
NOT_APPLIED = ("Deployment", "PodDisruptionBudget")
#: A refused API call in the operator's log (kubernetes client, Kopf, aiohttp all spell it one of these ways).
FORBIDDEN = re.compile(r"forbidden|\(403\)|\b403 |[\"']?(code|status)[\"']?\s*[:=]\s*403\b", re.IGNORECASE)
#: The namespaces the kustomize trees hard-code, rewritten per test so every case is isolated.
KUSTOMIZE_INSTALL_NS, KUSTOMIZE_WATCH_NS = "oauth-token-operator", "apps"


@pytest.fixture(scope="session")
def tools() -> Path:
    """The pinned helm and kustomize, built once by hack/tools.sh."""
    return tools_or_skip("helm", "kustomize")


def retarget(docs: list[Manifest], renames: dict[str, str]) -> list[Manifest]:
    """Move kustomize output to other namespaces: Namespace objects, metadata.namespace, RBAC subjects and
    ``--namespace=`` arguments (what editing the overlay as deploy/namespaced/kustomization.yaml says does)."""
    moved: list[Manifest] = json.loads(json.dumps(docs))
    for doc in moved:
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            meta["name"] = renames.get(meta["name"], meta["name"])
        if "namespace" in meta:
            meta["namespace"] = renames.get(meta["namespace"], meta["namespace"])
        for subject in doc.get("subjects") or []:
            if "namespace" in subject:
                subject["namespace"] = renames.get(subject["namespace"], subject["namespace"])
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                container["args"] = [
                    f"--namespace={renames.get(a.removeprefix('--namespace='), a.removeprefix('--namespace='))}"
                    if a.startswith("--namespace=") else a for a in container.get("args") or []]
    text = json.dumps(moved)
    for old in renames:
        assert f'"namespace": "{old}"' not in text and f"--namespace={old}\"" not in text, f"{old} left over"
    return moved


Render = Callable[[Path, str, str], list[Manifest]]  # (tools dir, install namespace, watched namespace)


@dataclass(frozen=True)
class Install:
    id: str
    render: Render
    namespaced: bool
    #: The install namespace comes with the manifests (kustomize) or is created beforehand (helm --create-namespace).
    renders_namespace: bool


INSTALLS = [
    Install("helm-cluster-wide", lambda bin_dir, ns, _watch: helm_template(bin_dir, "oto-cw", ns),
            namespaced=False, renders_namespace=False),
    Install("helm-namespaced",
            lambda bin_dir, ns, watch: helm_template(bin_dir, "oto-ns", ns, "--set", f"watchNamespaces={{{watch}}}"),
            namespaced=True, renders_namespace=False),
    Install("kustomize-cluster-wide",
            lambda bin_dir, ns, _watch: retarget(kustomize_build(bin_dir, REPO_ROOT / "deploy"),
                                                 {KUSTOMIZE_INSTALL_NS: ns}),
            namespaced=False, renders_namespace=True),
    Install("kustomize-namespaced",
            lambda bin_dir, ns, watch: retarget(kustomize_build(bin_dir, REPO_ROOT / "deploy" / "namespaced"),
                                                {KUSTOMIZE_INSTALL_NS: ns, KUSTOMIZE_WATCH_NS: watch}),
            namespaced=True, renders_namespace=True),
]


#: What `kubectl rollout restart` sends (a pod-template annotation).
RESTART_PATCH = {"spec": {"template": {"metadata": {"annotations": {
    "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}}


def deployment_manifest(name: str) -> Manifest:
    """A Deployment to be patched (no kubelet runs here: its pods never start, which does not matter)."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}}


def kustomize_with_component(bin_dir: Path, tree: Path, component: Path) -> list[Manifest]:
    """``kustomize build`` of an overlay of ``tree`` with ``component``, as deploy/README.md tells users to write."""
    with tempfile.TemporaryDirectory(prefix="oto-overlay-") as overlay:
        # Relative paths: kustomize refuses absolute ones.
        (Path(overlay) / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources: [{os.path.relpath(tree, overlay)}]\ncomponents: [{os.path.relpath(component, overlay)}]\n")
        return kustomize_build(bin_dir, Path(overlay))


def assert_forbidden(call: Callable[[], Any], what: str) -> None:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 403, f"{what}: expected 403 Forbidden, got {caught.value.status}"


def namespaces(kube: Kube) -> set[str]:
    return {ns.metadata.name for ns in kube.core.list_namespace().items}


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
def applier(kube_env: EnvTest, tmp_path: Path) -> Iterator[Applier]:
    api = kube_env.api_client()
    yield Applier(api, tmp_path)
    api.close()


@pytest.mark.parametrize("install", INSTALLS, ids=[i.id for i in INSTALLS])
def test_install_works_with_exactly_its_permissions(
        install: Install, tools: Path, kube_env: EnvTest, kube: Kube, auth_server: AuthServer, applier: Applier,
        tmp_path: Path, suffix: str) -> None:
    install_ns, watch_ns, other_ns = (f"oto-{suffix}", f"{install.id[:4]}-{suffix}-apps", f"{suffix}-other")
    docs = install.render(tools, install_ns, watch_ns)
    applied = [d for d in docs if d["kind"] not in NOT_APPLIED]
    # Namespaces and CRDs first, as `kubectl apply` / helm order them.
    applied.sort(key=lambda d: {"Namespace": 0, "CustomResourceDefinition": 1}.get(d["kind"], 2))
    deployment, container = deployment_container(docs)
    assert deployment["metadata"]["namespace"] == install_ns
    sa_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert [sa["metadata"]["name"] for sa in by_kind(docs, "ServiceAccount")] == [sa_name]
    if install.namespaced:
        assert not [r for r in by_kind(docs, "ClusterRole") if any(
            "secrets" in rule.get("resources", []) for rule in r["rules"])], "namespaced mode: no cluster-wide Secrets"
        assert {r["metadata"]["namespace"] for r in by_kind(docs, "Role")} == {watch_ns}

    operator: OperatorProcess | None = None
    created = [watch_ns, other_ns] + ([] if install.renders_namespace else [install_ns])
    for name in created:
        kube.create_namespace(name)
    sa_kube: Kube | None = None
    try:
        applier.apply(applied)
        if install.renders_namespace:
            assert install_ns in namespaces(kube)

        token = service_account_token(kube, install_ns, sa_name)
        sa_kubeconfig = kube_env.kubeconfig_for_token(token, tmp_path / "sa.kubeconfig")
        sa_kube = Kube(sa_kubeconfig)
        operator = OperatorProcess(sa_kubeconfig, tmp_path, name=f"operator-{install.id}")
        operator.args, operator.env = operator_command(container, f"{deployment['metadata']['name']}-0", operator)
        operator.start()

        # The token flow, end to end, under the install's RBAC.
        client_id = f"install-{suffix}"
        auth_server.add_client(client_id, secret="s3cret")
        kube.apply_secret(watch_ns, "creds", {"client_id": client_id, "client_secret": "s3cret"})
        kube.create_occ(watch_ns, "torch", {"tokenURL": auth_server.token_url,
                                             "clientCredentialsSecretRef": {"name": "creds"},
                                             "target": {"secretName": "torch-token"}})
        ready = wait_for(lambda: kube.ready(watch_ns, "torch").get("status") == "True"
                         and kube.ready(watch_ns, "torch"), timeout=60, message=f"Ready=True ({operator.log_path})")
        assert ready["reason"] == "TokenIssued"
        data = kube.secret_data(watch_ns, "torch-token")
        assert data is not None and auth_server.accepts(data["access_token"])
        wait_for(lambda: any(e.type == "Normal" and e.reason == "TokenIssued" for e in kube.events(watch_ns, "torch")),
                 message="a Normal TokenIssued Event")

        # What the install does NOT grant is refused to the operator's ServiceAccount (403, not 401: it is known).
        assert sa_kube.core.read_namespaced_secret("torch-token", watch_ns).metadata.name == "torch-token"
        assert_forbidden(lambda: sa_kube.core.delete_namespaced_secret("torch-token", watch_ns), "delete Secret")
        assert_forbidden(lambda: sa_kube.core.list_namespaced_pod(watch_ns), "list Pods")
        assert_forbidden(lambda: sa_kube.core.create_namespaced_config_map(watch_ns, {"metadata": {"name": "x"}}),
                         "create ConfigMap")
        assert_forbidden(lambda: sa_kube.core.list_node(), "list Nodes")
        # Least privilege (issue 14): without rollout restarts switched on, no workload can be patched.
        kube.apps.create_namespaced_deployment(watch_ns, deployment_manifest("web"))
        assert_forbidden(lambda: sa_kube.apps.patch_namespaced_deployment("web", watch_ns, RESTART_PATCH),
                         "patch a Deployment (rollout restarts are off by default)")
        assert_forbidden(lambda: sa_kube.apps.read_namespaced_deployment("web", watch_ns), "read a Deployment")
        # ServiceAccounts (issue 12): read one and mint its tokens, nothing else.
        kube.core.create_namespaced_service_account(watch_ns, {"metadata": {"name": "workload"}})
        assert sa_kube.core.read_namespaced_service_account("workload", watch_ns).metadata.name == "workload"
        minted = sa_kube.core.create_namespaced_service_account_token(
            "workload", watch_ns, {"spec": {"audiences": ["https://idp.example"], "expirationSeconds": 600}})
        assert minted.status.token
        assert_forbidden(lambda: sa_kube.core.list_namespaced_service_account(watch_ns), "list ServiceAccounts")
        assert_forbidden(lambda: sa_kube.core.patch_namespaced_service_account(
            "workload", watch_ns, {"metadata": {"annotations": {"oauth-token-operator.dev/token-audiences": "x"}}}),
            "annotate a ServiceAccount (its opt-in is the owner's decision)")
        assert_forbidden(lambda: sa_kube.core.create_namespaced_service_account(
            watch_ns, {"metadata": {"name": "sneaky"}}), "create a ServiceAccount")
        kube.apply_secret(other_ns, "unrelated", {"password": "not-for-the-operator"})
        if install.namespaced:
            assert_forbidden(lambda: sa_kube.core.read_namespaced_secret("unrelated", other_ns),
                             "read a Secret outside the watched namespace")
            assert_forbidden(lambda: sa_kube.core.list_secret_for_all_namespaces(), "list Secrets cluster-wide")
            assert_forbidden(lambda: sa_kube.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL),
                             "list OAuthClientCredentials cluster-wide")
            assert_forbidden(lambda: sa_kube.core.read_namespaced_config_map("kube-root-ca.crt", other_ns),
                             "read a ConfigMap outside the watched namespace")
            kube.core.create_namespaced_service_account(other_ns, {"metadata": {"name": "outsider"}})
            assert_forbidden(lambda: sa_kube.core.create_namespaced_service_account_token(
                "outsider", other_ns, {"spec": {"audiences": ["https://idp.example"]}}),
                "mint a token of a ServiceAccount outside the watched namespace")
        else:
            assert sa_kube.core.read_namespaced_secret("unrelated", other_ns).metadata.name == "unrelated"

        # Deletion under the same RBAC: Kopf removes its finalizer, the target Secret goes by garbage collection.
        kube.delete_occ(watch_ns, "torch")
        wait_for(lambda: kube.get_occ(watch_ns, "torch") is None, timeout=60, message="the resource to go")
        wait_for(lambda: kube.secret(watch_ns, "torch-token") is None, timeout=60, message="the target Secret to go")
        assert operator.running, operator.logs()[-4000:]
        # (A cluster-wide operator may meet other tests' namespaces while they terminate; the API server refuses
        # new objects there with a 403 that says so. That is not an RBAC gap.)
        refused = [line for line in operator.logs().splitlines()
                   if FORBIDDEN.search(line) and "because it is being terminated" not in line]
        assert not refused, "the operator was refused an API call it needs:\n" + "\n".join(refused[:20])
    finally:
        if operator is not None:
            operator.stop()
            print(f"--- operator log ({operator.log_path}) ---\n{operator.logs()[-20000:]}")
        if sa_kube is not None:
            sa_kube.close()
        # Cluster-scoped objects would outlive the namespaces; the CRD stays (the session's other tests use it).
        applier.delete([d for d in applied if d["kind"] in ("ClusterRole", "ClusterRoleBinding")])
        for name in dict.fromkeys([*created, install_ns]):
            kube.delete_namespace(name)


ROLLOUT_RESTART_INSTALLS = [
    Install("helm-cluster-wide-rollout-restart",
            lambda bin_dir, ns, _watch: helm_template(bin_dir, "oto-rr", ns, "--set", "rolloutRestart.enabled=true"),
            namespaced=False, renders_namespace=False),
    Install("kustomize-namespaced-rollout-restart",
            lambda bin_dir, ns, watch: retarget(
                kustomize_with_component(bin_dir, REPO_ROOT / "deploy" / "namespaced",
                                         REPO_ROOT / "deploy" / "components" / "rollout-restart"),
                {KUSTOMIZE_INSTALL_NS: ns, KUSTOMIZE_WATCH_NS: watch}),
            namespaced=True, renders_namespace=True),
]


@pytest.mark.parametrize("install", ROLLOUT_RESTART_INSTALLS, ids=[i.id for i in ROLLOUT_RESTART_INSTALLS])
def test_rollout_restart_variant_may_patch_workloads(
        install: Install, tools: Path, kube_env: EnvTest, kube: Kube, applier: Applier, tmp_path: Path,
        suffix: str) -> None:
    """Switching rollout restarts on (chart value / kustomize component) grants exactly the workload patch, and
    tells the operator (the env var): the counterpart of the refusal in the default installs above."""
    install_ns, watch_ns, other_ns = f"rr-{suffix}", f"rr-{suffix}-apps", f"rr-{suffix}-other"
    docs = install.render(tools, install_ns, watch_ns)
    applied = sorted((d for d in docs if d["kind"] not in NOT_APPLIED),
                     key=lambda d: {"Namespace": 0, "CustomResourceDefinition": 1}.get(d["kind"], 2))
    deployment, container = deployment_container(docs)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OAUTH_TOKEN_OPERATOR_ENABLE_ROLLOUT_RESTARTS"] == "true"
    sa_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    created = [watch_ns, other_ns] + ([] if install.renders_namespace else [install_ns])
    for name in created:
        kube.create_namespace(name)
    sa_kube: Kube | None = None
    try:
        applier.apply(applied)
        sa_kube = Kube(kube_env.kubeconfig_for_token(service_account_token(kube, install_ns, sa_name),
                                                     tmp_path / "sa.kubeconfig"))
        for ns in (watch_ns, other_ns):
            kube.apps.create_namespaced_deployment(ns, deployment_manifest("web"))
        patched = sa_kube.apps.patch_namespaced_deployment("web", watch_ns, RESTART_PATCH)
        assert patched.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]
        assert_forbidden(lambda: sa_kube.apps.delete_namespaced_deployment("web", watch_ns), "delete a Deployment")
        assert_forbidden(lambda: sa_kube.apps.create_namespaced_deployment(watch_ns, deployment_manifest("new")),
                         "create a Deployment")
        if install.namespaced:
            assert_forbidden(lambda: sa_kube.apps.patch_namespaced_deployment("web", other_ns, RESTART_PATCH),
                             "patch a Deployment outside the watched namespace")
        else:
            assert sa_kube.apps.patch_namespaced_deployment("web", other_ns, RESTART_PATCH).metadata.name == "web"
    finally:
        if sa_kube is not None:
            sa_kube.close()
        applier.delete([d for d in applied if d["kind"] in ("ClusterRole", "ClusterRoleBinding")])
        for name in dict.fromkeys([*created, install_ns]):
            kube.delete_namespace(name)


@pytest.mark.parametrize("source", ["helm", "kustomize"])
def test_aggregated_roles_give_view_read_and_edit_write(
        source: str, tools: Path, kube_env: EnvTest, kube: Kube, applier: Applier, tmp_path: Path,
        suffix: str) -> None:
    """Kubernetes' `view` may read OAuthClientCredentials but not create one (creating one is as powerful as
    reading the namespace's Secrets, which `view` may not); `edit` may create them (issue 14)."""
    ns = f"agg-{suffix}"
    docs = (helm_template(tools, f"agg-{suffix}", ns) if source == "helm"
            else kustomize_build(tools, REPO_ROOT / "deploy" / "rbac" / "aggregated"))
    roles = [d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"].endswith(("-view", "-edit"))]
    assert len(roles) == 2
    kube.create_namespace(ns)
    clients: list[Kube] = []
    try:
        applier.apply(roles)
        for name in ("view", "edit"):
            wait_for(lambda name=name: aggregates_ours(kube, name), timeout=30,
                     message=f"the {name} ClusterRole to aggregate ours")
        for name in ("viewer", "editor"):
            kube.core.create_namespaced_service_account(ns, {"metadata": {"name": name}})
            kube.rbac.create_namespaced_role_binding(ns, {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "view" if name == "viewer" else "edit"},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]})
        viewer, editor = (Kube(kube_env.kubeconfig_for_token(service_account_token(kube, ns, name),
                                                             tmp_path / f"{name}.kubeconfig"))
                          for name in ("viewer", "editor"))
        clients += [viewer, editor]
        spec = {"tokenURL": "https://idp.example/token", "clientCredentialsSecretRef": {"name": "creds"},
                "target": {"secretName": "t"}}
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OAuthClientCredential", "metadata": {"name": "occ"},
                "spec": spec}
        wait_for(lambda: _allowed(lambda: editor.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, body)), timeout=30, message="edit to create an OAuthClientCredential")
        assert viewer.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        assert_forbidden(lambda: viewer.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, {**body, "metadata": {"name": "occ2"}}),
            "view creating an OAuthClientCredential")
        assert_forbidden(lambda: viewer.core.read_namespaced_secret("creds", ns), "view reading a Secret")
    finally:
        for client in clients:
            client.close()
        applier.delete(roles)
        kube.delete_namespace(ns)


def aggregates_ours(kube: Kube, role: str) -> bool:
    return any(GROUP in (rule.api_groups or []) for rule in kube.rbac.read_cluster_role(role).rules or [])


def _allowed(call: Callable[[], Any]) -> bool:
    """True once ``call`` is no longer refused with 403 (aggregation and RBAC caches settle asynchronously)."""
    try:
        call()
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True
