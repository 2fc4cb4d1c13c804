"""The operator's list+watch requests against the real API server, in a process of their own: what they list and
what they cost to make.

The watches build their requests with the official client's ``ApiClient`` alone. The generated API classes
are not used: importing ``CoreV1Api`` costs 0.6 CPU-seconds and 22 MiB of RSS (kubernetes 37), more than the
operator's whole working set for a thousand resources. That is why the check runs in a fresh interpreter
(this test process imported ``CoreV1Api`` long ago).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from kubernetes import client
from tests.support.envtest import EnvTest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    import kubernetes
    from oauth_token_operator.kube.watch import MetadataWatch, WatchTarget
    from oauth_token_operator.kube.resource_watch import ResourceWatch

    async def main():
        loop = asyncio.get_running_loop()
        api = kubernetes.config.new_client_from_config(config_file=sys.argv[1])
        seeds, targets, resources, synced = {}, {}, [], asyncio.Event()
        pending = 3

        def on_synced():
            nonlocal pending
            pending -= 1
            if not pending:
                synced.set()

        def on_seed(kind, versions, seen):
            seeds.setdefault(kind, {}).update({f"{ns}/{name}": rv for (ns, name), rv in versions.items()})
            targets.update({f"{ns}/{name}": [t.resource_version, t.expires_at] for (ns, name), t in seen.items()})

        never = lambda namespace, kind, name: False
        watches = [
            MetadataWatch(api, WatchTarget("Secret"), loop=loop, is_referenced=never,
                          on_events=lambda kind, events: None, on_seed=on_seed, on_synced=on_synced),
            MetadataWatch(api, WatchTarget("Secret", sys.argv[2], "app=ours"), loop=loop, is_referenced=never,
                          on_events=lambda kind, events: None,
                          on_seed=lambda kind, versions, seen: on_seed("labelled", versions, {}),
                          on_synced=on_synced),
            ResourceWatch(api, None, loop=loop, on_events=lambda events: resources.extend(events),
                          on_synced=on_synced),
        ]
        for watch in watches:
            watch.start()
        await asyncio.wait_for(synced.wait(), 60)
        for watch in watches:
            watch.stop()
        print(json.dumps({
            "secrets": sorted(seeds.get("Secret", {})),
            "labelled": sorted(seeds.get("labelled", {})),
            "targets": targets,
            "resources": sorted(f"{e.namespace}/{e.name}" for e in resources),
            "generated_api_imported": sorted(m for m in sys.modules if m.startswith("kubernetes.client.api.")),
        }))

    asyncio.run(main())
""")


def test_the_watches_list_what_they_are_asked_for_without_the_generated_api_classes(
        kube_env: EnvTest, admin: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(admin)
    for name, labels, notes in (
            ("plain", None, None), ("ours", {"app": "ours"}, None),
            ("target", {"app.kubernetes.io/managed-by": "oauth-token-operator"},
             {"oauth-token-operator.dev/expires-at": "2030-01-01T00:00:00Z"})):
        core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=notes),
            string_data={"k": "v"}))
    client.CustomObjectsApi(admin).create_namespaced_custom_object(
        "oauth-token-operator.dev", "v1alpha1", namespace, "oauthclientcredentials", {
            "apiVersion": "oauth-token-operator.dev/v1alpha1", "kind": "OAuthClientCredential",
            "metadata": {"name": "r"},
            "spec": {"tokenURL": "https://idp.example.com/oauth2/token",
                     "clientCredentialsSecretRef": {"name": "plain"}, "target": {"secretName": "out"}}})
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(kube_env.kubeconfig), namespace], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert {f"{namespace}/plain", f"{namespace}/ours"} <= set(seen["secrets"]), "cluster-wide: every Secret"
    assert seen["labelled"] == [f"{namespace}/ours"], "namespaced, label-selected: only the labelled one"
    assert f"{namespace}/r" in seen["resources"]
    # Of our own (managed-by) Secrets the listing keeps what a restart needs to trust them unread.
    target = core.read_namespaced_secret("target", namespace)
    assert seen["targets"][f"{namespace}/target"] == [target.metadata.resource_version, "2030-01-01T00:00:00Z"]
    assert f"{namespace}/plain" not in seen["targets"]
    assert seen["generated_api_imported"] == [], "22 MiB and 0.6 CPU-seconds for four request builders"
