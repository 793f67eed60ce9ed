r"""Benchmarks the whole training run as a user waits for it: fit against fit, streaming, memory.

    python -m benchmarks.wholerun
    python -m benchmarks.wholerun --quick          # small sizes: a smoke test of this script
    python -m benchmarks.wholerun --big            # adds 1.28M × 1,024 float32 (5.2 GB on disk)

`run(quick)` measures and returns every number; `markdown(results)` turns
them into a table (`benchmarks/run.py` calls both). Three parts, all
in one run on one machine:

1. whole `train.fit` against whole `SGDClassifier.fit` on 10,000 × 3,072 ×
   10 classes, 10 epochs of batch 256, the contenders alternated and medians
   quoted, on the plain NumPy arrays and on the same rows as `data.prepare`
   returns them (aligned: no copy to the CPU device); epoch-only throughput
   beside it, labelled as such;
2. streamed against in-memory training on the same data (an `.npy` file read
   through a memory map), examples/s of the epochs and of the whole fit;
3. peak resident memory (`VmHWM`) of a fresh process that streams a
   200,000 × 1,024 float32 `.npy`, and of one that trains on it in memory,
   above a baseline process that trains on a tiny in-memory set.

With `big` (never in quick mode), a 1.28M × 1,024 float32 `.npy` is written
to a temporary folder, one streamed SGD epoch and one streamed full-batch
step are timed in a fresh process, and the folder is removed.
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

from absl import app
from absl import flags
import numpy as np

from .training import cifar_like

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cifar_like(n):
  """Section 2's CIFAR-shaped float32 data (another seed), with int64 labels."""
  x, y = cifar_like(n, seed=1)
  return x, y.astype(np.int64)


def _dataset(x, y, name='cifar-shaped', num_classes=10):
  """A training split `x, y` (an array or a memory map) as a `Dataset`, with no validation or test split."""
  from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel

  d = x.shape[1]
  empty = np.zeros((0, d), np.float32)
  return data.Dataset(
    name=name,
    x_train=x,
    y_train=y,
    x_val=empty,
    y_val=np.zeros(0, np.int64),
    x_test=empty,
    y_test=np.zeros(0, np.int64),
    kind='class',
    num_classes=num_classes,
    shift=np.zeros(d, np.float32),
    scale=np.ones(d, np.float32),
  )


# Seconds of rest before each timed call: a BLAS or XLA thread pool spins for about 0.1 s after
# its work, and would otherwise take the cores from whichever contender runs next.
PAUSE = 0.25


# The whole fit the target is set for: on `data.prepare`'s splits, as the command line trains.
PREPARED = "fit on data.prepare's splits, --eval_every=epochs"
# The same on plain NumPy arrays, which are copied (into fresh memory) to reach the device.
PLAIN = 'fit on plain NumPy arrays (copied once to 64-byte alignment), --eval_every=epochs'


def _alternate(fns, rounds):
  """`{name: [seconds, ...]}`: each of `{name: fn}` once per round, in turn, after a warm-up call each.

  Round `r` starts at the `r`-th contender (the order rotates), so no contender
  always follows the same one.
  """
  for fn in fns.values():
    fn()
  times = {name: [] for name in fns}
  names = list(fns)
  for r in range(rounds):
    for name in names[r % len(names) :] + names[: r % len(names)]:
      fn = fns[name]
      time.sleep(PAUSE)
      t = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t)
  return times


