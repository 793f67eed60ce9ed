r"""Benchmarks the default run: right (near the best objective) and fast (as a process, per epoch).

    python -m benchmarks.defaults
    python -m benchmarks.defaults --quick      # two losses, one round: a smoke test of this script

`run(quick)` measures and returns every number; `markdown(results)` turns
them into tables (`benchmarks/run.py` calls both, section 11). Three parts,
all in one run on one machine:

1. each built-in loss with the command line's defaults (`config.COMMAND_LINE`:
   the derived step, the adaptive schedule) on a bundled dataset of its kind:
   the derived step, the epochs, the training objective against the best one
   reachable (f* by L-BFGS for the smooth losses; for the others the lowest
   objective of 400-epoch runs at constant rates from 1/2 to 128 times the
   derived one, or SciPy's L-BFGS f* where lower for a loss whose gradient is
   continuous, the squared hinge), and the test metric beside the best's and
   scikit-learn's nearest estimator's, at its own defaults (its regularization
   is not ours), fitted on the same standardized rows (`LogisticRegression`, `LinearSVC` one-vs-rest with the
   hinge, the squared hinge or Crammer–Singer, `Ridge`, `HuberRegressor`,
   `QuantileRegressor` at the median);
2. the whole default process, `linear-jax train` on digits (with and without
   its pictures), against a whole scikit-learn process that loads digits,
   standardizes it and fits `LogisticRegression`, alternated, medians;
3. the host's time per epoch around the compiled epoch: a fit's time per epoch
   (evaluation, stopping test, records) against the compiled epoch alone.
"""

import dataclasses
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = (
  ('softmax', 'digits'),
  ('svm', 'digits'),
  ('squared_hinge', 'digits'),
  ('crammer_singer', 'digits'),
  ('hinge', 'breast_cancer'),
  ('logistic', 'breast_cancer'),
  ('sigmoid_l2', 'breast_cancer'),
  ('l2', 'diabetes'),
  ('l1', 'diabetes'),
  ('huber', 'diabetes'),
)
SKLEARN_SCRIPT = """
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
x, y = load_digits(return_X_y=True)
xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0)
scaler = StandardScaler().fit(xtr)
model = LogisticRegression(max_iter=1000).fit(scaler.transform(xtr), ytr)
print(model.score(scaler.transform(xte), yte))
"""


def _sklearn_estimator(loss):
  """The scikit-learn estimator of `loss`'s objective (its defaults), or `None`."""
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel
  from sklearn import svm  # pylint: disable=import-outside-toplevel

  return {
    'softmax': lambda: linear_model.LogisticRegression(max_iter=1000),
    'logistic': lambda: linear_model.LogisticRegression(max_iter=1000),
    'hinge': lambda: svm.LinearSVC(loss='hinge', max_iter=10000),
    'svm': lambda: svm.LinearSVC(loss='hinge', max_iter=10000),
    'squared_hinge': lambda: svm.LinearSVC(loss='squared_hinge', max_iter=10000),
    'crammer_singer': lambda: svm.LinearSVC(multi_class='crammer_singer', max_iter=10000),
    'l2': linear_model.Ridge,
    'huber': lambda: linear_model.HuberRegressor(max_iter=1000),
    'l1': lambda: linear_model.QuantileRegressor(quantile=0.5, alpha=0.0),
  }.get(loss)


def _best_reachable(cfg, dataset, derived, rates):
  """`(objective, how, params)`: f* by L-BFGS for a smooth loss, else the lowest objective of
  constant-rate runs (`params`: those of its epoch), or SciPy's f* where lower (`C1_LOSSES`)."""
  from linear_jax.optim import results  # pylint: disable=import-outside-toplevel
  from linear_jax.solvers import lbfgs as solvers  # pylint: disable=import-outside-toplevel
  from linear_jax.training import lbfgs  # pylint: disable=import-outside-toplevel
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  try:
    solvers.check_smooth(cfg.loss, cfg.penalty, cfg.reg)
    f_star, params, _ = lbfgs.optimum(dataclasses.replace(cfg, learning_rate=1.0), dataset)
    return float(f_star), 'f* (L-BFGS)', params
  except ValueError:
    pass

  def constant(k, epochs):
    run = dataclasses.replace(
      cfg, learning_rate=derived * 2.0**k, schedule='constant', tol_on='none', epochs=epochs
    )
    return train.fit(run, dataset)

  best = (np.inf, None, None)  # (objective, k, epochs to reach it)
  for k in rates:
    try:
      f = [m['train_loss'] for m in constant(k, 400).history]
    except results.Diverged:  # a rate past the stable range: not a contender
      continue
    if min(f) < best[0]:
      best = (min(f), k, int(np.argmin(f)) + 1)
  f, k, epochs = best
  params = None
  if k is not None:  # the same run stopped at its best epoch: its parameters (the runs are deterministic)
    again = constant(k, epochs)
    assert np.isclose(again.history[-1]['train_loss'], f, rtol=1e-6), (again.history[-1]['train_loss'], f)
    params = again.params
  if cfg.loss in C1_LOSSES:
    f_star, at_star = _scipy_optimum(cfg, dataset)
    if f_star < f:
      return f_star, "f* (SciPy's L-BFGS, float64)", at_star
  return f, f'400 epochs at 2^{k} × derived', params


