r"""Benchmarks linear_jax against its peers, measured in one run on one machine.

    python -m experiments.benchmark --out=benchmarks/RESULTS.md

Every time is the median of --repeats runs after a warm-up; every ratio
compares two numbers measured in this run. Sections (--sections=1,2,3,4,5):
1. loss + gradient on CIFAR-shaped data against NumPy (and PyTorch if
   installed), and the effective bandwidth against a plain read of x;
2. mini-batch training throughput against scikit-learn's SGDClassifier;
3. time to accuracy on digits, imports and compilation included;
4. sweeps of K models trained together against K sequential runs;
5. gradient checking: vectorized numerical gradient against a coordinate loop;
6. loading a large file: memory and time against a plain np.load (bench_data);
7. the whole run: whole train.fit against whole SGDClassifier.fit, streaming
   against in-memory, memory with --stream (bench_wholerun);
8. reaching the optimum: objectives equal to scikit-learn's, L-BFGS and
   regularization paths against LogisticRegression (bench_optimum);
9. long runs: checkpoint overhead and SIGTERM to exit (bench_longruns).
Sections 6-9 live in their own modules, each runnable alone.

Run on a GPU, the same command adds a "## GPU results" section to the same
file (naming the card, and the fraction of its data-sheet bandwidth reached)
and keeps the CPU one.
"""

import importlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_string(
  'out',
  'benchmarks/RESULTS.md',
  'Markdown file for the tables: this backend\'s section ("## CPU results", "## GPU results") is replaced, '
  "the other backends' sections are kept.",
)
flags.DEFINE_string('json_out', None, 'Also write every number as JSON here.')
flags.DEFINE_integer('repeats', 7, 'Timed runs per measurement (median reported).', lower_bound=1)
flags.DEFINE_list(
  'sections',
  list('123456789'),
  'Which sections to run, comma-separated; the results file keeps the other sections from earlier runs.',
)
flags.DEFINE_bool('quick', False, 'Small sizes, for a smoke test of the script itself.')

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Memory bandwidth from the vendors' data sheets (GB/s), by a part of
# `device_kind`, the most specific first: a GPU section also states what
# fraction of its card's bandwidth the read and the gradient reach.
DATA_SHEET_BANDWIDTH = (
  ('H200', 4800),
  ('H100 NVL', 3900),
  ('H100 PCIe', 2000),
  ('H100', 3350),
  ('A100 80GB PCIe', 1935),
  ('A100-SXM4-80GB', 2039),
  ('A100', 1555),
)


def data_sheet_bandwidth(device_kind):
  """The card's data-sheet memory bandwidth in bytes/s, or `None` if not listed."""
  for part, gbs in DATA_SHEET_BANDWIDTH:
    if part in device_kind:
      return gbs * 1e9
  return None


def median_times(fns, repeats=None, rounds=3, warmup=1):
  """Median wall time in seconds of each of `{name: fn}`, measured in `rounds` turns.

  Each round gives every function `warmup` untimed calls, then its share of
  the `repeats` timed calls, one function after another. Taking turns spreads
  a noisy neighbour's bursts over all of them, so their ratios hold on a busy
  machine; a block of calls per turn keeps one library's idle threads (OpenMP
  spins after a parallel region) from slowing the next one's first call.
  """
  repeats = repeats or FLAGS.repeats
  rounds = max(1, min(rounds, repeats))
  times = {name: [] for name in fns}
  for r in range(rounds):
    share = repeats // rounds + (r < repeats % rounds)
    for name, fn in fns.items():
      for _ in range(warmup):
        fn()
      for _ in range(share):
        t = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - t)
  return {name: float(np.median(ts)) for name, ts in times.items()}


def median_time(fn, repeats=None, warmup=1):
  """Median wall time of `fn()` in seconds, after `warmup` untimed calls."""
  return median_times({'': fn}, repeats, rounds=1, warmup=warmup)['']


def machine():
  import jax  # pylint: disable=import-outside-toplevel

  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  dev = jax.devices()[0]
  return {
    'cpu': cpu,
    'cores': os.cpu_count(),
    'python': platform.python_version(),
    'jax': jax.__version__,
    'backend': jax.default_backend(),
    'device': f'{dev.platform}: {dev.device_kind}',
    'date': time.strftime('%Y-%m-%d'),
  }