def floor_epochs(x, y, epochs, batch=256, lr=0.01, reg=1e-4):
  """A hand-written JAX SGD loop for softmax: `fit() -> None`, the floor a compiled epoch can reach here.

  One jitted epoch: a permutation, padded batches, and per step the row gather,
  the two products and the softmax, nothing else (no optax, no masks beyond
  the padding, no checks, no evaluation, no host round trip but the last).
  `train.fit`'s epochs run the same operations, so this measures what the
  machine allows, against which the whole fit's overhead can be read.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  n, d = x.shape
  c = int(y.max()) + 1
  steps = -(-n // batch)

  @jax.jit
  def epoch(w, b, xd, yd, key):
    order = jax.random.permutation(key, n)
    idx = jnp.concatenate([order, jnp.zeros(steps * batch - n, order.dtype)]).reshape(steps, batch)
    mask = (jnp.arange(steps * batch) < n).astype(w.dtype).reshape(steps, batch)

    def step(wb, im):
      (w, b), (i, m) = wb, im
      xb = xd[i]
      p = jax.nn.softmax(xb @ w.T + b)
      g = (p - jax.nn.one_hot(yd[i], c, dtype=w.dtype)) * (m / m.sum())[:, None]
      return (w - lr * (g.T @ xb + 2 * reg * w), b - lr * g.sum(0)), None  # reg · ΣW²

    return jax.lax.scan(step, (w, b), (idx, mask))[0]

  def fit():  # the data moved to the device inside, as the whole fits do
    xd, yd = jax.device_put(x), jax.device_put(y.astype(np.int32))
    w, b = jnp.zeros((c, d), jnp.float32), jnp.zeros(c, jnp.float32)
    for e in range(epochs):
      w, b = epoch(w, b, xd, yd, jax.random.PRNGKey(e))
    jax.block_until_ready(w)

  return fit


def whole_fit(quick):
  """Part 1: whole `train.fit` and whole `SGDClassifier.fit`, examples/s, medians of alternated fits."""
  from sklearn.linear_model import SGDClassifier  # pylint: disable=import-outside-toplevel

  from linear_jax.optim import config
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  n, epochs, rounds = (2000, 2, 1) if quick else (10000, 10, 5)
  from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel
  from linear_jax.data.build import from_arrays  # pylint: disable=import-outside-toplevel

  x, y = _cifar_like(n)
  ds = _dataset(x, y)
  # The same rows as the command line has them: `data.prepare`'s splits, 64-byte aligned, so the
  # CPU device takes them without the copy the plain NumPy arrays above need.
  prepared = data.prepare(from_arrays(x, y), 'cifar-shaped', val_fraction=0.0, test_fraction=0.0)
  cfg = config.TrainConfig(loss='softmax', batch_size=256, epochs=epochs, learning_rate=0.01, reg=1e-4)
  epoch_rates = {'cadence': [], 'every': [], 'prepared': []}

  def ours(eval_every, label, dataset=ds):
    def fit():
      result = train.fit(dataclasses.replace(cfg, eval_every=eval_every), dataset)
      epoch_rates[label].append(float(np.median([m['examples_per_s'] for m in result.history[1:]])))

    return fit

  def sklearn():
    clf = SGDClassifier(loss='log_loss', max_iter=epochs, tol=None, alpha=1e-4, random_state=0)
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # max_iter reached: we ask for exactly `epochs`
      clf.fit(x, y)

  times = _alternate(
    {
      PLAIN: ours(epochs, 'cadence'),
      'fit on plain NumPy arrays, evaluation every epoch': ours(1, 'every'),
      PREPARED: ours(epochs, 'prepared', prepared),
      'floor: a hand-written JAX SGD loop, the same steps and nothing else': floor_epochs(x, y, epochs),
      'SGDClassifier.fit': sklearn,
    },
    rounds,
  )
  examples = n * epochs
  out = {name: examples / float(np.median(ts)) for name, ts in times.items()}
  out['epochs only (epochs 2 on), --eval_every=epochs'] = float(np.median(epoch_rates['cadence']))
  return {'n': n, 'd': 3072, 'epochs': epochs, 'rounds': rounds, 'ex_per_s': out}


def streaming(quick):
  """Part 2: streamed vs in-memory training on the same `.npy`, epoch and whole-fit examples/s."""
  from linear_jax.optim import config  # pylint: disable=import-outside-toplevel
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  n, epochs, rounds = (2000, 3, 1) if quick else (10000, 10, 5)
  x, y = _cifar_like(n)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'x.npy')
    np.save(path, x)
    mapped = np.load(path, mmap_mode='r', allow_pickle=False)
    cfg = config.TrainConfig(
      loss='softmax', batch_size=256, epochs=epochs, learning_rate=0.01, eval_every=epochs
    )
    rates = {'stream': [], 'memory': []}

    def fit(label, ds, **changes):
      def go():
        result = train.fit(dataclasses.replace(cfg, **changes), ds)
        assert result.streamed == (label == 'stream')
        rates[label].append(float(np.median([m['examples_per_s'] for m in result.history[1:]])))

      return go

    times = _alternate(
      {'stream': fit('stream', _dataset(mapped, y), stream=True), 'memory': fit('memory', _dataset(x, y))},
      rounds,
    )
    block = config.TrainConfig(batch_size=256)
    from linear_jax.datapath import stream  # pylint: disable=import-outside-toplevel

    rows = stream.block_rows(block, n, x.shape[1], 4)
    del mapped
  whole = {k: n * epochs / float(np.median(v)) for k, v in times.items()}
  epoch = {k: float(np.median(v)) for k, v in rates.items()}
  return {'n': n, 'epochs': epochs, 'block_rows': rows, 'whole_ex_per_s': whole, 'epoch_ex_per_s': epoch}


# Runs in a fresh process, so that its peak resident memory (VmHWM) is its own.
_CHILD = r"""
import json, sys, time
import numpy as np
from benchmarks import wholerun as b
from linear_jax.training import train
from linear_jax.optim import config
from linear_jax.optim import step
mode, path, labels, epochs, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
y = np.load(labels, allow_pickle=False)
x = np.load(path, mmap_mode='r', allow_pickle=False)
if mode == 'baseline':
  x, y = np.array(x[:1024]), y[:1024]
