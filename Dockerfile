# Clickmint against external Valkey/Redis and PostgreSQL (see compose.yaml): no embedded servers here.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY clickmint clickmint
COPY tracker tracker
COPY billing billing
COPY portal portal
COPY schemas schemas
COPY loadtests loadtests
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --home /var/lib/clickmint --create-home clickmint
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER clickmint
WORKDIR /var/lib/clickmint
ENV CLICKMINT_MODE=production \
    CLICKMINT_HOST=0.0.0.0 \
    CLICKMINT_DATA_DIR=/var/lib/clickmint
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["clickmint", "up"]
