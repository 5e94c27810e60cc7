# Image for both console scripts of the read model: `projector` and `query-api`.
#   docker build -t delivery-read-model .
#   docker run --rm delivery-read-model projector --help
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# psycopg[binary] ships its own libpq, so no system packages are needed.
COPY pyproject.toml README.md ./
COPY schema ./schema
COPY producer ./producer
COPY projector ./projector
COPY query_api ./query_api
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --create-home --home-dir /home/app --uid 10001 --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
USER app
# writable working directory (the default DATABASE_URL is a SQLite file in ./)
WORKDIR /home/app
EXPOSE 8000
CMD ["query-api", "--host", "0.0.0.0", "--port", "8000"]
