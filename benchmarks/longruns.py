r"""Long runs, measured: the cost of sweep checkpoints, and the time from SIGTERM to exit.

    python -m benchmarks.longruns            # prints the Markdown table
    python -m benchmarks.longruns --quick    # small sizes, a smoke test

`run(quick)` returns every number; `markdown(results)` renders the table.

1. Checkpoint overhead: one 64-model CIFAR-shaped sweep (3,072 features, 10
   classes, synthetic data, momentum) with checkpoints at the default interval
   (`sweep.CHECKPOINT_EVERY` epochs and after the chunk) and without, in the
   same process, the two alternated, each timed several times; the medians
   and their ratio, the median of the ratios of each adjacent pair, and the
   time spent inside the checkpoint code itself (timed there), which a noisy
   neighbour does not blur as it does the difference of two whole runs.
2. SIGTERM to exit: `experiments.lr_sweep` on the same shape of data in a
   fresh process; SIGTERM at a random moment of its training (after its first
   epoch line, so compilation is behind it), and the wall time until the
   process has exited with the checkpoint written (status 75). Median and
   worst of several runs.
"""

import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _sizes(quick):
  # 64 models: 16 learning rates × 4 regs, as `lr_sweep --num_lrs=16 --regs=0,1e-4,1e-3,1e-2`.
  return {
    'models': 64,
    'features': 3072,
    'classes': 10,
    'examples': 600 if quick else 2500,  # before the validation / test split
    'epochs': 12 if quick else 20,
    'repeats': 2 if quick else 5,
    'signals': 2 if quick else 7,
  }


def _dataset(size):
  from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel

  raw = data.blobs(size['examples'], size['features'], size['classes'], seed=0)
  return data.prepare(raw, 'cifar-shaped blobs', seed=0)


def checkpoint_overhead(size):
  """Median seconds of the same sweep with and without checkpoints, alternated in one process."""
  from linear_jax.optim import config
  from linear_jax.tuning import sweep  # pylint: disable=import-outside-toplevel
  from linear_jax.tuning import sweep_state  # pylint: disable=import-outside-toplevel

  ds = _dataset(size)
  cfg = config.TrainConfig(epochs=size['epochs'], batch_size=64, optimizer='momentum')
  settings = sweep.grid(list(np.logspace(-4, 1, 16)), [0.0, 1e-4, 1e-3, 1e-2])
  folder = tempfile.mkdtemp(prefix='bench-longruns-')
  path = os.path.join(folder, 'sweep_checkpoint.npz')
  runs = {
    'without': lambda: sweep.run_sweep(cfg, ds, settings),
    'with': lambda: sweep.run_sweep(cfg, ds, settings, checkpoint_path=path),
  }
  # The time spent in the checkpoint's own work (fingerprinting the data, writing), timed inside
  # the 'with' runs: robust to a noisy neighbour, unlike the difference of two whole runs.
  spent = []
  save, ident = sweep_state.save, sweep_state.identity

  def timed(fn):
    def wrapper(*args, **kwargs):
      t = time.perf_counter()
      try:
        return fn(*args, **kwargs)
      finally:
        spent[-1] += time.perf_counter() - t

    return wrapper

  times = {name: [] for name in runs}
  sweep_state.save, sweep_state.identity = timed(save), timed(ident)
  try:
    for fn in runs.values():  # compile, and touch the disk once
      spent.append(0.0)
      fn()
    spent.clear()
    for r in range(size['repeats']):
      for name in runs if r % 2 == 0 else reversed(list(runs)):  # alternated, each going first in turn
        spent.append(0.0)
        t = time.perf_counter()
        runs[name]()
        times[name].append(time.perf_counter() - t)
  finally:
    sweep_state.save, sweep_state.identity = save, ident
  saves = size['epochs'] // sweep.CHECKPOINT_EVERY + (size['epochs'] % sweep.CHECKPOINT_EVERY != 0)
  out = {name: float(np.median(ts)) for name, ts in times.items()}
  pairs = [w / wo - 1 for w, wo in zip(times['with'], times['without'], strict=True)]
  in_checkpoints = [s for s in spent if s > 0]
  out.update(
    every=sweep.CHECKPOINT_EVERY,
    saves=saves,
    checkpoint_mb=os.path.getsize(path) / 2**20,
    overhead=out['with'] / out['without'] - 1,
    paired_overhead=float(np.median(pairs)),
    checkpoint_s=float(np.median(in_checkpoints)),
    checkpoint_fraction=float(np.median(in_checkpoints) / out['with']),
    all_times=times,
  )
  os.remove(path)
  os.rmdir(folder)
  return out


