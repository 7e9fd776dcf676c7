# One image for the services and the gateway; docker-compose.yml picks the command.
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY proxy_addons ./proxy_addons
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
EXPOSE 8000 8001 8002 8081
CMD ["python", "-m", "services", "a"]