# Losses the project's L-BFGS refuses (their second derivative jumps at the margin) whose gradient is
# continuous: quasi-Newton still reaches their optimum (liblinear's trust-region Newton solves the
# squared hinge's primal the same way), which can lie below every constant-rate run.
C1_LOSSES = ('squared_hinge',)


def _scipy_optimum(cfg, dataset):
  """`(f, params)`: the lowest training objective SciPy's L-BFGS-B reaches on `cfg`'s objective, in
  float64 whatever `jax_enable_x64` says, and its parameters (in `cfg.dtype`).

  For a multiclass loss without the bias trick or sample weights (the default runs of `C1_LOSSES`);
  it raises `ValueError` otherwise.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from scipy import optimize  # pylint: disable=import-outside-toplevel

  from linear_jax.maths import losses  # pylint: disable=import-outside-toplevel
  from linear_jax.maths import model  # pylint: disable=import-outside-toplevel

  if cfg.loss_record.targets != 'class' or cfg.bias_trick or dataset.w_train is not None:
    raise ValueError(f'_scipy_optimum: {cfg.loss} with these settings is not a plain multiclass objective')
  with jax.enable_x64(True):
    x = np.asarray(dataset.x_train, np.float64)
    y = np.asarray(dataset.y_train)
    classes, features = dataset.num_classes, x.shape[1]
    hparams = cfg.resolved_loss_hparams()

    def unflat(theta):
      return model.Params(theta[: classes * features].reshape(classes, features), theta[classes * features :])

    def objective(theta):
      return losses.unchecked_objective(unflat(theta), x, y, cfg.loss, cfg.reg, cfg.penalty, hparams)

    value_and_grad = jax.jit(jax.value_and_grad(objective))
    fun = lambda t: tuple(np.asarray(v, np.float64) for v in value_and_grad(t))
    start = np.zeros(classes * features + classes)
    # ftol=0: stop on the gradient (or when no step lowers f), not on a small relative decrease.
    options = {'maxiter': 20000, 'gtol': 1e-10, 'ftol': 0.0}
    found = optimize.minimize(fun, start, jac=True, method='L-BFGS-B', options=options)
  return float(found.fun), jax.tree.map(lambda a: np.asarray(a, cfg.dtype), unflat(found.x))


def part_quality(quick):
  """Part 1: each loss's default run against the best objective and scikit-learn's estimator."""
  from linear_jax.data import records  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import config  # pylint: disable=import-outside-toplevel
  from linear_jax.runs import experiment  # pylint: disable=import-outside-toplevel
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  rows = []
  for loss, name in CASES[:2] if quick else CASES:
    cfg = dataclasses.replace(config.COMMAND_LINE, loss=loss, epochs=30 if quick else 1000)
    ds = experiment.load_dataset(experiment.DataConfig(dataset=name), targets=cfg.loss_record.targets)
    t = time.perf_counter()
    result = train.fit(cfg, ds)
    seconds = time.perf_counter() - t
    f = result.history[-1]['train_loss']
    best, how, best_params = _best_reachable(
      cfg, ds, result.learning_rate, range(-1, 2) if quick else range(-1, 8)
    )
    final, at_best = train.evaluate_many(
      cfg, ds, [result.params, result.params if best_params is None else best_params]
    )
    metric = 'test_accuracy' if 'test_accuracy' in final else 'test_mse'
    ours = final[metric]
    make = _sklearn_estimator(loss)
    theirs, name_of = None, '—'  # sigmoid_l2 has no scikit-learn estimator
    if make is not None:
      estimator, name_of = make(), type(make()).__name__
      estimator.fit(np.asarray(ds.x_train, np.float64), np.asarray(ds.y_train))
      pred = estimator.predict(np.asarray(ds.x_test, np.float64))
      y_test = np.asarray(ds.y_test)
      if metric == 'test_accuracy':
        theirs = float(np.mean(pred == y_test))
      else:  # both in the targets' units
        theirs = float(records.in_target_units(ds, {'mse': np.mean(np.square(pred - y_test), axis=0)})['mse'])
    rows.append(
      {
        'loss': loss,
        'dataset': name,
        'learning_rate': result.learning_rate,
        'epochs': len(result.history),
        'stop_reason': result.stop_reason,
        'objective': f,
        'best': best,
        'best_how': how,
        'above_best': (f - best) / abs(best),
        'metric': metric,
        'ours': ours,
        'best_test': None if best_params is None else at_best[metric],
        'sklearn': theirs,
        'sklearn_estimator': name_of,
        'seconds': seconds,
      }
    )
  return rows


FLOOR_SCRIPT = 'import jax.numpy as jnp; jnp.zeros(1).block_until_ready()'


def _process_seconds(argv, cwd):
  t = time.perf_counter()
  subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
  return time.perf_counter() - t


def part_process(quick):
  """Part 2: whole processes, alternated; medians of the rounds (the first, which fills caches, dropped)."""
  rounds = 2 if quick else 7
  with tempfile.TemporaryDirectory() as tmp:
    script = os.path.join(tmp, 'sklearn_digits.py')
    with open(script, 'w', encoding='utf-8') as f:
      f.write(SKLEARN_SCRIPT)
    ours = [sys.executable, '-m', 'linear_jax', 'train', f'--workdir={tmp}/run']
    contenders = {
      'linear-jax train': ours,
      'linear-jax train --plots=false': [*ours, '--plots=false'],
      'scikit-learn LogisticRegression': [sys.executable, script],
      # The floor any JAX program pays on this machine before its own work: Python, JAX and one operation.
      'python -c "import jax; one operation"': [sys.executable, '-c', FLOOR_SCRIPT],
    }
    times = {k: [] for k in contenders}
    for _ in range(rounds):
      for name, argv in contenders.items():
        times[name].append(_process_seconds(argv, ROOT))
  return {k: float(np.median(v[1:])) for k, v in times.items()}


def part_host(quick):
  """Part 3: a fit's milliseconds per epoch against the compiled epoch's alone (digits, batch 64)."""
  import jax  # pylint: disable=import-outside-toplevel

  from linear_jax.datapath import factory  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import config  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import step  # pylint: disable=import-outside-toplevel
  from linear_jax.runs import experiment  # pylint: disable=import-outside-toplevel
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  epochs = 20 if quick else 300
  cfg = dataclasses.replace(config.COMMAND_LINE, learning_rate=0.2, tol_on='none', epochs=epochs)
  ds = experiment.load_dataset(experiment.DataConfig(dataset='digits'))
  train.fit(cfg, ds)  # compiled
  fits = []
  for _ in range(3):
    t = time.perf_counter()
    train.fit(cfg, ds)
    fits.append((time.perf_counter() - t) / epochs)
  path = factory.make(cfg, ds)
  hp = step.hparams(cfg)
  params, opt_state = step.init_state(cfg, ds.num_features, 10, hp, path.steps)
  jax.block_until_ready(path.epoch(params, opt_state, jax.random.PRNGKey(0), hp))
  t = time.perf_counter()
  for e in range(epochs):
    params, opt_state, values = path.epoch(params, opt_state, jax.random.PRNGKey(e), hp)
  jax.block_until_ready(values)
  alone = (time.perf_counter() - t) / epochs
  fit = float(np.median(fits))
  return {'fit_ms': 1e3 * fit, 'epoch_ms': 1e3 * alone, 'host_ms': 1e3 * (fit - alone), 'epochs': epochs}


def run(quick):
  """Every number of the section (see the module docstring)."""
  return {
    'quick': quick,
    'quality': part_quality(quick),
    'process': part_process(quick),
    'host': part_host(quick),
  }


def markdown(results):
  """The section as markdown: the defaults' quality table, the process times, the host's share."""
  out = [
    '### 11. The default run: right and fast',
    '',
    '| loss | dataset | derived step | epochs | stopped | objective above the best | best by | test | '
    "the best's test | scikit-learn | estimator |",
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in results['quality']:
    fmt = (lambda v: f'{100 * v:.1f}%') if r['metric'] == 'test_accuracy' else (lambda v: f'MSE {v:,.0f}')
    out.append(
      f'| {r["loss"]} | {r["dataset"]} | {r["learning_rate"]:.3g} | {r["epochs"]} | {r["stop_reason"]} | '
      f'{100 * r["above_best"]:+.2f}% | {r["best_how"]} | {fmt(r["ours"])} | '
      f'{"—" if r["best_test"] is None else fmt(r["best_test"])} | '
      f'{"—" if r["sklearn"] is None else fmt(r["sklearn"])} | '
      f'{r["sklearn_estimator"]} |'
    )
  p = results['process']
  sk = p['scikit-learn LogisticRegression']
  out += ['', '| whole process, digits | median s | ratio to scikit-learn |', '|---|---|---|']
  out += [f'| `{k}` | {v:.2f} | {v / sk:.2f}× |' for k, v in p.items()]
  h = results['host']
  out += [
    '',
    f'Per epoch (digits, batch 64, {h["epochs"]} epochs): the fit {h["fit_ms"]:.2f} ms, the compiled epoch '
    f'alone {h["epoch_ms"]:.2f} ms, the host around it {h["host_ms"]:.2f} ms.',
  ]
  return '\n'.join(out) + '\n'


def main(argv):
  del argv
  print(markdown(run(flags.FLAGS.quick)))


if __name__ == '__main__':
  flags.DEFINE_bool('quick', False, 'Two losses and one round: a smoke test of this script.')
  app.run(main)
