r"""Benchmark section: loading and preparing a large features file, against a plain `np.load`.

    python -m benchmarks.loading            # 200,000 x 1,024 float32 (0.82 GB), npz and npy
    python -m benchmarks.loading --quick    # 20,000 x 256, a smoke test

Writes the files into a temporary folder (removed after) and measures, each
in a fresh subprocess, taking turns, the median of `repeats` runs:
- a plain `np.load` of the same file into memory (the floor a loader can reach);
- `data.load` + `data.prepare` (split, standardize, cast) as the experiments run them;
- the digits dataset loaded and prepared the same way: the baseline resident memory.
Peak resident memory is the process's `VmHWM` (`/proc/self/status`; `ru_maxrss`
where that is missing). The section is `run(quick) -> dict` and
`markdown(results) -> str`, for `benchmarks.run`.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run in a fresh interpreter: prints {"seconds": ..., "peak": ...} for one contender.
_CHILD = r"""
import json, resource, sys, time
import numpy as np
from linear_jax.data import datasets as data

def peak():
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

what, fmt, folder = sys.argv[1:4]
x_path = folder + ('/d.npz' if fmt == 'npz' else '/x.npy')
y_path = folder + '/y.npy'
t = time.perf_counter()
if what == 'np_load':
  if fmt == 'npz':
    with np.load(x_path, allow_pickle=False) as f:
      x, y = f['x'], f['y']
  else:
    x, y = np.load(x_path, allow_pickle=False), np.load(y_path, allow_pickle=False)
elif what == 'prepare':
  raw = data.load(fmt, data_path=x_path, labels_path=y_path if fmt == 'npy' else None, check_values=False)
  ds = data.prepare(raw, fmt)
else:
  ds = data.prepare(data.load('digits'), 'digits')
seconds = time.perf_counter() - t
print(json.dumps({'seconds': seconds, 'peak': peak()}))
"""


def _child(what, fmt, folder):
  out = subprocess.run(
    [sys.executable, '-c', _CHILD, what, fmt, folder],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
    env={**os.environ, 'JAX_PLATFORMS': os.environ.get('JAX_PLATFORMS', 'cpu')},
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def write_files(folder, n, d, seed=0):
  """`x.npy`, `y.npy` and `d.npz` (x, y, uncompressed) of `n` x `d` float32 features, 10 classes."""
  rng = np.random.default_rng(seed)
  x = np.lib.format.open_memmap(os.path.join(folder, 'x.npy'), 'w+', np.float32, (n, d))
  step = max(1, 2**24 // d)
  for a in range(0, n, step):
    x[a : a + step] = rng.standard_normal((min(step, n - a), d), dtype=np.float32) * 2.0 + 1.0
  x.flush()
  y = rng.integers(0, 10, n)
  np.save(os.path.join(folder, 'y.npy'), y)
  np.savez(os.path.join(folder, 'd.npz'), x=x, y=y)
  del x
  return n * d * 4


def run(quick=False, repeats=None):
  """Measures the section; returns every number (seconds are medians over `repeats` turns)."""
  n, d = (20_000, 256) if quick else (200_000, 1024)
  repeats = repeats or (1 if quick else 5)
  folder = tempfile.mkdtemp(prefix='bench_data_')
  try:
    data_bytes = write_files(folder, n, d)
    results = {'rows': n, 'features': d, 'data_bytes': data_bytes, 'repeats': repeats, 'formats': {}}
    baseline = [_child('digits', 'npz', folder)['peak'] for _ in range(repeats)]
    results['baseline_peak'] = float(np.median(baseline))
    for fmt in ('npz', 'npy'):
      runs = {'np_load': [], 'prepare': []}
      for _ in range(repeats):
        for what, rs in runs.items():  # taking turns: a noisy neighbour slows both alike
          rs.append(_child(what, fmt, folder))
      row = {}
      for what, rs in runs.items():
        row[f'{what}_seconds'] = float(np.median([r['seconds'] for r in rs]))
        row[f'{what}_peak'] = float(np.median([r['peak'] for r in rs]))
      row['time_ratio'] = row['prepare_seconds'] / row['np_load_seconds']
      row['peak_above_baseline'] = row['prepare_peak'] - results['baseline_peak']
      row['peak_ratio'] = row['peak_above_baseline'] / data_bytes
      results['formats'][fmt] = row
    return results
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def markdown(results):
  """The section as a Markdown table."""
  gb = results['data_bytes'] / 1e9
  lines = [
    f'### 6. Loading a large file: {results["rows"]:,} x {results["features"]:,} float32 ({gb:.2f} GB)',
    '',
    f'Each contender in a fresh process, taking turns, median of {results["repeats"]}. Peak memory is '
    f'VmHWM above the digits baseline ({results["baseline_peak"] / 1e9:.2f} GB), as a multiple of the '
    "data's bytes.",
    '',
    '| file | plain `np.load` | `load` + `prepare` | time ratio | peak above baseline | / data bytes |',
    '| --- | --- | --- | --- | --- | --- |',
  ]
  for fmt, r in results['formats'].items():
    lines.append(
      f'| {fmt} | {r["np_load_seconds"]:.2f} s | {r["prepare_seconds"]:.2f} s | {r["time_ratio"]:.2f}x | '
      f'{r["peak_above_baseline"] / 1e9:.2f} GB | {r["peak_ratio"]:.2f}x |'
    )
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  others = [a for a in sys.argv[1:] if a != '--quick']
  if others:  # --help and its kin, or a flag this script does not have
    print(__doc__)
    helps = ('-h', '--help', '--helpshort', '--helpfull')
    sys.exit(0 if all(a in helps for a in others) else f'unknown flag(s): {" ".join(others)}')
  quick = '--quick' in sys.argv[1:]
  res = run(quick)
  print(markdown(res))
  print(json.dumps(res))
