# syntax=docker/dockerfile:1
# The oauth-token-operator image: `docker build -t oauth-token-operator:0.1.0 .` from the repository root.
#
# Two stages: the builder installs the locked, hash-checked dependencies (requirements/*.txt, made by
# hack/lock.sh from pyproject.toml) and then the project itself without resolving anything, into a venv at
# /opt/venv; the final stage copies only that venv onto the same base image (same interpreter path, so the venv
# keeps working), holds no pip, and runs as a numeric non-root user. The image needs no writable path but /tmp
# (mount an emptyDir there with readOnlyRootFilesystem: true). hack/image.sh builds it in the test suite.
#
# Base image: python:3.11.14-slim-bookworm, pinned by tag in BOTH stages (the venv is only valid on the same
# interpreter). Its digest could NOT be verified when this file was written (no container registry reachable from
# the build machine), so it is not pinned yet. Before a release resolve it and append it to both FROM lines:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm --format '{{json .Manifest.Digest}}'
#   FROM python:3.11.14-slim-bookworm@sha256:<digest>
# (Renovate/Dependabot's docker manager then keep tag and digest fresh.) The FROM lines are literal, not ARGs,
# so scanners and those bots can read them.
FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the install needs (see .dockerignore). The locks first: their layer stays cached while only the
# sources change. --require-hashes: every file pip installs must match a hash in the lock.
COPY requirements/build.txt requirements/runtime.txt ./requirements/
RUN /opt/venv/bin/python -m pip install --require-hashes -r requirements/build.txt \
 && /opt/venv/bin/python -m pip install --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
# A regular (non-editable) install of the project alone (--no-deps: the lock already provided every dependency,
# and `pip check` proves it satisfied the package's own ranges), built with the locked setuptools
# (--no-build-isolation: nothing unpinned is fetched). pip compiles the .pyc files here, because the read-only
# root filesystem will not let Python write them at run time (measured: 1.4 s to import the operator with them,
# 3.3 s without). pip/setuptools/wheel are not needed to run the operator: remove them from the venv the final
# image ships. The kubernetes client also ships an asyncio copy of itself (kubernetes/aio, 68 MB with its .pyc,
# a fifth of the image) that the operator never imports: drop it, then import every operator module to prove
# nothing needed it.
RUN /opt/venv/bin/python -m pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/python -m pip check \
 && /opt/venv/bin/python -m pip uninstall --yes pip setuptools wheel \
 && rm -rf /opt/venv/lib/python3*/site-packages/kubernetes/aio \
 && /opt/venv/bin/python -c "import importlib, pkgutil, oauth_token_operator as p; \
[importlib.import_module(m.name) for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.') \
 if not m.name.endswith('.__main__')]" \
 && /opt/venv/bin/oauth-token-operator --help >/dev/null

FROM python:3.11.14-slim-bookworm
# No package installer in the image: the base's own pip (python:*-slim ships one in site-packages) and the wheels
# ensurepip or Debian's python3-venv keep for new venvs go too. Before ENV PATH, so this is the base's python3.
RUN if python3 -c 'import pip' 2>/dev/null; then python3 -m pip uninstall --yes pip setuptools wheel; fi \
 && rm -rf /usr/local/bin/pip /usr/local/bin/pip3* /usr/share/python-wheels \
      "$(python3 -c 'import ensurepip, os; print(os.path.dirname(ensurepip.__file__))')/_bundled"
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="oauth-token-operator" \
      org.opencontainers.image.description="A Kubernetes operator that keeps OAuth 2.0 client_credentials access tokens fresh in Secrets." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/oauth-token-operator/oauth-token-operator" \
      org.opencontainers.image.url="https://github.com/oauth-token-operator/oauth-token-operator" \
      org.opencontainers.image.documentation="https://github.com/oauth-token-operator/oauth-token-operator/tree/main/charts/oauth-token-operator" \
      org.opencontainers.image.vendor="oauth-token-operator" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"

# PYTHONDONTWRITEBYTECODE: never try to write .pyc next to the (read-only) sources.
# TMPDIR/HOME: the only writable place is /tmp (an emptyDir in Kubernetes); TLS client keys are written there briefly.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    HOME=/tmp

COPY --from=builder /opt/venv /opt/venv

# 65532 = the "nonroot" user of distroless images; no /etc/passwd entry is needed for a numeric UID.
USER 65532:65532

# 8080: Prometheus /metrics (--metrics-port); 8081: Kopf's liveness endpoint /healthz (health_port).
EXPOSE 8080 8081

# For `docker run`; Kubernetes ignores it and uses the Deployment's probes on the same endpoint.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=4)"]

ENTRYPOINT ["oauth-token-operator"]
CMD ["run"]
