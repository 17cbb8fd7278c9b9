# A GPU worker: CUDA torch and onnxruntime-gpu; one container (one process) per GPU.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 FACECLOAK_DEVICE=cuda
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN pip3 install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124
COPY pyproject.toml README.md ./
COPY facecloak facecloak
COPY models models
COPY workers workers
RUN pip3 install ".[service,engine]" prometheus-client pyyaml \
    && pip3 uninstall -y onnxruntime && pip3 install onnxruntime-gpu
RUN useradd --create-home facecloak
USER facecloak
RUN facecloak models fetch
CMD ["facecloak", "worker", "--queues", "gpu", "--concurrency", "1"]
