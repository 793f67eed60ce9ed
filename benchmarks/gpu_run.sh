#!/usr/bin/env bash
# The benchmark as one command on a machine with a GPU:
#
#   bash benchmarks/gpu_run.sh            # writes $OUT/RESULTS.md (default /tmp/linear_jax_benchmark)
#
# It installs nothing: the machine's Python must already hold JAX with CUDA (see the README's
# "GPUs and TPUs"), optax, chex, absl-py, scikit-learn and matplotlib (and PyTorch, for its column in section 1).
# The RESULTS.md it writes keeps the CPU section of benchmarks/RESULTS.md and gains a
# "## GPU results" one (see benchmarks/run.py); copy it over benchmarks/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/linear_jax_benchmark}"
mkdir -p "$out"
cp benchmarks/RESULTS.md "$out/RESULTS.md"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
fi
python3 -c 'import jax; print("JAX", jax.__version__, jax.devices())' | tee -a "$out/gpu.txt"
PYTHONUNBUFFERED=1 PYTHONPATH=. python3 -m benchmarks.run \
  --out="$out/RESULTS.md" --json_out="$out/results_gpu.json" "$@" 2>&1 | tee "$out/log.txt"