def _cifar_like(n, d=3072, c=10, seed=0, signal=0.05):
  """CIFAR-shaped float32 data with a learnable linear signal: `x = μ_y + noise`."""
  rng = np.random.default_rng(seed)
  means = rng.standard_normal((c, d), dtype=np.float32) * signal
  y = rng.integers(0, c, n).astype(np.int32)
  x = means[y] + rng.standard_normal((n, d), dtype=np.float32)
  return x, y


def _try_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel

    return torch
  except ImportError:
    return None


# ----------------------------------------------------------------- section 1


def numpy_value_and_grad(loss, W, b, x, y, reg):
  """The same formulas as grads.py, in plain vectorized NumPy."""
  n = x.shape[0]
  s = x @ W.T + b
  rows = np.arange(n)
  if loss == 'softmax':
    s = s - s.max(1, keepdims=True)
    e = np.exp(s)
    p = e / e.sum(1, keepdims=True)
    value = -np.log(p[rows, y]).mean()
    p[rows, y] -= 1.0
    g = p
  else:
    m = s - s[rows, y][:, None] + 1.0
    m[rows, y] = 0.0
    value = np.maximum(m, 0).sum(1).mean()
    g = (m > 0).astype(s.dtype)
    g[rows, y] = -g.sum(1)
  g /= n
  return value + reg * (W * W).sum(), g.T @ x + 2 * reg * W, g.sum(0)


def torch_value_and_grad(torch, loss, W, b, x, y, reg):
  n = x.shape[0]
  s = x @ W.T + b
  rows = torch.arange(n)
  if loss == 'softmax':
    p = torch.softmax(s, 1)
    value = -torch.log(p[rows, y]).mean()
    p[rows, y] -= 1.0
    g = p
  else:
    m = s - s[rows, y][:, None] + 1.0
    m[rows, y] = 0.0
    value = m.clamp(min=0).sum(1).mean()
    g = (m > 0).to(s.dtype)
    g[rows, y] = -g.sum(1)
  g /= n
  return value + reg * (W * W).sum(), g.T @ x + 2 * reg * W, g.sum(0)


