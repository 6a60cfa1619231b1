# One image for every evalsvc service of compose.yaml: `evalsvc serve` (GPU), `evalsvc worker`,
# `evalsvc db upgrade`. The command is the service's; the entrypoint is the `evalsvc` CLI.
#
#   docker build -t evalsvc .                                   # CUDA wheels of torch
#   docker build -t evalsvc --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libsndfile decodes the audio; curl serves the API's healthcheck.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libsndfile1 curl \
    && rm -rf /var/lib/apt/lists/*

# torch first, in its own layer: the largest download, and independent of the code.
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cu128"
RUN pip install "${TORCH_SPEC}" --index-url "${TORCH_INDEX}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY evalsvc ./evalsvc
# A plain install: the migrations are package data of evalsvc.store, so nothing needs the source tree.
RUN pip install . && rm -rf /app/evalsvc /app/build

RUN useradd --create-home --uid 1000 evalsvc \
    && mkdir -p /var/lib/evalsvc \
    && chown evalsvc /var/lib/evalsvc
USER evalsvc
ENV EVALSVC_DATA_DIR=/var/lib/evalsvc \
    HF_HOME=/var/lib/evalsvc/huggingface

ENTRYPOINT ["evalsvc"]
CMD ["--help"]
