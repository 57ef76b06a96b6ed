# One image per Lotline service, from one multi-stage file (uv's documented pattern):
#   docker build --build-arg SERVICE=stock -t lotline-stock .
# SERVICE is the workspace member: catalog, stock, serial-registry, recall, or devstack
# (the last one only creates the topics and ACLs). Build arguments VERSION, REVISION and
# CREATED fill the OCI labels, e.g. --build-arg REVISION="$(git rev-parse HEAD)".
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# uv pinned, as uv's Docker guide advises; the same minor version that writes uv.lock.
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=0
WORKDIR /app
ARG SERVICE
# Dependencies first, so code changes reuse this layer.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=shared/pyproject.toml,target=shared/pyproject.toml \
    --mount=type=bind,source=runtime/pyproject.toml,target=runtime/pyproject.toml \
    --mount=type=bind,source=tools/devstack/pyproject.toml,target=tools/devstack/pyproject.toml \
    --mount=type=bind,source=tools/cli/pyproject.toml,target=tools/cli/pyproject.toml \
    --mount=type=bind,source=tools/bench/pyproject.toml,target=tools/bench/pyproject.toml \
    --mount=type=bind,source=services/catalog/pyproject.toml,target=services/catalog/pyproject.toml \
    --mount=type=bind,source=services/stock/pyproject.toml,target=services/stock/pyproject.toml \
    --mount=type=bind,source=services/serial-registry/pyproject.toml,target=services/serial-registry/pyproject.toml \
    --mount=type=bind,source=services/recall/pyproject.toml,target=services/recall/pyproject.toml \
    uv sync --locked --no-dev --no-install-workspace --package "lotline-${SERVICE}"
COPY . /app
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package "lotline-${SERVICE}"

FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="lotline-${SERVICE}" \
      org.opencontainers.image.description="Lotline ${SERVICE}: retail inventory with lot and serial traceability" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.vendor="Lotline" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# A numeric user and group (10001, as the Kubernetes manifests' runAsUser says), so
# `runAsNonRoot` can verify the image without resolving a name; no home, no login shell.
RUN groupadd --system --gid 10001 lotline \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin lotline
COPY --from=build --chown=10001:10001 /app/.venv /app/.venv
# Bytecode was compiled at build time: nothing writes it at run time, so the root
# filesystem can be read-only.
ENV PATH="/app/.venv/bin:${PATH}" \
    LOTLINE_SERVICE="${SERVICE}" \
    HTTP_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# The entry point script of the service (lotline-stock, lotline-serial-registry, ...).
CMD ["sh", "-c", "exec lotline-${LOTLINE_SERVICE}"]