def section_gradients():
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from linear_jax import grad_sources  # pylint: disable=import-outside-toplevel
  from linear_jax import model  # pylint: disable=import-outside-toplevel

  n = 1000 if FLAGS.quick else 10000
  x, y = _cifar_like(n)
  params = model.init_params(jax.random.PRNGKey(0), 3072, 10, 1e-3)
  xj, yj = jax.device_put(x), jax.device_put(y)
  reg = 1e-3
  w_np, b_np = np.asarray(params.W), np.asarray(params.b)
  torch = _try_torch()
  names = {
    'analytic': 'hand-derived (jit)',
    'autodiff': 'jax.grad (jit)',
    'numpy': 'NumPy',
    'torch': 'PyTorch',
  }
  # Everything of this section is timed in turns, so the ratios hold on a noisy machine.
  fns = {}
  read_jax = jax.jit(jnp.sum)
  fns['read_jax'] = lambda: jax.block_until_ready(read_jax(xj))
  fns['read_numpy'] = lambda: x.sum()
  for loss in ('softmax', 'svm'):
    for source in ('analytic', 'autodiff'):
      fn = jax.jit(lambda p, x, y, s=source, l=loss: grad_sources.value_and_grad(s, p, x, y, loss=l, reg=reg))
      fns[loss, source] = lambda f=fn: jax.block_until_ready(f(params, xj, yj))
    fns[loss, 'numpy'] = lambda l=loss: numpy_value_and_grad(l, w_np, b_np, x, y, reg)
    if torch is not None:
      tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
      tw, tb = torch.from_numpy(w_np.copy()), torch.from_numpy(b_np.copy())
      fns[loss, 'torch'] = lambda l=loss: torch_value_and_grad(torch, l, tw, tb, tx, ty, reg)
  # Where the time goes: the two products that read x, each alone.
  g = jax.device_put(np.full((n, 10), 1e-4, np.float32))
  scores_only = jax.jit(lambda w, x: x @ w.T)
  grad_only = jax.jit(lambda g, x: g.T @ x)
  fns['scores_matmul'] = lambda: jax.block_until_ready(scores_only(params.W, xj))
  fns['grad_matmul'] = lambda: jax.block_until_ready(grad_only(g, xj))
  # The compute floor: both products together are 4·N·D·C flops. At the
  # device's own dense-matmul peak, measured now, they cannot take less time.
  m = 2048 if jax.default_backend() == 'cpu' else 8192
  a = jax.device_put(np.ones((m, m), np.float32))
  square = jax.jit(jnp.dot)
  fns['square_matmul'] = lambda: jax.block_until_ready(square(a, a))
  # With few classes the gradient is bound by memory, as the issue assumed.
  y2 = jax.device_put((y % 2).astype(np.int32))
  for loss, c in (('softmax', 2), ('logistic', 1)):
    p_c = model.init_params(jax.random.PRNGKey(0), 3072, c, 1e-3)
    fn = jax.jit(lambda p, x, y, l=loss: grad_sources.value_and_grad('analytic', p, x, y, loss=l, reg=reg))
    fns['few', loss] = lambda f=fn, p=p_c: jax.block_until_ready(f(p, xj, y2))
  t = median_times(fns)

  t_read_jax, t_read_np = t['read_jax'], t['read_numpy']
  read = min(t_read_jax, t_read_np)  # the faster read is the machine's limit
  rows, out = [], {'bytes': x.nbytes, 'read_jax_s': t_read_jax, 'read_numpy_s': t_read_np}
  for loss in ('softmax', 'svm'):
    times = out[loss] = {source: t[loss, source] for source in names if (loss, source) in t}
    for source, ts in times.items():
      rows.append(
        [
          f'{loss} {names[source]}',
          f'{1e3 * ts:.2f}',
          f'{times["numpy"] / ts:.2f}×',
          f'{x.nbytes / ts / 1e9:.1f} GB/s ({100 * read / ts:.0f}% of read)',
        ]
      )
  t_s, t_g = out['scores_matmul_s'], out['grad_matmul_s'] = t['scores_matmul'], t['grad_matmul']
  rows.append(
    ['  of which: scores x·Wᵀ alone (jit)', f'{1e3 * t_s:.2f}', '', f'{x.nbytes / t_s / 1e9:.1f} GB/s']
  )
  rows.append(['  of which: Gᵀ·x alone (jit)', f'{1e3 * t_g:.2f}', '', f'{x.nbytes / t_g / 1e9:.1f} GB/s'])
  peak = 2 * m**3 / t['square_matmul']
  flops = 4 * n * 3072 * 10
  floor = flops / peak
  out.update(peak_flops=peak, gradient_flops=flops, compute_floor_s=floor)
  rows.append(
    [
      f'compute floor: 4·N·D·C = {flops / 1e9:.2f} GFLOP at the peak below',
      f'{1e3 * floor:.3f}',
      '',
      f'{x.nbytes / floor / 1e9:.1f} GB/s ({100 * read / floor:.0f}% of read at most)'
      if floor > read
      else f'{100 * floor / read:.0f}% of one read of x: memory is the bound',
    ]
  )
  rows.append([f'dense matmul peak ({m}² jnp.dot, jit)', '', '', f'{peak / 1e9:.0f} GFLOP/s'])
  few = out['few_classes_s'] = {loss: t['few', loss] for loss in ('softmax', 'logistic')}
  for loss, label in (('softmax', '2 classes'), ('logistic', 'binary, one score')):
    rows.append(
      [
        f'{loss} hand-derived (jit), {label}',
        f'{1e3 * few[loss]:.2f}',
        '',
        f'{x.nbytes / few[loss] / 1e9:.1f} GB/s ({100 * read / few[loss]:.0f}% of read)',
      ]
    )
  table = [['computation', 'median ms', 'speed-up vs NumPy', 'effective bandwidth of x']] + rows
  table.append(
    [
      'plain read of x (jnp.sum, jit)',
      f'{1e3 * t_read_jax:.2f}',
      '',
      f'{x.nbytes / t_read_jax / 1e9:.1f} GB/s',
    ]
  )
  table.append(
    ['plain read of x (NumPy sum)', f'{1e3 * t_read_np:.2f}', '', f'{x.nbytes / t_read_np / 1e9:.1f} GB/s']
  )
  # Which bound holds here: flops per byte of x against the machine's balance.
  balance = peak / (x.nbytes / read)
  best = min(out['softmax']['analytic'], out['svm']['analytic'])
  compute_bound = flops / x.nbytes > balance
  ceiling = (
    f'even at the dense-matmul peak it could reach at most {100 * read / floor:.0f}% of a read'
    if compute_bound
    else f'at the dense-matmul peak its arithmetic takes {100 * floor / read:.0f}% of the time of one read'
  )
  out['verdict'] = (
    f'Effective bandwidth, 10 classes: {100 * read / best:.0f}% of a plain read (target 50%). '
    f'The gradient does {flops / x.nbytes:.0f} flops per byte of x; this device does {balance:.1f} '
    f'flops in the time it reads a byte, so here the gradient is bound by '
    f'{"arithmetic" if compute_bound else "memory"}, and {ceiling}. With few classes, where memory is '
    f'the bound, the hand-derived gradient reaches {100 * read / min(few.values()):.0f}% of a read '
    "(x is read twice: Gᵀ·x needs all of a row's scores)."
  )
  kind = jax.devices()[0].device_kind
  sheet = data_sheet_bandwidth(kind)
  if sheet is not None:
    out['data_sheet_bandwidth'] = sheet
    out['verdict'] += (
      f" Against the data sheet's {sheet / 1e12:.2f} TB/s of this {kind}: the plain read reaches "
      f'{100 * x.nbytes / t_read_jax / sheet:.0f}%, '
      f'the 10-class gradient {100 * x.nbytes / best / sheet:.0f}%.'
    )
  out['torch'] = 'not installed' if torch is None else torch.__version__
  return f'1. Loss + gradient, {n:,} × 3,072 float32, 10 classes', table, out


