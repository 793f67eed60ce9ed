"""Benchmark sections 2, 3 and 4: epoch throughput, time to accuracy on digits, and sweeps.

Section 2 times linear_jax's epochs against scikit-learn's `SGDClassifier`; section 3 runs
`experiments.train` in a fresh process against scikit-learn on digits; section 4 trains K models as one
program against K sequential fits.
"""

import json
import os
import sys
import tempfile
import time

from absl import flags
import numpy as np

from .harness import median_time
from .harness import wall_time

FLAGS = flags.FLAGS


def cifar_like(n, d=3072, c=10, seed=0, signal=0.05):
  """CIFAR-shaped float32 data with a learnable linear signal: `x = μ_y + noise`."""
  rng = np.random.default_rng(seed)
  means = rng.standard_normal((c, d), dtype=np.float32) * signal
  y = rng.integers(0, c, n).astype(np.int32)
  x = means[y] + rng.standard_normal((n, d), dtype=np.float32)
  return x, y


def section_training():
  from sklearn.linear_model import SGDClassifier  # pylint: disable=import-outside-toplevel

  from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import config
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  n = 2000 if FLAGS.quick else 10000
  epochs = 2 if FLAGS.quick else 10
  x, y = cifar_like(n + 2000, seed=1)
  raw = data.Raw(x, y.astype(np.int64), 'class', 10, (3, 32, 32), test=(x[n:], y[n:].astype(np.int64)))
  raw = data.Raw(x[:n], y[:n].astype(np.int64), 'class', 10, (3, 32, 32), test=raw.test)
  ds = data.prepare(raw, 'cifar-shaped', val_fraction=0.0, preprocess='none')
  import warnings  # pylint: disable=import-outside-toplevel

  rows, out = [], {}
  # Both sides fit `fits` times, alternating, and the medians are compared: on a shared
  # machine a neighbour can take a core for a whole fit (a fit here lasts a quarter second).
  fits = 1 if FLAGS.quick else 3
  for loss, sk_loss, lr in (('svm', 'hinge', 0.01), ('softmax', 'log_loss', 0.01)):
    cfg = config.TrainConfig(loss=loss, batch_size=256, epochs=epochs, learning_rate=lr, reg=1e-4)
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


def section_time_to_accuracy():
  rows, out = [], {}
  with tempfile.TemporaryDirectory() as tmp:
    cache = os.path.join(tmp, 'xla')
    for key, label, flag in (
      ('linear_jax', 'compiling', '--compilation_cache='),
      ('linear_jax_cached', 'with its compilation cache warm', f'--compilation_cache={cache}'),
    ):
      train = 'experiments.train'
      cmd = [sys.executable, '-m', train, '--quiet', '--plots=false', f'--workdir={tmp}', flag]
      if key == 'linear_jax_cached':
        wall_time(cmd)  # fills the cache, as any earlier run would
      runs = []
      for _ in range(1 if FLAGS.quick else 3):
        wall, _ = wall_time(cmd)
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
    runs = [wall_time([sys.executable, '-c', SKLEARN_DIGITS, name]) for _ in range(1 if FLAGS.quick else 3)]
    wall = float(np.median([r[0] for r in runs]))
    acc = float(runs[0][1].split()[0])
    out[name] = {'seconds': wall, 'accuracy': acc}
    label = 'LogisticRegression' if name == 'logreg' else 'SGDClassifier'
    rows.append([f'scikit-learn {label}', f'{wall:.2f}', f'{100 * acc:.1f}%'])
  header = [
    'digits, fresh process (imports + compile + train + evaluate)',
    f'seconds, median of {1 if FLAGS.quick else 3} runs',
    'test accuracy',
  ]
  return '3. Time to accuracy on digits', [header] + rows, out


def section_sweeps():
  import dataclasses  # pylint: disable=import-outside-toplevel

  from sklearn.linear_model import SGDClassifier  # pylint: disable=import-outside-toplevel

  from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import config  # pylint: disable=import-outside-toplevel
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel
  from linear_jax.tuning import sweep  # pylint: disable=import-outside-toplevel

  ds = data.prepare(data.load('digits'), 'digits')
  cfg = config.TrainConfig(epochs=10 if FLAGS.quick else 30)
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
  header = [
    'K models',
    'together s, median of 3',
    'models/s',
    'time vs K=1',
    'K sequential fits s, one run',
    'speed-up',
  ]
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
