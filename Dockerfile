FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY services ./services
COPY projections ./projections
COPY workers ./workers
COPY bench ./bench
RUN pip install --no-cache-dir .
ENV TICKETING_HOST=0.0.0.0 TICKETING_PORT=8000
EXPOSE 8000
CMD ["ticketing", "serve"]