# ----------------------------------------------------------------- section 2


def section_training():
  from sklearn.linear_model import SGDClassifier  # pylint: disable=import-outside-toplevel

  from linear_jax import data  # pylint: disable=import-outside-toplevel
  from linear_jax import train  # pylint: disable=import-outside-toplevel

  n = 2000 if FLAGS.quick else 10000
  epochs = 2 if FLAGS.quick else 10
  x, y = _cifar_like(n + 2000, seed=1)
  raw = data.Raw(x, y.astype(np.int64), 'class', 10, (3, 32, 32), test=(x[n:], y[n:].astype(np.int64)))
  raw = data.Raw(x[:n], y[:n].astype(np.int64), 'class', 10, (3, 32, 32), test=raw.test)
  ds = data.prepare(raw, 'cifar-shaped', val_fraction=0.0, preprocess='none')
  import warnings  # pylint: disable=import-outside-toplevel

  rows, out = [], {}
  # Both sides fit `fits` times, alternating, and the medians are compared: on a shared
  # machine a neighbour can take a core for a whole fit (a fit here lasts a quarter second).
  fits = 1 if FLAGS.quick else 3
  for loss, sk_loss, lr in (('svm', 'hinge', 0.01), ('softmax', 'log_loss', 0.01)):
    cfg = train.TrainConfig(loss=loss, batch_size=256, epochs=epochs, learning_rate=lr, reg=1e-4)
    ours_runs, sk_runs = [], []
    for _ in range(fits):
      result = train.fit(cfg, ds)
      # examples/s of the training epochs, the first (which may compile) left out
      ours_runs.append(float(np.median([m['examples_per_s'] for m in result.history[1:]])))
      clf = SGDClassifier(loss=sk_loss, max_iter=epochs, tol=None, alpha=1e-4, random_state=0)
      t = time.perf_counter()
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # max_iter reached: we ask for exactly `epochs`
        clf.fit(ds.x_train, ds.y_train)
      sk_runs.append(len(ds.x_train) * epochs / (time.perf_counter() - t))
    ours, sk = float(np.median(ours_runs)), float(np.median(sk_runs))
    ours_acc = train.evaluate(cfg, ds, result.params)['test_accuracy']
    sk_acc = clf.score(ds.x_test, ds.y_test)
    out[loss] = {'ours_ex_s': ours, 'sklearn_ex_s': sk, 'ours_acc': ours_acc, 'sklearn_acc': sk_acc}
    rows.append(
      [
        f'{loss} vs SGDClassifier({sk_loss})',
        f'{ours:,.0f}',
        f'{sk:,.0f}',
        f'{ours / sk:.1f}×',
        f'{100 * ours_acc:.1f}%',
        f'{100 * sk_acc:.1f}%',
      ]
    )
  header = [
    f'training (batch 256), median of {fits} fits',
    'linear_jax ex/s, epochs 2+ only',
    'scikit-learn ex/s, whole fit',
    'ratio (not like for like: see section 7)',
    'linear_jax test acc',
    'scikit-learn test acc',
  ]
  return f'2. Epoch throughput, {n:,} × 3,072, {epochs} epochs', [header] + rows, out


