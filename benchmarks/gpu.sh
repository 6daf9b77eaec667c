#!/usr/bin/env bash
# The GPU checks in one go (< 5 min), for a machine with a CUDA device and the gpu extra installed
# (`make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`, then
# `.venv/bin/pip install -e '.[gpu]'`): the CUDA tests (real selection + compiled Triton kernels vs float64
# dense), then the short GPU bench (ratios vs cuBLAS dense of the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c 'import torch, triton; assert torch.cuda.is_available(), "no CUDA device"; print("torch", torch.__version__, "triton", triton.__version__, torch.cuda.get_device_name())'
timeout 180 "$PY" -m pytest -m cuda -q tests/
timeout 150 "$(dirname "$PY")/sparseforge" bench linear --device cuda --repeats 20 "$@"
