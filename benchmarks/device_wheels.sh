#!/usr/bin/env bash
# The lent GPU machines reach no package index: wheels the GPU benchmark can use beyond the
# image's torch are downloaded here, into the ignored .device_wheels/, and carried with the run
# (the device tool's `carry: [".device_wheels"]`), then installed there with
#   python3 -m pip install -q --no-index --find-links .device_wheels/tf transformers
#   python3 -m pip install -q --no-deps --no-index .device_wheels/liger_kernel-*.whl
# for `benchmarks/train_gpu.py --transformers` and `--check-head`'s Liger-Kernel row, and
#   python3 -m pip install -q --no-index --find-links .device_wheels/config pydantic==2.14.3
# for every row that goes through the trainer's config (``trainer.config`` is pydantic; the image has none).
# The image: Python 3.12, torch 2.11.0+cu130 (benchmarks/DEVICE_NOTES.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p .device_wheels/tf
"$PY" -m pip download -q --no-deps -d .device_wheels liger-kernel==0.8.5
"$PY" -m pip download -q -d .device_wheels/tf --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 transformers==5.23.0
"$PY" -m pip download -q -d .device_wheels/config --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 pydantic==2.14.3
du -sh .device_wheels
