"""The operator's container image, built by ``hack/image.sh`` from the committed Dockerfile and run with podman the
way a user's cluster runs it (read-only root filesystem, non-root UID, only /tmp writable).

:func:`built_image` returns the image ID (building it, or reusing ``$OTO_IMAGE_ID`` that ``hack/test.sh`` exports
after its own build); :class:`Container` runs it; :func:`exported_image` streams the image's filesystem
(``podman export``) for tests that prove what is and is not in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = REPO_ROOT / "hack" / "image.sh"
#: The same containers.conf the build uses (runc, cgroupfs, file events, ulimits this machine allows).
CONTAINERS_CONF = REPO_ROOT / "hack" / "containers.conf"
_EXIT_UNAVAILABLE = 3  # hack/image.sh: podman cannot be had or used here


class ImageUnavailable(RuntimeError):
    """podman (or root, to install and run it) is missing on this machine; ``message`` says what."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def built_image(timeout: float = 1800.0) -> str:
    """The ID of the image built from the working tree; raises :class:`ImageUnavailable` when it cannot be built
    here (hack/image.sh's exit code 3) and ``RuntimeError`` when the build fails."""
    given = os.environ.get("OTO_IMAGE_ID")
    if given:
        return given
    if shutil.which("bash") is None:
        raise ImageUnavailable("hack/image.sh needs bash")
    proc = subprocess.run(["bash", str(IMAGE_SCRIPT)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode == _EXIT_UNAVAILABLE:
        raise ImageUnavailable(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "hack/image.sh: 3")
    if proc.returncode != 0:
        raise RuntimeError(f"hack/image.sh failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def exported_image(image: str) -> Iterator[tarfile.TarFile]:
    """The image's filesystem as ``podman export`` streams it (a tar, read once, front to back)."""
    name = f"oto-export-{uuid.uuid4().hex[:8]}"
    podman("create", "--name", name, image)
    try:
        proc = subprocess.Popen(["podman", "export", name], env=podman_env(), stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                yield tar
        finally:
            proc.stdout.close()
            proc.wait(60)
    finally:
        podman("rm", "--force", name, check=False)


def image_inspect(image: str) -> dict[str, Any]:
    """``podman image inspect``: the image's ``Config``, ``Healthcheck``, ``ManifestType``, ``Size``, ..."""
    docs = json.loads(podman("image", "inspect", image).stdout)
    inspected: dict[str, Any] = docs[0]
    return inspected


class Container:
    """The image run detached under podman with the settings a hardened Deployment uses."""

    def __init__(self, image: str, *, args: list[str], env: dict[str, str], mounts: list[str],
                 health_port: int, metrics_port: int) -> None:
        self.image = image
        self.args = args
        self.env = env
        self.mounts = mounts
        self.health_port = health_port
        self.metrics_port = metrics_port
        self.name = f"oto-e2e-{uuid.uuid4().hex[:8]}"
        self.started = False

    def start(self) -> Container:
        cmd = ["run", "--detach", "--name", self.name, "--read-only", "--tmpfs", "/tmp", "--user", "65532:65532",
               "--network=host"]
        for mount in self.mounts:
            cmd += ["--volume", mount]
        for key, value in self.env.items():
            cmd += ["--env", f"{key}={value}"]
        podman(*cmd, self.image, *self.args)
        self.started = True
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"the container exited:\n{self.logs()[-4000:]}")
            try:
                if self.get(self.health_port, "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the container was not healthy after {timeout}s:\n{self.logs()[-4000:]}")

    def get(self, port: int, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()

    @property
    def running(self) -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout.strip() == "true"

    def stop(self, grace: int) -> tuple[float, int]:
        """``podman stop``: SIGTERM, then SIGKILL after ``grace`` seconds. Returns (seconds taken, exit code)."""
        started = time.monotonic()
        podman("stop", "--time", str(grace), self.name, timeout=grace + 60)
        elapsed = time.monotonic() - started
        code = int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())
        return elapsed, code

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def remove(self) -> None:
        if self.started:
            podman("rm", "--force", "--time", "0", self.name, check=False)
            self.started = False
