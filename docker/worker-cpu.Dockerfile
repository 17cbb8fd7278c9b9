# A CPU worker: CPU torch; consumes the light `cpu` queue (and `gpu` work if told to).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY facecloak facecloak
COPY models models
COPY workers workers
RUN pip install ".[service,engine]" prometheus-client pyyaml
RUN useradd --create-home facecloak
USER facecloak
# Fetch the pinned models into the image so workers start warm.
RUN facecloak models fetch
CMD ["facecloak", "worker", "--queues", "cpu"]