# ----------------------------------------------------------------- section 3

SKLEARN_DIGITS = r"""
import sys, time
t = time.perf_counter()
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
d = load_digits()
xtr, xte, ytr, yte = train_test_split(d.data, d.target, test_size=0.2, random_state=0)
sc = StandardScaler().fit(xtr)
clf = LogisticRegression(max_iter=5000) if sys.argv[1] == 'logreg' else SGDClassifier(random_state=0)
clf.fit(sc.transform(xtr), ytr)
print(clf.score(sc.transform(xte), yte), time.perf_counter() - t)
"""


def _wall(cmd):
  t = time.perf_counter()
  res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
  return time.perf_counter() - t, res.stdout


def section_time_to_accuracy():
  rows, out = [], {}
  with tempfile.TemporaryDirectory() as tmp:
    cache = os.path.join(tmp, 'xla')
    for key, label, flag in (
      ('linear_jax', 'compiling', '--compilation_cache='),
      ('linear_jax_cached', 'with its compilation cache warm', f'--compilation_cache={cache}'),
    ):
      train = f'{__package__}.train'  # experiments.train, or linear_jax.experiments.train once installed
      cmd = [sys.executable, '-m', train, '--quiet', '--plots=false', f'--workdir={tmp}', flag]
      if key == 'linear_jax_cached':
        _wall(cmd)  # fills the cache, as any earlier run would
      runs = []
      for _ in range(1 if FLAGS.quick else 3):
        wall, _ = _wall(cmd)
        with open(os.path.join(tmp, 'summary.json')) as f:
          runs.append((wall, json.load(f)['final']['test_accuracy']))
      wall, acc = float(np.median([r[0] for r in runs])), runs[0][1]
      out[key] = {'seconds': wall, 'accuracy': acc}
      rows.append(
        [
          f'linear_jax `python -m experiments.train` (softmax, 30 epochs), {label}',
          f'{wall:.2f}',
          f'{100 * acc:.1f}%',
        ]
      )
  for name in ('logreg', 'sgd'):
    runs = [_wall([sys.executable, '-c', SKLEARN_DIGITS, name]) for _ in range(1 if FLAGS.quick else 3)]
    wall = float(np.median([r[0] for r in runs]))
    acc = float(runs[0][1].split()[0])
    out[name] = {'seconds': wall, 'accuracy': acc}
    label = 'LogisticRegression' if name == 'logreg' else 'SGDClassifier'
    rows.append([f'scikit-learn {label}', f'{wall:.2f}', f'{100 * acc:.1f}%'])
  header = ['digits, fresh process (imports + compile + train + evaluate)', 'seconds', 'test accuracy']
  return '3. Time to accuracy on digits', [header] + rows, out


# ----------------------------------------------------------------- section 4


