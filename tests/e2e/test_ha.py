"""Two replicas with Kopf peering: one works, the other takes over when it dies (issue 6, item 5).

The chart's HA install (``replicaCount=2``, one watched namespace) is rendered and applied like in
test_install.py, and two operator processes run with the rendered container's args and env (identical, as two
pods of one Deployment; only ``POD_ID`` differs) and the ServiceAccount's token. Kopf pauses every peer that sees a
live peer of higher *or equal* priority, so identical replicas only work because each draws a random priority at
start (``--peering-priority``, default random).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.kube import GROUP, PLURAL, VERSION, Kube, wait_for
from tests.support.manifests import (
    Applier,
    by_kind,
    deployment_container,
    helm_template,
    operator_command,
    service_account_token,
    tools_or_skip,
)
from tests.support.operator_process import OperatorProcess

pytestmark = pytest.mark.e2e

#: Kopf's default peering lifetime is 60 s: a killed leader's record then blocks the stand-by for up to a minute.
#: The chart passes a shorter one through operator.extraEnv, as a user who wants faster fail-over would.
PEERING_LIFETIME_SECONDS = 10
PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"


def issued(operator: OperatorProcess, namespace: str) -> set[str]:
    """Names of the resources in ``namespace`` this process issued a token for (its "token issued" log lines)."""
    names = set()
    for line in operator.logs().splitlines():
        message = json.loads(line).get("message", "") if line.startswith("{") else line
        if f"{namespace}/" in message and ": token issued," in message:
            names.add(message.split(f"{namespace}/", 1)[1].split(":", 1)[0])
    return names


def occ_names(kube: Kube, namespace: str) -> list[str]:
    found: dict[str, Any] = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return [item["metadata"]["name"] for item in found["items"]]


def spec(token_url: str, name: str) -> dict[str, Any]:
    return {"tokenURL": token_url, "clientCredentialsSecretRef": {"name": "creds"},
            "target": {"secretName": f"{name}-token"}}


@pytest.fixture
def applier(kube_env: EnvTest, tmp_path: Path) -> Iterator[Applier]:
    api = kube_env.api_client()
    yield Applier(api, tmp_path)
    api.close()


def test_one_replica_works_and_the_other_takes_over_without_new_tokens(
        kube_env: EnvTest, kube: Kube, auth_server: AuthServer, applier: Applier, tmp_path: Path) -> None:
    tools = tools_or_skip("helm")
    suffix = uuid.uuid4().hex[:6]
    install_ns, watch_ns = f"oto-ha-{suffix}", f"ha-{suffix}"
    # DEBUG: Kopf then logs each keep-alive, which explains a failed election in the test's output.
    docs = helm_template(
        tools, "oto-ha", install_ns, "--set", "replicaCount=2", "--set", f"watchNamespaces={{{watch_ns}}}",
        "--set", "operator.logLevel=DEBUG",
        "--set-json", "operator.extraEnv=" + json.dumps([{"name": "OAUTH_TOKEN_OPERATOR_PEERING_LIFETIME_SECONDS",
                                                          "value": str(PEERING_LIFETIME_SECONDS)}]))
    applied = [d for d in docs if d["kind"] not in ("Deployment", "PodDisruptionBudget")]
    applied.sort(key=lambda d: {"CustomResourceDefinition": 0, "KopfPeering": 2}.get(d["kind"], 1))
    assert {c["metadata"]["name"] for c in by_kind(docs, "CustomResourceDefinition")} >= {
        "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}
    (peering,) = by_kind(docs, "KopfPeering")
    assert peering["metadata"]["namespace"] == watch_ns
    deployment, container = deployment_container(docs)
    assert deployment["spec"]["replicas"] == 2
    assert f"--peering={peering['metadata']['name']}" in container["args"]

    for name in (install_ns, watch_ns):
        kube.create_namespace(name)
    replicas: list[OperatorProcess] = []
    try:
        applier.apply(applied)
        token = service_account_token(kube, install_ns, deployment["spec"]["template"]["spec"]["serviceAccountName"])
        sa_kubeconfig = kube_env.kubeconfig_for_token(token, tmp_path / "sa.kubeconfig")
        for pod in ("a", "b"):  # two pods of one Deployment: the same args and env, their own POD_ID
            replica = OperatorProcess(sa_kubeconfig, tmp_path, name=f"operator-{pod}")
            replica.args, replica.env = operator_command(container, f"oto-ha-{suffix}-{pod}", replica)
            replicas.append(replica.start())

        # Peers see each other; the one with the lower (random) priority stands by (Kopf's rule: the highest
        # live priority works). Read the priorities from the KopfPeering itself, not from logs: a replica that
        # starts behind a higher-priority peer is paused from its first moment (peering is mandatory) and Kopf
        # logs "Pausing operations" only on a transition, so it may never say so.
        identities = {f"oto-ha-{suffix}-{pod}": replica for pod, replica in zip(("a", "b"), replicas, strict=True)}

        def peers() -> dict[str, Any]:
            obj = kube.custom.get_namespaced_custom_object("kopf.dev", "v1", watch_ns, "kopfpeerings",
                                                           peering["metadata"]["name"])
            status: dict[str, Any] = obj.get("status") or {}
            return status if set(identities) <= set(status) else {}

        priorities = wait_for(peers, timeout=30, message="both replicas in the KopfPeering")
        leader_id = max(identities, key=lambda ident: int(priorities[ident]["priority"]))
        leader = identities[leader_id]
        (standby,) = [r for r in replicas if r is not leader]

        def standby_paused() -> bool:
            log = standby.logs()
            return RESUMED not in log or log.rfind(PAUSED) > log.rfind(RESUMED)

        wait_for(standby_paused, timeout=30, message=f"the stand-by to pause ({standby.log_path})")
        assert not (PAUSED in leader.logs() and leader.logs().rfind(PAUSED) > leader.logs().rfind(RESUMED))

        client_id = f"ha-{suffix}"
        auth_server.add_client(client_id, secret="s")
        kube.apply_secret(watch_ns, "creds", {"client_id": client_id, "client_secret": "s"})
        first = ["r1", "r2", "r3"]
        for name in first:
            kube.create_occ(watch_ns, name, spec(auth_server.token_url, name))
        wait_for(lambda: all(kube.ready(watch_ns, n).get("status") == "True" for n in first), timeout=60,
                 message=f"{first} Ready=True")
        # The log line follows the status patch: wait for it rather than race it.
        wait_for(lambda: issued(leader, watch_ns) == set(first), message=f"'token issued' lines ({leader.log_path})")
        assert auth_server.token_request_count(client_id) == len(first), "exactly one token per resource"
        assert issued(standby, watch_ns) == set(), "the stand-by replica must not act"
        tokens = {n: (kube.secret_data(watch_ns, f"{n}-token") or {})["access_token"] for n in first}

        # The leader dies without a goodbye (SIGKILL: its peering record stays until its lifetime runs out).
        leader.stop(kill=True)
        kube.create_occ(watch_ns, "r4", spec(auth_server.token_url, "r4"))
        wait_for(lambda: kube.ready(watch_ns, "r4").get("status") == "True", timeout=PEERING_LIFETIME_SECONDS + 50,
                 message=f"the stand-by to take over and serve r4 ({standby.log_path})")
        assert RESUMED in standby.logs(), "the stand-by must have resumed once the leader's lifetime ran out"
        wait_for(lambda: "r4" in issued(standby, watch_ns), message=f"r4 'token issued' ({standby.log_path})")
        assert issued(standby, watch_ns) == {"r4"}, "the still-valid tokens of r1..r3 must be kept"
        assert auth_server.token_request_count(client_id) == len(first) + 1
        for name, old in tokens.items():
            data = kube.secret_data(watch_ns, f"{name}-token")
            assert data is not None and data["access_token"] == old and auth_server.accepts(old)
            assert kube.ready(watch_ns, name).get("status") == "True"

        # The new leader also finishes the resources' lives (Kopf's finalizers), still without new tokens.
        for name in [*first, "r4"]:
            kube.delete_occ(watch_ns, name)
        wait_for(lambda: not occ_names(kube, watch_ns), timeout=60, message="the resources to be deleted")
        assert standby.stop() == 0
        assert auth_server.token_request_count(client_id) == len(first) + 1
    finally:
        for replica in replicas:
            replica.stop(kill=True)
            print(f"--- {replica.name} log ({replica.log_path}) ---\n{replica.logs()[-15000:]}")
        for name in occ_names(kube, watch_ns):  # after a failure: nobody is left to remove Kopf's finalizers
            kube.patch_occ(watch_ns, name, {"metadata": {"finalizers": None}})
        applier.delete([d for d in applied if d["kind"] in ("ClusterRole", "ClusterRoleBinding")])
        for name in (watch_ns, install_ns):
            kube.delete_namespace(name)