def sigterm_to_exit(size, seed=0):
  """Seconds from SIGTERM to the exit of an `lr_sweep` process, at random moments of its training."""
  rng = random.Random(seed)
  args = [
    '--dataset=blobs',
    f'--num_examples={size["examples"]}',
    f'--num_features={size["features"]}',
    f'--num_classes={size["classes"]}',
    '--num_lrs=16',
    '--regs=0,1e-4,1e-3,1e-2',
    '--optimizer=momentum',
    '--epochs=100000',  # never ends by itself
  ]
  seconds, epoch_s, checkpoints = [], [], []
  for _ in range(size['signals']):
    work = tempfile.mkdtemp(prefix='bench-sigterm-')
    proc = subprocess.Popen(
      [sys.executable, '-m', 'experiments.lr_sweep', *args, f'--workdir={work}'],
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    try:
      first = proc.stdout.readline()  # the first epoch line: compiled, training
      t1 = time.perf_counter()
      second = proc.stdout.readline()
      epoch = time.perf_counter() - t1
      if not (first.startswith('epoch') and second.startswith('epoch')):
        raise RuntimeError(f'lr_sweep did not start: {first}{second}{proc.stderr.read()[-2000:]}')
      time.sleep(rng.uniform(0, epoch))  # a random moment of an epoch
      t = time.perf_counter()
      proc.send_signal(signal.SIGTERM)
      _, err = proc.communicate(timeout=120)
      seconds.append(time.perf_counter() - t)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
    if proc.returncode != 75 or 'checkpoint saved to' not in err:
      raise RuntimeError(f'lr_sweep did not stop cleanly (status {proc.returncode}): {err[-2000:]}')
    ckpt = os.path.join(work, 'sweep_checkpoint.npz')
    checkpoints.append(os.path.getsize(ckpt) / 2**20)
    epoch_s.append(epoch)
    for name in os.listdir(work):
      os.remove(os.path.join(work, name))
    os.rmdir(work)
  return {
    'median_s': float(np.median(seconds)),
    'max_s': float(np.max(seconds)),
    'epoch_s': float(np.median(epoch_s)),
    'checkpoint_mb': float(np.median(checkpoints)),
    'all_s': seconds,
  }


def machine():
  import platform  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel

  return {
    'cpu': platform.processor() or platform.machine(),
    'cores': os.cpu_count(),
    'device': f'{jax.devices()[0].platform}: {jax.devices()[0].device_kind}',
    'jax': jax.__version__,
  }


def run(quick=False):
  """Every figure of this module as a dict (see the module docstring)."""
  size = _sizes(quick)
  return {
    'sizes': size,
    'machine': machine(),
    'overhead': checkpoint_overhead(size),
    'sigterm': sigterm_to_exit(size),
  }


def markdown(results):
  """The figures as a Markdown section."""
  s, o, g = results['sizes'], results['overhead'], results['sigterm']
  head = (
    f'### 9. Long runs: checkpoints and SIGTERM\n\n'
    f'{s["models"]} models trained together (16 learning rates × 4 regs, momentum, batch 64) on '
    f'CIFAR-shaped synthetic data ({s["features"]:,} features, {s["classes"]} classes, '
    f'{s["examples"]:,} examples before the split); {results["machine"]["device"]}, '
    f'{results["machine"]["cores"]} cores.\n\n'
  )
  rows = [
    ['measure', 'value', 'target'],
    [
      f'sweep of {s["epochs"]} epochs, no checkpoints (median of {s["repeats"]})',
      f'{o["without"]:.2f} s',
      '',
    ],
    [
      f'same sweep, checkpoint every {o["every"]} epochs '
      f'({o["saves"]} × {o["checkpoint_mb"]:.1f} MB, fsynced)',
      f'{o["with"]:.2f} s',
      '',
    ],
    [
      'time in the checkpoints themselves (data fingerprint + writes), share of the sweep',
      f'{o["checkpoint_s"]:.3f} s = {100 * o["checkpoint_fraction"]:.1f}%',
      '< 5%',
    ],
    [
      'whole-run overhead: median of the paired ratios − 1 (ratio of the medians − 1)',
      f'{100 * o["paired_overhead"]:+.1f}% ({100 * o["overhead"]:+.1f}%)',
      '< 5%',
    ],
    [
      f'SIGTERM → exit with the checkpoint written '
      f'(median of {len(g["all_s"])}, a random moment of an epoch)',
      f'{g["median_s"]:.2f} s',
      '< 2 s',
    ],
    ['SIGTERM → exit, worst', f'{g["max_s"]:.2f} s', '< 2 s'],
    ['one epoch of the sweep (for scale)', f'{g["epoch_s"]:.2f} s', ''],
  ]
  table = '\n'.join('| ' + ' | '.join(r) + ' |' for r in [rows[0], ['---'] * 3, *rows[1:]])
  return head + table + '\n'


def main():
  import json  # pylint: disable=import-outside-toplevel

  results = run(quick='--quick' in sys.argv[1:])
  print(markdown(results))
  print(json.dumps(results, indent=1))


if __name__ == '__main__':
  main()