def section_sweeps():
  import dataclasses  # pylint: disable=import-outside-toplevel

  from sklearn.linear_model import SGDClassifier  # pylint: disable=import-outside-toplevel

  from linear_jax import data  # pylint: disable=import-outside-toplevel
  from linear_jax import sweep  # pylint: disable=import-outside-toplevel
  from linear_jax import train  # pylint: disable=import-outside-toplevel

  ds = data.prepare(data.load('digits'), 'digits')
  cfg = train.TrainConfig(epochs=10 if FLAGS.quick else 30)
  ks = (1, 4, 16) if FLAGS.quick else (1, 4, 16, 64)
  rows, out = [], {}
  base = None
  for k in ks:
    lrs = list(np.logspace(-3, 0.5, k))
    settings = sweep.grid(lrs, [1e-4])
    together = median_time(lambda s=settings: sweep.run_sweep(cfg, ds, s), repeats=3)
    seq = median_time(lambda s=settings: [train.fit(dataclasses.replace(cfg, **v), ds) for v in s], repeats=1)
    base = together if k == 1 else base
    out[k] = {'together_s': together, 'sequential_s': seq}
    rows.append(
      [
        str(k),
        f'{together:.3f}',
        f'{k / together:.1f}',
        f'{together / base:.2f}×',
        f'{seq:.3f}',
        f'{seq / together:.1f}×',
      ]
    )
  # 16 SGDClassifier fits with the same learning rates and epochs, one after another.
  import warnings  # pylint: disable=import-outside-toplevel

  def sk16():
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      for lr in np.logspace(-3, 0.5, 16):
        SGDClassifier(
          loss='log_loss',
          learning_rate='constant',
          eta0=lr,
          max_iter=cfg.epochs,
          tol=None,
          alpha=1e-4,
          random_state=0,
        ).fit(ds.x_train, ds.y_train)

  t_sk = median_time(sk16, repeats=1, warmup=0)
  out['sklearn16_s'] = t_sk
  header = ['K models', 'together s', 'models/s', 'time vs K=1', 'K sequential fits s', 'speed-up']
  table = [header] + rows
  table.append(
    [
      '16 × SGDClassifier(log_loss)',
      f'{t_sk:.3f}',
      f'{16 / t_sk:.1f}',
      '',
      '',
      f'{t_sk / out[16]["together_s"]:.1f}× slower than the K=16 sweep',
    ]
  )
  return f'4. Sweeps on digits ({cfg.epochs} epochs, batch 64)', table, out


# ----------------------------------------------------------------- section 5


def section_gradcheck():
  import jax  # pylint: disable=import-outside-toplevel
  from jax.flatten_util import ravel_pytree  # pylint: disable=import-outside-toplevel

  jax.config.update('jax_enable_x64', True)
  import linear_jax as lj  # pylint: disable=import-outside-toplevel
  from linear_jax import gradcheck  # pylint: disable=import-outside-toplevel

  rows, out = [], {}
  params, x, y = gradcheck.random_problem(jax.random.PRNGKey(0), 'softmax', 64, 64, 10)
  f = lambda p: lj.objective(p, x, y, loss='softmax', reg=1e-3)
  v, unravel = ravel_pytree(params)
  pure = jax.jit(lambda v: lj.objective(unravel(v), x, y, loss='softmax', reg=1e-3))
  h = 1e-5

  def loop():
    grad = np.empty(v.size)
    for i in range(v.size):  # one coordinate at a time, the same jitted loss
      grad[i] = (float(pure(v.at[i].add(h))) - float(pure(v.at[i].add(-h)))) / (2 * h)
    return grad

  numerical = gradcheck.make_numerical_grad(f, h=h)  # compiled once, like the loop's loss
  t_vec = median_time(lambda: jax.block_until_ready(numerical(params)), repeats=3)
  t_loop = median_time(loop, repeats=1)
  out['full'] = {'params': int(v.size), 'vectorized_s': t_vec, 'loop_s': t_loop}
  rows.append(
    [
      f'full central-difference gradient, {v.size} params (vectorized vs loop)',
      f'{t_vec:.3f}',
      f'{t_loop:.3f}',
      f'{t_loop / t_vec:.1f}×',
    ]
  )
  params, x, y = gradcheck.random_problem(jax.random.PRNGKey(1), 'softmax', 64, 3072, 10)
  for method, kw in (('sparse', {'num_coords': 64}), ('directional', {'num_directions': 8})):
    run = lambda m=method, k=kw: lj.check_gradients(params, x, y, method=m, **k)
    t = median_time(run, repeats=3)
    assert run().passed
    out[method] = t
    rows.append([f'{method} check, 30,730 params (after compilation)', f'{t:.3f}', '', ''])
  header = ['gradient check', 'linear_jax s', 'coordinate loop s', 'speed-up']
  return '5. Gradient checking (float64)', [header] + rows, out


def module_section(name):
  """A section kept in its own module `experiments/NAME.py`, with `run(quick)` and `markdown(results)`."""

  def section():
    module = importlib.import_module(f'{__package__}.{name}')
    out = module.run(FLAGS.quick)
    return None, module.markdown(out), out

  section.module = name
  return section


SECTIONS = {
  '1': section_gradients,
  '2': section_training,
  '3': section_time_to_accuracy,
  '4': section_sweeps,
  '5': section_gradcheck,
  '6': module_section('bench_data'),
  '7': module_section('bench_wholerun'),
  '8': module_section('bench_optimum'),
  '9': module_section('bench_longruns'),
}


