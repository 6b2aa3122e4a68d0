# Clickmint against external Valkey/Redis and PostgreSQL: no embedded servers in this image.
# One image for every part: `clickmint migrate`, `clickmint ingest`, `clickmint up`, or uvicorn serving
# tracker.app:create_app / portal.app:create_app (see compose.yaml and docs/DEPLOY.md).
#
#   docker build -t clickmint .

# --- builder: build the wheel and install it with its dependencies into a venv ---------------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kernel kernel
COPY clickmint clickmint
COPY tracker tracker
COPY billing billing
COPY portal portal
COPY schemas schemas
COPY loadtests loadtests
# Every dependency ships a manylinux wheel, so nothing is compiled here either.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/clickmint \
 && /opt/clickmint/bin/pip install /wheels/clickmint-*.whl

# --- runtime: the venv only, as an unprivileged user ----------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/clickmint/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CLICKMINT_MODE=production \
    CLICKMINT_HOST=0.0.0.0 \
    CLICKMINT_DATA_DIR=/var/lib/clickmint
RUN groupadd --system --gid 10001 clickmint \
 && useradd --system --uid 10001 --gid clickmint --home-dir /var/lib/clickmint --create-home \
        --shell /usr/sbin/nologin clickmint
COPY --from=builder /opt/clickmint /opt/clickmint
USER clickmint
# The tracker's spool lives here: mount a volume so spooled events survive a container restart.
WORKDIR /var/lib/clickmint
EXPOSE 8000 8001
# Ready = configuration loaded and Redis reachable or the spool writable. compose.yaml sets its own
# check per service (portal /healthz, ingest's consumer in Redis).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CLICKMINT_TRACKER_PORT', '8000') + '/readyz', timeout=2)"
ENTRYPOINT ["clickmint"]
CMD ["up"]
