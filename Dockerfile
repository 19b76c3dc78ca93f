# avlearn server / embed worker image (CPU). Build: docker build -t avlearn .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg libsndfile1 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY avlearn ./avlearn
COPY training ./training
COPY indexer ./indexer
COPY services ./services
COPY clients ./clients
COPY proto ./proto
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu .

RUN useradd --create-home --uid 1000 avlearn && mkdir -p /data /models /runs && chown avlearn /data /models /runs
USER avlearn
EXPOSE 50051 9100
ENTRYPOINT ["avlearn"]
CMD ["serve", "--help"]
