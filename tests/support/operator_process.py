"""The real operator as its own process (`python -m oauth_token_operator run`), for e2e tests and the demo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        *,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        name: str = "operator",
        allow_insecure_http: bool = True,
        allow_loopback_endpoints: bool = True,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.args = args or []
        self.env = env or {}
        self.name = name
        # The test token endpoints are plain http on loopback; a test of the refusal turns this off.
        self.allow_insecure_http = allow_insecure_http
        # The test token endpoints are on 127.0.0.1, which the default denied networks refuse; a test of that
        # refusal turns this off (the operator then runs with its default list).
        self.allow_loopback_endpoints = allow_loopback_endpoints
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log_path = workdir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, *, wait: bool = True) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "OAUTH_TOKEN_OPERATOR_ALLOW_INSECURE_HTTP": str(self.allow_insecure_http).lower(),
            **({"OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS": ""} if self.allow_loopback_endpoints else {}),
            **self.env,
        }
        cmd = [
            sys.executable,
            "-m",
            "oauth_token_operator",
            "run",
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
            *self.args,
        ]
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
        if wait:
            try:
                self.wait_healthy()
            except BaseException:
                self.stop(kill=True)
                raise
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self._proc.returncode}:\n{self.logs()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"operator not healthy after {timeout}s:\n{self.logs()[-4000:]}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> int | None:
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        code = self._proc.returncode
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text: str = resp.read().decode()
            return text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total
