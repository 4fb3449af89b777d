# linewatch worker + HTTP API. Built by docker-compose.yml; configs/ is baked in and can be
# overridden by mounting a directory on /app/configs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LINEWATCH_CONFIG_DIR=/app/configs LINEWATCH_HTTP_HOST=0.0.0.0 LINEWATCH_HTTP_PORT=8000
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY configs ./configs
RUN pip install ".[postgres]" && useradd --system --uid 10001 linewatch && mkdir -p /app/var \
    && chown linewatch /app/var
USER linewatch
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status == 200 else 1)"
ENTRYPOINT ["linewatch"]
CMD ["run"]
