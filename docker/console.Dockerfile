# syntax=docker/dockerfile:1
# Console image: the operations web console (`python -m console`). It reads the producer's
# outbox and the consumer's database and uses their code, so it installs the `console`
# extra (which includes the producer's and the consumer's dependencies).
# Build from the repository root:
#   docker build -f docker/console.Dockerfile -t servicebus-events/console .

# --- build: exactly the locked dependencies of the `console` extra, then the package ---
# Base image pinned to a Python patch release on Debian 12 (bookworm); bump both stages
# together, deliberately.
FROM python:3.11.14-slim-bookworm AS build
# uv (from PyPI, the version the Makefile pins) installs uv.lock into /opt/venv with the
# image's interpreter; it stays in this stage. Bytecode is compiled here because the
# runtime never writes it (PYTHONDONTWRITEBYTECODE).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock or pyproject.toml changes.
# --locked fails the build when uv.lock does not match pyproject.toml.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --extra console --no-install-project --no-editable
COPY README.md ./
COPY contracts ./contracts
COPY common ./common
COPY producer ./producer
COPY consumer ./consumer
COPY console ./console
RUN uv sync --locked --no-dev --extra console --no-editable

# --- runtime: the virtual environment and a non-root user, nothing else ---
FROM python:3.11.14-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CONSOLE_HOST=0.0.0.0 \
    CONSOLE_PORT=8090
# Fixed uid/gid so volume permissions are predictable; the console writes nothing locally.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /var/lib/servicebus-events \
       --shell /usr/sbin/nologin app \
    && install --directory --owner=app --group=app --mode=0750 /var/lib/servicebus-events
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/servicebus-events
USER 10001:10001
EXPOSE 8090
# Docker / Compose use this; Azure Container Apps ignores it and uses its own probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CONSOLE_PORT', '8090'), timeout=4)"]
ENTRYPOINT ["python", "-m", "console"]
