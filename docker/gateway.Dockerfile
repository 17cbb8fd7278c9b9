# The REST gateway: no torch, no models, no worker code (jobs run on the workers; the
# gateway sends them by task name through Redis). Only facecloak/ and service/ are copied;
# package discovery in pyproject.toml simply finds no workers/ or models/ here.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md openapi.yaml ./
COPY facecloak facecloak
COPY service service
RUN pip install ".[service]"
RUN useradd --create-home facecloak
USER facecloak
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["facecloak", "serve", "--host", "0.0.0.0", "--port", "8000"]
