"""See the operator work in one command: a local Kubernetes API server, a local OAuth 2.0 server, the real
operator process, a sample resource, and the token Secret it keeps fresh.

Run it through ``hack/demo.sh`` (which installs everything first). ``--keep`` leaves it all running so you
can look around with kubectl; otherwise it exits after showing one scheduled refresh.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.authserver import AuthServer  # noqa: E402
from tests.support.envtest import EnvTest, assets_dir  # noqa: E402
from tests.support.kube import Kube, wait_for  # noqa: E402
from tests.support.operator_process import OperatorProcess  # noqa: E402

NAMESPACE, NAME = "demo", "torch"
TOKEN_LIFETIME = 30  # seconds: short, so that the demo shows a refresh within a few seconds


def resource_yaml(token_url: str) -> str:
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: torch-client, namespace: {NAMESPACE}}}
stringData: {{client_id: demo-client, client_secret: "p@ss:w+rd/100%=&x y"}}
---
apiVersion: oauth-token-operator.dev/v1alpha1
kind: OAuthClientCredential
metadata: {{name: {NAME}, namespace: {NAMESPACE}}}
spec:
  tokenURL: {token_url}
  clientCredentialsSecretRef: {{name: torch-client}}
  scopes: [api:read]
  target: {{secretName: torch-token}}
"""


def show(kube: Kube, auth: AuthServer) -> str:
    occ = kube.get_occ(NAMESPACE, NAME) or {}
    status = occ.get("status") or {}
    ready = kube.ready(NAMESPACE, NAME)
    print(f"\n$ kubectl get occ -n {NAMESPACE}")
    print(f"{'NAME':<8}{'READY':<7}{'REASON':<13}{'EXPIRES':<22}{'NEXT REFRESH'}")
    print(f"{NAME:<8}{ready.get('status', ''):<7}{ready.get('reason', ''):<13}{status.get('expiresAt', ''):<22}"
          f"{status.get('nextRefreshTime', '')}")
    print(f"  message: {ready.get('message', '')}")
    data = kube.secret_data(NAMESPACE, "torch-token") or {}
    token = data.get("access_token", "")
    print(f"\n$ kubectl get secret torch-token -n {NAMESPACE} -o jsonpath='{{.data}}'  (decoded)")
    for key, value in data.items():
        print(f"  {key}: {value[:12] + '…' if key == 'access_token' else value}")
    who = auth.whoami(token) if token else None
    print(f"  → the authorization server {'accepts' if who else 'REJECTS'} this token: {who}")
    return token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="oauth-token-operator-demo-"))
    print("Starting a local Kubernetes API server (etcd + kube-apiserver + kube-controller-manager)…")
    with EnvTest(workdir / "cluster", assets_dir(), crd_dir=ROOT / "crds") as env, AuthServer() as auth:
        auth.add_client("demo-client", secret="p@ss:w+rd/100%=&x y", scopes=["api:read"],
                        token_lifetime=TOKEN_LIFETIME)
        print(f"Local OAuth 2.0 authorization server (Authlib): {auth.token_url}")
        operator = OperatorProcess(env.kubeconfig, workdir, name="operator").start()
        print(f"Operator running (logs: {operator.log_path}, metrics: "
              f"http://127.0.0.1:{operator.metrics_port}/metrics)")
        kube = Kube(env.kubeconfig)
        try:
            kube.create_namespace(NAMESPACE)
            manifest = resource_yaml(auth.token_url)
            print(f"\n$ kubectl apply -f -  <<EOF\n{manifest}EOF")
            kube.apply_secret(NAMESPACE, "torch-client",
                              {"client_id": "demo-client", "client_secret": "p@ss:w+rd/100%=&x y"})
            kube.create_occ(NAMESPACE, NAME, {"tokenURL": auth.token_url,
                                              "clientCredentialsSecretRef": {"name": "torch-client"},
                                              "scopes": ["api:read"], "target": {"secretName": "torch-token"}})
            wait_for(lambda: kube.ready(NAMESPACE, NAME).get("status") == "True", timeout=60,
                     message="the resource to become Ready")
            first = show(kube, auth)
            print(f"\nThe token lives {TOKEN_LIFETIME}s; waiting for the operator to replace it before it expires…")
            wait_for(lambda: (kube.secret_data(NAMESPACE, "torch-token") or {}).get("access_token") != first,
                     timeout=TOKEN_LIFETIME, message="a refreshed token")
            show(kube, auth)
            print(f"\nToken requests the authorization server received: {auth.token_request_count('demo-client')}")
            if args.keep:
                print(f"\nEverything keeps running. Try:\n  export KUBECONFIG={env.kubeconfig}\n"
                      f"  {assets_dir()}/kubectl get occ -n {NAMESPACE} -w\nPress Ctrl-C to stop.")
                while operator.running:
                    time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            kube.close()
            operator.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    print("\nDemo finished; everything it started has been stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
