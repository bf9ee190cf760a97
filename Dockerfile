FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY services ./services
COPY projections ./projections
COPY workers ./workers
COPY bench ./bench
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /app ticketing
# The service keeps nothing on local disk in a container (PostgreSQL and Redis hold it
# all), so it runs unprivileged.
USER ticketing
ENV TICKETING_HOST=0.0.0.0 TICKETING_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
CMD ["ticketing", "serve"]
