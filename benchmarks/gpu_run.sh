#!/usr/bin/env bash
# The benchmark as one prepared command for a lent GPU machine (the `device` tool):
#
#   bash benchmarks/gpu_run.sh            # on the device; RESULTS.md comes back under $OUT
#
# That machine's image already holds JAX with CUDA, optax, chex, absl-py, scikit-learn,
# matplotlib and PyTorch, and can fetch nothing, so nothing is installed here. The copy of
# benchmarks/RESULTS.md that comes back keeps the CPU section and gains a "## GPU results"
# one (see experiments/benchmark.py); copy it over benchmarks/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/linear_jax_benchmark}"
mkdir -p "$out"
cp benchmarks/RESULTS.md "$out/RESULTS.md"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
fi
python3 -c 'import jax; print("JAX", jax.__version__, jax.devices())' | tee -a "$out/gpu.txt"
PYTHONUNBUFFERED=1 PYTHONPATH=. python3 -m experiments.benchmark \
  --out="$out/RESULTS.md" --json_out="$out/results_gpu.json" "$@" 2>&1 | tee "$out/log.txt"
