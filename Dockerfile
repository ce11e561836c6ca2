# syntax=docker/dockerfile:1
# The kubellm operator image: `kubellm run` by default.
#
#   docker build -t ghcr.io/kubellm/kubellm:0.1.0 .
#
# The base is pinned by tag and by the digest of its multi-architecture index; bump both together
# (docker buildx imagetools inspect python:<tag> prints the digest).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---- builder: a virtualenv with kubellm and its dependencies, nothing else ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/kubellm
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN /opt/kubellm/bin/pip install --no-compile . \
    && /opt/kubellm/bin/kubellm --help > /dev/null

# ---- runtime: slim Python, the venv, a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="kubellm" \
      org.opencontainers.image.description="Kubernetes operator for LLM inference" \
      org.opencontainers.image.source="https://github.com/kubellm/kubellm" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/kubellm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 65532 kubellm \
    && useradd --system --uid 65532 --gid 65532 --home-dir /home/kubellm --create-home \
       --shell /usr/sbin/nologin kubellm
COPY --from=builder /opt/kubellm /opt/kubellm
USER 65532:65532
WORKDIR /home/kubellm
# Metrics and Kopf's health endpoint (see charts/kubellm).
EXPOSE 8080 8081
ENTRYPOINT ["kubellm"]
CMD ["run"]
