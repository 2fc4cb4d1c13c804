"""A kubelet node runs real pods and leaves the host exactly as it found it.

First in the tier (files run in name order) so that no other node runs while it compares the host before and
after its own node.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tests.pods.conftest import new_namespace, wait_pod_phase
from tests.support.envtest import EnvTest
from tests.support.hoststate import host_state
from tests.support.kube import Kube
from tests.support.kubelet import KUBELET_SYSCTLS, KubeletNode, busybox_container

pytestmark = pytest.mark.pods

#: What the kubelet writes at start when the values differ (setupKernelTunables).
KUBELET_WANTS = {"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
                 "kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000",
                 "kernel/keys/root_maxbytes": "25000000"}


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def test_a_node_running_a_pod_leaves_the_host_as_it_found_it(
        kube_env: EnvTest, kubelet_binary: Path, kube: Kube) -> None:
    before = host_state()
    assert set(KUBELET_SYSCTLS) <= before.sysctls.keys(), "the snapshot must cover what the kubelet sets"
    node = KubeletNode(kube_env, kubelet_binary)
    node.start()
    try:
        workdir = node.workdir
        assert workdir is not None
        namespace = new_namespace(kube, "trace")
        node.prepare_namespace(namespace)
        kube.apply_secret(namespace, "mounted", {"key": "value-from-the-api"})
        pod: dict[str, Any] = {"metadata": {"name": "reader"}, "spec": node.pod_spec(
            [busybox_container("reader", 'test "$(cat /mnt/secret/key)" = value-from-the-api',
                               volumeMounts=[{"name": "s", "mountPath": "/mnt/secret"}])],
            volumes=[{"name": "s", "secret": {"secretName": "mounted"}}])}
        kube.core.create_namespaced_pod(namespace, pod)
        # Succeeded: the container read the Secret's value from the volume the kubelet mounted.
        assert wait_pod_phase(kube, node, namespace, "reader", {"Succeeded", "Failed"}) == "Succeeded"
        # The kubelet did try to set its sysctls: the stand-ins caught what would have hit the host.
        caught = {k: (workdir / "sysctl" / k.replace("/", ".")).read_text().strip() for k in KUBELET_SYSCTLS}
        assert caught == KUBELET_WANTS
        kube.delete_namespace(namespace)
    finally:
        node.stop()

    assert before.differences(host_state()) == []
    assert not workdir.exists()
    assert processes_mentioning(str(workdir)) == []
    assert kube.core.list_node(field_selector=f"metadata.name={node.name}").items == []
