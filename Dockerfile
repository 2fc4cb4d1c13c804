# syntax=docker/dockerfile:1
# The oauth-token-operator image: `docker build -t oauth-token-operator:0.1.0 .` from the repository root.
#
# Two stages: the builder installs the project and its dependencies from the project's own metadata
# (`pip install .` reads pyproject.toml) into a venv at /opt/venv; the final stage copies only that venv onto the
# same base image (same interpreter path, so the venv keeps working), drops pip, and runs as a numeric non-root
# user. The image needs no writable path but /tmp (mount an emptyDir there with readOnlyRootFilesystem: true).
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
# Only what `pip install .` needs (see .dockerignore): metadata first, then the sources.
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
# A regular (non-editable) install of the project and its runtime dependencies from pyproject.toml; pip compiles
# the .pyc files here, because the read-only root filesystem will not let Python write them at run time.
# pip/setuptools/wheel are not needed to run the operator: remove them from the venv the final image ships.
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/oauth-token-operator --help >/dev/null \
 && /opt/venv/bin/python -m pip uninstall --yes pip setuptools wheel

FROM python:3.11.14-slim-bookworm
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
