# One image for the services and the gateway; docker-compose.yml picks the command.
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY proxy_addons ./proxy_addons
# gcc only while installing: it compiles the C flows.mitm encoder (proxy_addons/_tnetc.c)
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
ENV PYTHONUNBUFFERED=1
EXPOSE 8000 8001 8002 8081
CMD ["python", "-m", "services", "a"]
