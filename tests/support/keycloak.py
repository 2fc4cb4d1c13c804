"""A real Keycloak for tests, on 127.0.0.1, and the admin REST calls the tests need.

The distribution comes from ``hack/keycloak.sh`` (fetched from Maven Central, unpacked and built once into
``~/.cache/oauth-token-operator/keycloak/<version>``). That cache is shared by every worktree and test session
on the machine, so a session never runs Keycloak *in* it: :class:`Keycloak` makes a private home in its
workdir (symlinks to the read-only parts, a copy of ``bin/`` and of Quarkus's build output ``lib/quarkus``, a
copy of the cached H2 database with its master realm and admin) and starts ``kc.sh start-dev`` from there. Two
sessions therefore never share a database or a transaction log, and an unexpected re-augmentation writes into
the session's copy, not into the cache. Typical use::

    with Keycloak(keycloak_home(), workdir) as kc:
        realm = Realm.create(kc, "apps")             # with a resource server that introspects
        client_id = realm.client("billing", secret="s3cret")
        ...                                          # a token from realm.token_endpoint
        realm.assert_issued_to(token, client_id)     # Keycloak says: active, issued to billing

Run ``python -m tests.support.keycloak`` from the repository root to start one for manual poking.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = ["Keycloak", "KeycloakAdmin", "KeycloakError", "KeycloakUnavailable", "Realm", "keycloak_home"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "hack" / "keycloak.sh"
_EXIT_UNAVAILABLE = 3  # hack/keycloak.sh: no Java/Maven and no way to install them

#: Heap for one test instance: kc.sh's own default for a machine that is not a container, stated here so a
#: change of that default cannot silently grow the test tier (measured RSS with it: ~460 MiB).
HEAP_OPTIONS = "-Xms64m -Xmx512m"


class KeycloakUnavailable(RuntimeError):
    """Keycloak cannot be had on this machine (no Java 17+ or Maven). ``message`` says what to install."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KeycloakError(RuntimeError):
    """Building, starting or administering Keycloak failed."""