flags.register_validator(
  'sections', lambda keys: bool(keys) and all(k in SECTIONS for k in keys), f'each of 1-{len(SECTIONS)}'
)


def merge_results(previous, header, section):
  """The results file with `section` in place of the one of its backend; other backends' are kept.

  So the same command run on a CPU and on a GPU leaves both sections in one file.
  """
  title = section.split('\n', 1)[0]
  parts = re.split(r'(?m)^(?=## )', previous)[1:]  # the old sections, each from its '## ' line
  kept = [p.rstrip('\n') + '\n' for p in parts if p.split('\n', 1)[0] != title]
  mine = section.rstrip('\n') + '\n'
  old_titles = [p.split('\n', 1)[0] for p in parts]
  if title in old_titles:  # keep its place
    kept.insert(old_titles.index(title), mine)
  else:
    kept.append(mine)
  return header + '\n' + '\n'.join(kept)


def markdown(title, table):
  lines = [f'### {title}', '', '| ' + ' | '.join(table[0]) + ' |', '|' + ' --- |' * len(table[0])]
  lines += ['| ' + ' | '.join(r) + ' |' for r in table[1:]]
  return '\n'.join(lines) + '\n'


_MARK = re.compile(r'(?m)^<!-- section (\S+) (\d{4}-\d{2}-\d{2}) -->\n')


def section_parts(text):
  """`{key: (date, markdown)}` of a backend section's parts, from their `<!-- section K DATE -->` marks."""
  pieces = _MARK.split(text)
  return {key: (date, body) for key, date, body in zip(pieces[1::3], pieces[2::3], pieces[3::3], strict=True)}


def backend_section(previous, info, repeats, new_parts):
  """This backend's section: the parts measured now, and the earlier run's parts of the sections not run.

  So `--sections=8` re-measures section 8 and keeps sections 1-7 and 9 as they were, each still marked
  with the date it was measured.
  """
  title = f'## {info["backend"].upper()} results'
  old = [p for p in re.split(r'(?m)^(?=## )', previous) if p.split('\n', 1)[0] == title]
  parts = section_parts(old[0]) if old else {}
  parts.update({key: (info['date'], text) for key, text in new_parts.items()})
  order = sorted(parts, key=lambda k: (list(SECTIONS).index(k) if k in SECTIONS else len(SECTIONS), k))
  kept = sorted({parts[k][0] for k in order if k not in new_parts})
  lines = [
    title,
    '',
    f'Machine: {info["cpu"]}, {info["cores"]} cores; Python {info["python"]}, JAX {info["jax"]} '
    f'({info["device"]}); {info["date"]}. Medians of {repeats} runs after warm-up unless a '
    'table says otherwise; ratios are between numbers measured in the same run.',
  ]
  if kept:
    lines[-1] += (
      f' This run measured sections {", ".join(new_parts)}; the others are kept from earlier runs on this '
      f'backend ({", ".join(kept)}), each marked in this file with its date.'
    )
  lines.append('')
  for key in order:
    date, text = parts[key]
    lines += [f'<!-- section {key} {date} -->', text.rstrip('\n'), '']
  return '\n'.join(lines)


def main(argv):
  del argv
  from . import common  # pylint: disable=import-outside-toplevel

  common.quiet_logs()
  info = machine()
  results = {'machine': info}
  new_parts = {}
  for key in FLAGS.sections:
    title, table, out = SECTIONS[key]()
    results[key] = out
    text = markdown(title, table) if title else table  # a module section writes its own markdown
    if 'verdict' in out:
      text += '\n' + out['verdict'] + '\n'
    print(text, flush=True)
    new_parts[key] = text
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  previous = ''
  if os.path.exists(FLAGS.out):
    with open(FLAGS.out) as f:
      previous = f.read()
  header = (
    '# linear_jax benchmark results\n\n'
    'Made by `python -m experiments.benchmark --out=benchmarks/RESULTS.md`, '
    'each section on its own backend (on a machine with a GPU: `bash benchmarks/gpu_run.sh`).\n'
  )
  text = merge_results(previous, header, backend_section(previous, info, FLAGS.repeats, new_parts))
  tmp = FLAGS.out + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, FLAGS.out)
  if FLAGS.json_out:
    with open(FLAGS.json_out, 'w') as f:
      json.dump(results, f, indent=1, default=float)
  print(f'wrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
