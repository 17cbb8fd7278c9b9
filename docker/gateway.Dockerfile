# The REST gateway: no torch, no models needed (jobs run on the workers).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY facecloak facecloak
COPY models models
COPY workers workers
COPY service service
COPY openapi.yaml ./
RUN pip install ".[service]" prometheus-client pyyaml
RUN useradd --create-home facecloak
USER facecloak
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["facecloak", "serve", "--host", "0.0.0.0", "--port", "8000"]