def keycloak_home(*, timeout: float = 1800.0, echo: bool = True) -> Path:
    """The cached, built distribution, built on first use by ``hack/keycloak.sh`` (~3 min on 2 cores)."""
    if shutil.which("bash") is None:
        raise KeycloakUnavailable("Keycloak needs bash to run hack/keycloak.sh")
    proc = subprocess.Popen(["bash", str(SCRIPT)], cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise KeycloakError(f"{SCRIPT} did not finish within {timeout:.0f}s:\n{err[-4000:]}") from None
    if echo and err:
        sys.stderr.write(err)
    if proc.returncode == _EXIT_UNAVAILABLE:
        lines = [line for line in err.splitlines() if "UNAVAILABLE: " in line]
        raise KeycloakUnavailable(lines[-1].split("UNAVAILABLE: ", 1)[1] if lines else err[-2000:])
    if proc.returncode != 0:
        raise KeycloakError(f"{SCRIPT} failed with exit code {proc.returncode}:\n{err[-4000:]}")
    home = Path(out.strip().splitlines()[-1])
    if not (home / "bin" / "kc.sh").exists():
        raise KeycloakError(f"{SCRIPT} reported {home}, which has no bin/kc.sh")
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 60) -> str:
    try:
        with path.open("rb") as f:
            return b"".join(collections.deque(f, maxlen=lines)).decode(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _read_admin_credentials(home: Path) -> tuple[str, str]:
    values = dict(line.split("=", 1) for line in (home / ".bootstrap-admin").read_text().splitlines() if "=" in line)
    return values["username"], values["password"]


_running: weakref.WeakSet[Keycloak] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:  # safety net: no orphaned Keycloak
    for keycloak in list(_running):
        with contextlib.suppress(Exception):
            keycloak.stop()


@dataclass
class _AdminToken:
    value: str = ""
    expires: float = 0.0


@dataclass
class KeycloakAdmin:
    """The admin REST API (``/admin/realms/...``) as the master realm's bootstrap admin, via ``admin-cli``."""

    base_url: str
    username: str
    password: str = field(repr=False)
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0, trust_env=False), repr=False)
    _token: _AdminToken = field(default_factory=_AdminToken, repr=False)

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------------------

    def _bearer(self) -> dict[str, str]:
        if time.monotonic() > self._token.expires - 10:  # master's admin tokens live 60 s
            answer = self._http.post(f"{self.base_url}/realms/master/protocol/openid-connect/token", data={
                "grant_type": "password", "client_id": "admin-cli",
                "username": self.username, "password": self.password})
            if answer.status_code != 200:
                raise KeycloakError(f"admin login refused: {answer.status_code} {answer.text[:300]}")
            body = answer.json()
            self._token = _AdminToken(body["access_token"], time.monotonic() + float(body["expires_in"]))
        return {"Authorization": f"Bearer {self._token.value}"}

    def request(self, method: str, path: str, *, json: Any = None, expect: Sequence[int] = (200, 201, 204),
                ) -> httpx.Response:
        """``method`` on ``/admin/realms{path}``; a status outside ``expect`` raises with Keycloak's answer."""
        answer = self._http.request(method, f"{self.base_url}/admin/realms{path}", json=json, headers=self._bearer())
        if answer.status_code not in expect:
            raise KeycloakError(f"{method} /admin/realms{path}: {answer.status_code} {answer.text[:500]}")
        return answer

    # -- realms, clients, identity providers ----------------------------------------------------------------

    def create_realm(self, realm: str, **representation: Any) -> str:
        """A new enabled realm; returns its issuer path (``/realms/<realm>``)."""
        self.request("POST", "", json={"realm": realm, "enabled": True, **representation})
        return f"/realms/{realm}"

    def create_client(self, realm: str, client_id: str, *, attributes: dict[str, str] | None = None,
                      **representation: Any) -> str:
        """A confidential client allowed the client_credentials grant (its service account) and nothing
        else; ``representation`` adds or overrides ClientRepresentation fields (``clientAuthenticatorType``,
        ``secret``...). Returns Keycloak's internal id of the client."""
        body: dict[str, Any] = {
            "clientId": client_id, "enabled": True, "protocol": "openid-connect", "publicClient": False,
            "serviceAccountsEnabled": True, "standardFlowEnabled": False, "directAccessGrantsEnabled": False,
            "attributes": attributes or {}, **representation}
        answer = self.request("POST", f"/{realm}/clients", json=body)
        return answer.headers["Location"].rstrip("/").rsplit("/", 1)[-1]

    def client(self, realm: str, internal_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", f"/{realm}/clients/{internal_id}").json()
        return body

    def update_client(self, realm: str, internal_id: str, **changes: Any) -> None:
        self.request("PUT", f"/{realm}/clients/{internal_id}", json={**self.client(realm, internal_id), **changes})

    def client_secret(self, realm: str, internal_id: str) -> str:
        value: str = self.request("GET", f"/{realm}/clients/{internal_id}/client-secret").json()["value"]
        return value

    def add_default_audience(self, realm: str, audience: str) -> None:
        """Tokens of every client created from now on carry ``audience`` in ``aud`` (a default client scope with
        an audience mapper): Keycloak introspects a token only for a client in its audience."""
        answer = self.request("POST", f"/{realm}/client-scopes", json={
            "name": f"audience-{audience}", "protocol": "openid-connect",
            "attributes": {"include.in.token.scope": "false"},
            "protocolMappers": [{
                "name": f"audience {audience}", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
                "config": {"included.client.audience": audience, "access.token.claim": "true",
                           "introspection.token.claim": "true"}}]})
        scope_id = answer.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
        self.request("PUT", f"/{realm}/default-default-client-scopes/{scope_id}")

    def create_identity_provider(self, realm: str, alias: str, provider_id: str, config: dict[str, str]) -> None:
        self.request("POST", f"/{realm}/identity-provider/instances", json={
            "alias": alias, "providerId": provider_id, "enabled": True, "config": config})

    # -- what a resource server would check -----------------------------------------------------------------

    def introspect(self, realm: str, token: str, *, client_id: str, client_secret: str) -> dict[str, Any]:
        """RFC 7662 introspection of ``token`` by a confidential client of ``realm`` (a resource server)."""
        answer = self._http.post(f"{self.base_url}/realms/{realm}/protocol/openid-connect/token/introspect",
                                 data={"token": token}, auth=(client_id, client_secret))
        if answer.status_code != 200:
            raise KeycloakError(f"introspection refused: {answer.status_code} {answer.text[:300]}")
        body: dict[str, Any] = answer.json()
        return body


class Keycloak:
    """``kc.sh start-dev`` on free 127.0.0.1 ports with a private home in ``workdir`` (log: ``keycloak.log``)."""

    def __init__(self, home: Path, workdir: Path, *, truststore_paths: Sequence[Path] = (),
                 start_timeout: float = 300.0, extra_args: Sequence[str] = ()) -> None:
        self.home = Path(home)
        self.workdir = Path(workdir).resolve()
        self.truststore_paths = tuple(truststore_paths)
        self.start_timeout = start_timeout
        self.extra_args = tuple(extra_args)
        self.port = 0
        self.management_port = 0
        self.log_path = self.workdir / "keycloak.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._admin: KeycloakAdmin | None = None
        #: seconds from ``kc.sh start-dev`` to an answering discovery document, once started
        self.startup_seconds: float | None = None

    # -- addresses ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def issuer(self, realm: str) -> str:
        """The realm's issuer: its ``iss``, its discovery base, and the audience of client assertions."""
        return f"{self.base_url}/realms/{realm}"

    def token_endpoint(self, realm: str) -> str:
        return f"{self.issuer(realm)}/protocol/openid-connect/token"

    @property
    def admin(self) -> KeycloakAdmin:
        if self._admin is None:
            raise KeycloakError("Keycloak is not started")
        return self._admin

    # -- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> Keycloak:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        self.stop()

    def _prepare_home(self) -> Path:
        """A private Keycloak home: kc.sh derives ``kc.home.dir`` from its own resolved path, so ``bin/`` is a
        real copy; what Keycloak writes (``data/``, and ``lib/quarkus`` if it ever re-augments) is private."""
        session = self.workdir / "home"
        shutil.rmtree(session, ignore_errors=True)
        (session / "lib").mkdir(parents=True)
        shutil.copytree(self.home / "bin", session / "bin", symlinks=True)
        shutil.copytree(self.home / "lib" / "quarkus", session / "lib" / "quarkus")
        for entry in (self.home / "lib").iterdir():
            if entry.name != "quarkus":
                (session / "lib" / entry.name).symlink_to(entry)
        for name in ("conf", "providers", "themes", "version.txt"):
            (session / name).symlink_to(self.home / name)
        (session / "data" / "h2").mkdir(parents=True)
        shutil.copy2(self.home / "data" / "h2" / "keycloakdb.mv.db", session / "data" / "h2")
        return session

    def start(self) -> None:
        if self._proc is not None:
            raise KeycloakError("Keycloak already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        session = self._prepare_home()
        username, password = _read_admin_credentials(self.home)
        for _attempt in range(3):  # a free port can be taken before Keycloak binds it: try new ones
            self.port, self.management_port = _free_port(), _free_port()
            args = [str(session / "bin" / "kc.sh"), "start-dev", "--http-host=127.0.0.1", f"--http-port={self.port}",
                    "--http-management-host=127.0.0.1", f"--http-management-port={self.management_port}",
                    *(["--truststore-paths=" + ",".join(str(p) for p in self.truststore_paths)]
                      if self.truststore_paths else []),
                    *self.extra_args]
            env = {**os.environ, "JAVA_OPTS_KC_HEAP": HEAP_OPTIONS}
            for name in ("JAVA_OPTS", "JAVA_OPTS_APPEND", "KC_BOOTSTRAP_ADMIN_USERNAME", "KC_BOOTSTRAP_ADMIN_PASSWORD"):
                env.pop(name, None)
            self._log = self.log_path.open("ab")
            self._log.write(f"$ {' '.join(args)}\n".encode())
            self._log.flush()
            started = time.monotonic()
            self._proc = subprocess.Popen(args, cwd=session, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
            _running.add(self)
            self._admin = KeycloakAdmin(self.base_url, username, password)
            try:
                self._wait_ready(started)
                return
            except KeycloakError:
                log = _tail(self.log_path)
                self.stop()
                if "Address already in use" not in log:
                    raise
        raise KeycloakError(f"Keycloak could not bind a port in 3 attempts; log: {self.log_path}")

    def _wait_ready(self, started: float) -> None:
        assert self._proc is not None
        url = f"{self.issuer('master')}/.well-known/openid-configuration"
        deadline = started + self.start_timeout
        with httpx.Client(timeout=5.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise KeycloakError(f"Keycloak exited with {self._proc.returncode}; tail of {self.log_path}:\n"
                                        + _tail(self.log_path))
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(url).status_code == 200:
                        self.startup_seconds = time.monotonic() - started
                        return
                time.sleep(0.5)
        raise KeycloakError(f"Keycloak did not answer {url} within {self.start_timeout:.0f}s; tail of "
                            f"{self.log_path}:\n" + _tail(self.log_path))

    def rebuilt_at_start(self) -> bool:
        """True when start-dev re-augmented (its build options differ from the cache's): 1 min lost per start."""
        return "Updating the configuration" in self.log_path.read_text(errors="replace")

    def rss_bytes(self) -> int:
        """Resident memory of Keycloak's JVM (kc.sh's child), 0 when not running."""
        if self._proc is None:
            return 0
        total = 0
        pids = [self._proc.pid]
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children").read_text().split()]
        for pid in pids:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM to kc.sh (it forwards it to the JVM), SIGKILL to the group after ``grace``. Idempotent."""
        if self._admin is not None:
            self._admin.close()
        if self._proc is not None:
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGTERM)
                try:
                    self._proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # the JVM too, if kc.sh left before it
            self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        _running.discard(self)


class Realm:
    """A realm for tests: makes client_credentials clients and checks tokens as its resource server would.

    Every client's tokens carry the resource server in ``aud`` (a default client scope with an audience mapper),
    as in production, because Keycloak introspects a token only for a client in its audience.
    """

    RESOURCE_SERVER = "resource-server"

    def __init__(self, keycloak: Keycloak, name: str, resource_secret: str) -> None:
        self.keycloak, self.name = keycloak, name
        self.issuer = keycloak.issuer(name)
        self.token_endpoint = keycloak.token_endpoint(name)
        self._resource_secret = resource_secret

    @classmethod
    def create(cls, keycloak: Keycloak, name: str) -> Realm:
        realm = cls(keycloak, name, uuid.uuid4().hex)
        admin = keycloak.admin
        admin.create_realm(name)
        admin.create_client(name, cls.RESOURCE_SERVER, secret=realm._resource_secret, serviceAccountsEnabled=False)
        admin.add_default_audience(name, cls.RESOURCE_SERVER)
        return realm

    def client(self, prefix: str, authenticator: str = "client-secret", **representation: Any) -> str:
        """A new client_credentials client with a unique ID (``<prefix>-<8 hex>``); returns the client ID."""
        client_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.keycloak.admin.create_client(self.name, client_id, clientAuthenticatorType=authenticator,
                                          **representation)
        return client_id

    def introspect(self, token: str) -> dict[str, Any]:
        return self.keycloak.admin.introspect(self.name, token, client_id=self.RESOURCE_SERVER,
                                              client_secret=self._resource_secret)

    def assert_issued_to(self, token: str, client_id: str) -> dict[str, Any]:
        """Keycloak itself says the token is active, from this realm, issued to ``client_id``; returns its claims."""
        claims = self.introspect(token)
        assert claims["active"] is True, claims
        assert claims["iss"] == self.issuer
        assert claims["azp"] == client_id
        assert self.RESOURCE_SERVER in claims["aud"]
        return claims


@contextlib.contextmanager
def _workdir(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="oto-keycloak-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.keycloak",
                                     description="Start the test tier's Keycloak and run until Ctrl-C.")
    parser.add_argument("--workdir", help="keep the home and log here (default: a temp dir, removed on exit)")
    args = parser.parse_args(argv)
    try:
        home = keycloak_home()
    except KeycloakUnavailable as exc:
        print(f"keycloak unavailable: {exc.message}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with _workdir(args.workdir) as workdir, Keycloak(home, workdir) as kc:
        username, _ = _read_admin_credentials(home)
        print(f"keycloak: {kc.base_url} ready in {kc.startup_seconds:.1f}s, log {kc.log_path}")
        print(f"keycloak: admin console {kc.base_url}/admin/ as {username} (password in {home}/.bootstrap-admin)",
              flush=True)
        try:
            while kc._proc is not None and kc._proc.poll() is None:
                time.sleep(1)
            return 1
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