cfg = config.TrainConfig(batch_size=batch, epochs=epochs, eval_every=epochs, stream=mode == 'stream',
                        learning_rate=0.01)
t = time.perf_counter()
result = train.fit(cfg, b._dataset(x, y))
seconds = time.perf_counter() - t
hwm = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM'))
print(json.dumps({'vmhwm': hwm, 'seconds': seconds, 'streamed': result.streamed,
                  'epoch_ex_per_s': [m['examples_per_s'] for m in result.history],
                  'loss': result.history[-1]['train_loss']}))
"""


def _child(mode, path, labels, epochs=1, batch=256):
  out = subprocess.run(
    [
      sys.executable,
      '-c',
      _CHILD,
      mode,
      path,
      labels,
      str(epochs),
      str(batch),
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
    env={**os.environ, 'PYTHONPATH': ROOT},
  )
  if out.returncode:
    raise RuntimeError(f'benchmark child ({mode}) failed:\n{out.stderr[-3000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def _write_npy(folder, n, d, chunk=65536, seed=0):
  """`(x.npy, y.npy)` paths of `n × d` float32 features with a linear signal, written in chunks."""
  rng = np.random.default_rng(seed)
  means = rng.standard_normal((10, d), dtype=np.float32) * 0.05
  y = rng.integers(0, 10, n).astype(np.int64)
  xp, yp = os.path.join(folder, 'x.npy'), os.path.join(folder, 'y.npy')
  x = np.lib.format.open_memmap(xp, mode='w+', dtype=np.float32, shape=(n, d))
  for a in range(0, n, chunk):
    b = min(a + chunk, n)
    x[a:b] = means[y[a:b]] + rng.standard_normal((b - a, d), dtype=np.float32)
  x.flush()
  del x
  np.save(yp, y)
  return xp, yp


def memory(quick):
  """Part 3: peak resident memory above a baseline process, streamed and in memory, per byte of data."""
  n, d = (20000, 256) if quick else (200000, 1024)
  with tempfile.TemporaryDirectory() as tmp:
    xp, yp = _write_npy(tmp, n, d)
    base = _child('baseline', xp, yp)
    streamed = _child('stream', xp, yp)
    in_memory = _child('memory', xp, yp)
  data_bytes = n * d * 4
  above = lambda r: (r['vmhwm'] - base['vmhwm']) / data_bytes
  return {
    'n': n,
    'd': d,
    'data_bytes': data_bytes,
    'baseline_vmhwm': base['vmhwm'],
    'stream': {**streamed, 'above_baseline_per_data_byte': above(streamed)},
    'memory': {**in_memory, 'above_baseline_per_data_byte': above(in_memory)},
  }


def big(n=1_280_000, d=1024):
  """The optional large run: one streamed SGD epoch and one streamed full-batch step on `n × d` float32."""
  with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    xp, yp = _write_npy(tmp, n, d)
    written = time.perf_counter() - t
    base = _child('baseline', xp, yp)
    sgd = _child('stream', xp, yp, epochs=1, batch=256)
    full = _child('stream', xp, yp, epochs=1, batch=0)
  data_bytes = n * d * 4
  above = lambda r: (r['vmhwm'] - base['vmhwm']) / data_bytes
  return {
    'n': n,
    'd': d,
    'data_bytes': data_bytes,
    'write_seconds': written,
    'sgd': {**sgd, 'above_baseline_per_data_byte': above(sgd)},
    'full_batch': {**full, 'above_baseline_per_data_byte': above(full)},
  }


def run(quick, include_big=False):
  """Every measurement of this module, as a dict (see the module docstring)."""
  out = {'whole_fit': whole_fit(quick), 'streaming': streaming(quick), 'memory': memory(quick)}
  if include_big and not quick:
    out['big'] = big()
  return out


def markdown(results):
  """The results as a markdown table with a line of context under it."""
  rows = ['### 7. The whole run: fits as a user waits, streaming, memory', '']
  rows += ['| what | examples/s or bytes | ratio | target |', '| --- | --- | --- | --- |']
  w = results['whole_fit']
  rates = w['ex_per_s']
  sk = rates['SGDClassifier.fit']
  for name, value in rates.items():
    if name == 'SGDClassifier.fit':
      continue
    # The target is the command line's path: `data.prepare`'s aligned splits, taken without a copy.
    target = '≥ 12×' if name == PREPARED else ''
    rows.append(
      f'| {name} vs whole SGDClassifier.fit | {value:,.0f} vs {sk:,.0f} | {value / sk:.1f}× | {target} |'
    )
  s = results['streaming']
  for part in ('epoch', 'whole'):
    st, mem = s[f'{part}_ex_per_s']['stream'], s[f'{part}_ex_per_s']['memory']
    rows.append(
      f'| streamed vs in-memory, {part} ({s["block_rows"]:,}-row blocks) | {st:,.0f} vs {mem:,.0f} | '
      f'{100 * st / mem:.0f}% | {"≥ 80%" if part == "epoch" else ""} |'
    )
  m = results['memory']
  for mode, target in (('stream', '≤ 0.3×'), ('memory', '≤ 1.5×')):
    r = m[mode]
    rows.append(
      f'| peak memory above baseline, {m["n"]:,} × {m["d"]:,} float32, {mode} | '
      f'{(r["vmhwm"] - m["baseline_vmhwm"]) / 2**20:,.0f} MiB of {m["data_bytes"] / 2**20:,.0f} MiB data | '
      f'{r["above_baseline_per_data_byte"]:.2f}× | {target} |'
    )
  if 'big' in results:
    b = results['big']
    for mode in ('sgd', 'full_batch'):
      r = b[mode]
      rows.append(
        f'| {b["n"]:,} × {b["d"]:,} float32 streamed, 1 epoch {mode.replace("_", "-")} | '
        f'{r["epoch_ex_per_s"][0]:,.0f} ex/s; {r["seconds"]:.0f} s whole fit | '
        f'{r["above_baseline_per_data_byte"]:.2f}× data above baseline | |'
      )
  note = (
    f'\nWhole fits: {w["n"]:,} × {w["d"]:,} × 10 classes, {w["epochs"]} epochs of batch 256, '
    'softmax / log_loss, '
    f'medians of {w["rounds"]} alternated fits after a warm-up, each after {PAUSE:g} s of rest (thread pools '
    'spin after their work); data moved to the device inside each fit. '
    'Epoch-only: the median epoch of the fits, the first (compiling) epoch left out.\n'
  )
  return '\n'.join(rows) + '\n' + note


def main(argv):
  del argv
  results = run(flags.FLAGS.quick, include_big=flags.FLAGS.big)
  print(markdown(results))
  if flags.FLAGS.json_out:
    with open(flags.FLAGS.json_out, 'w') as f:
      json.dump(results, f, indent=1)


if __name__ == '__main__':
  flags.DEFINE_bool('quick', False, 'Small sizes: a smoke test of this script.')
  flags.DEFINE_bool(
    'big', False, 'Also the 1.28M × 1,024 float32 run (5.2 GB written to a temporary folder).'
  )
  flags.DEFINE_string('json_out', None, 'Also write every number as JSON here.')
  app.run(main)
