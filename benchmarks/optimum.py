r"""Benchmark section: reaching the optimum, against scikit-learn, measured in one run.

    python -m benchmarks.optimum            # prints the section's markdown
    python -m benchmarks.optimum --quick    # small sizes: a smoke test

`run(quick)` returns every number as a dict and `markdown(results)` renders
the section, for benchmarks/run.py. Four parts:

1. the objective at the optimum equals scikit-learn's (LogisticRegression,
   Ridge; sample weights and class_weight='balanced') in float64, on digits,
   breast_cancer, diabetes and an embedding-like synthetic set;
2. one L-BFGS fit against LogisticRegression(solver='lbfgs') at the same
   tolerance on the synthetic set in float32;
3. a path of 8 regularization strengths: the warm-started L-BFGS path of
   paths.py against 8 scikit-learn fits (cold and warm-started), against the
   lock-step batched path, a naive `vmap` of optax's L-BFGS (timed once) and 8
   cold sequential L-BFGS fits;
4. the default command-line run given a training file and a separate test
   file, against LogisticRegression on the same split.

Times are medians of runs that alternate between the contenders; every ratio
compares numbers measured in this run. scikit-learn runs with one BLAS/OpenMP
thread unless said otherwise: on a shared, oversubscribed machine its threads
spin-wait (40 L-BFGS iterations on 5,000 × 64 took 11 s with 2 threads, 0.18 s
with 1), so one thread is its fast setting here; part 2 also times its default.
"""

import contextlib
import dataclasses
import time

from absl import app
from absl import flags
import numpy as np

C_SKLEARN = 1.0
# The synthetic set: (N, D) of the full run (10 classes), and of --quick.
FULL_SIZE, QUICK_SIZE = (50_000, 512), (5_000, 64)


def _one_thread():
  try:
    from threadpoolctl import threadpool_limits  # pylint: disable=import-outside-toplevel
  except ImportError:  # scikit-learn depends on it; without it, leave the threads alone
    return contextlib.nullcontext()
  return threadpool_limits(1)


def _median_times(fns, repeats, warm=()):
  """Median seconds of each `{name: fn}` over `repeats` alternated turns; those in `warm` get an
  untimed call first (compilation)."""
  for k in warm:
    fns[k]()
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for k, fn in fns.items():
      t = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - t)
  return {k: float(np.median(v)) for k, v in times.items()}


def embedding_like(n, d, c, seed=0):
  """Frozen-feature-like data: class means in a low-rank subspace, correlated noise, standardized."""
  rng = np.random.default_rng(seed)
  basis = rng.standard_normal((32, d)) / np.sqrt(32)
  means = rng.standard_normal((c, 32)) @ basis * 0.6
  y = rng.integers(0, c, n)
  noise = rng.standard_normal((n, 32)) @ basis + 0.5 * rng.standard_normal((n, d))
  x = means[y] + noise
  x = (x - x.mean(0)) / x.std(0)
  return x.astype(np.float32), y.astype(np.int32)


def _dataset(x, y, name, dtype):
  from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel
  from linear_jax.data.build import from_arrays  # pylint: disable=import-outside-toplevel

  raw = from_arrays(x, y, name=name)
  return data.prepare(raw, name, 0.0, 0.0, preprocess='none', dtype=dtype)


def _f(ds, loss, reg, coef, intercept, weights=None):
  """The objective at scikit-learn's coefficients, in float64 NumPy."""
  x = np.asarray(ds.x_train, np.float64)
  coef, intercept = np.atleast_2d(coef), np.atleast_1d(intercept)
  s = x @ coef.T + intercept
  y = np.asarray(ds.y_train)
  if loss == 'softmax':
    m = s.max(1, keepdims=True)
    per = np.log(np.exp(s - m).sum(1)) + m[:, 0] - s[np.arange(len(y)), y]
  elif loss == 'logistic':
    per = np.logaddexp(0, s[:, 0]) - y * s[:, 0]
  else:
    per = (y - s[:, 0]) ** 2
  w = np.ones(len(y)) if weights is None else weights
  return float(np.sum(w * per) / np.sum(w) + reg * np.sum(coef**2))


def _balanced(y):
  counts = np.bincount(y)
  return len(y) / (len(counts) * counts[y])


def part_equality(quick):
  """f* from our L-BFGS (float64) against the objective at scikit-learn's solution."""
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel

  from linear_jax.optim import config
  from linear_jax.training import lbfgs  # pylint: disable=import-outside-toplevel

  def standardized(x):
    return (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)

  digits, cancer, diabetes = datasets.load_digits(), datasets.load_breast_cancer(), datasets.load_diabetes()
  n_syn, d_syn = QUICK_SIZE if quick else FULL_SIZE
  problems = [
    ('digits', standardized(digits.data), digits.target, 'softmax'),
    ('breast_cancer', standardized(cancer.data), cancer.target, 'logistic'),
    ('diabetes', standardized(diabetes.data), diabetes.target, 'l2'),
    (f'synthetic {n_syn}×{d_syn}×10', *embedding_like(n_syn, d_syn, 10), 'softmax'),
  ]
  rows = []
  rng = np.random.default_rng(0)
  for name, x_raw, y_raw, loss in problems:
    ds = _dataset(x_raw, y_raw, name, np.float64)
    x, y = ds.x_train, ds.y_train  # prepare shuffles: weights and scikit-learn use its order
    n = len(y)
    weightings = [('none', None), ('random', rng.uniform(0.2, 3.0, n))]
    if loss != 'l2' and not name.startswith('synthetic'):
      weightings.append(('balanced', _balanced(np.asarray(y))))
    for wname, w in weightings:
      total = n if w is None else float(np.sum(w))
      if loss == 'l2':
        alpha = 1.0
        reg = alpha / total  # Ridge(alpha): reg = alpha / Σw
        ref = linear_model.Ridge(alpha=alpha, tol=1e-12).fit(x, y, sample_weight=w)
        peer = f'Ridge(alpha={alpha:g})'
      else:
        reg = 1 / (2 * C_SKLEARN * total)  # LogisticRegression(C): reg = 1 / (2 C Σw)
        kw = {'class_weight': 'balanced'} if wname == 'balanced' else {}
        sw = None if wname == 'balanced' else w
        tol = 1e-7 if name.startswith('synthetic') else 1e-10
        ref = linear_model.LogisticRegression(C=C_SKLEARN, tol=tol, max_iter=20_000, **kw).fit(
          x, y, sample_weight=sw
        )
        peer = f'LogisticRegression(C={C_SKLEARN:g}' + (", class_weight='balanced')" if kw else ')')
      cfg = config.TrainConfig(loss=loss, reg=reg, dtype='float64')
      f_ours, _, info = lbfgs.optimum(cfg, ds, tol=1e-8 if name.startswith('synthetic') else None, weights=w)
      f_ref = _f(ds, loss, reg, ref.coef_, ref.intercept_, w)
      rows.append(
        {
          'dataset': name,
          'loss': loss,
          'weights': wname,
          'peer': peer,
          'reg': reg,
          'f_ours': f_ours,
          'f_sklearn': f_ref,
          'relative_difference': abs(f_ours - f_ref) / abs(f_ref),
          'iterations': int(info.iterations),
        }
      )
  return rows


def _synthetic_problem(quick):
  n, d = QUICK_SIZE if quick else FULL_SIZE
  x, y = embedding_like(n, d, 10, seed=1)
  return n, d, x, y


def part_single_fit(quick, repeats):
  """One L-BFGS fit against LogisticRegression(solver='lbfgs'), same tolerance, float32."""
  import jax  # pylint: disable=import-outside-toplevel
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel

  from linear_jax.datapath import factory as datapath  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import config  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import step  # pylint: disable=import-outside-toplevel
  from linear_jax.solvers import lbfgs as solvers  # pylint: disable=import-outside-toplevel

  n, d, x, y = _synthetic_problem(quick)
  ds = _dataset(x, y, 'synthetic', np.float32)
  tol = 1e-4
  reg = 1 / (2 * C_SKLEARN * n)
  cfg = config.TrainConfig(loss='softmax', reg=reg, optimizer='lbfgs', tol=tol, epochs=1000)
  arrays = datapath.make(cfg, ds, resident=True).arrays
  hp = step.hparams(cfg)
  p0 = jax.tree.map(lambda a: a * 0, step.init_state(cfg, d, 10, hp, 1)[0])  # zeros, as scikit-learn starts
  out = {}

  def ours():
    params, info = solvers.solve(cfg, p0, *arrays['train'], hp)
    out['ours'] = jax.block_until_ready((params, info))

  def sklearn():
    with _one_thread():
      out['sklearn'] = linear_model.LogisticRegression(C=C_SKLEARN, tol=tol, max_iter=1000).fit(x, y)

  def sklearn_threads():
    linear_model.LogisticRegression(C=C_SKLEARN, tol=tol, max_iter=1000).fit(x, y)

  times = _median_times({'ours': ours, 'sklearn': sklearn}, repeats, ['ours'])
  # Its default threads, timed once: oversubscribed, they can be many times slower.
  times['sklearn_threads'] = _median_times({'t': sklearn_threads}, 1)['t']
  params, info = out['ours']
  f_ours = _f(ds, 'softmax', reg, np.asarray(params.W), np.asarray(params.b))
  f_ref = _f(ds, 'softmax', reg, out['sklearn'].coef_, out['sklearn'].intercept_)
  return {
    'shape': f'{n}×{d}×10 float32',
    'tol': tol,
    'seconds_ours': times['ours'],
    'seconds_sklearn': times['sklearn'],
    'seconds_sklearn_default_threads': times['sklearn_threads'],
    'speedup': times['sklearn'] / times['ours'],
    'iterations_ours': int(info.iterations),
    'fevals_ours': int(info.fevals),
    'iterations_sklearn': int(np.max(out['sklearn'].n_iter_)),
    'f_ours': f_ours,
    'f_sklearn': f_ref,
    'relative_difference': abs(f_ours - f_ref) / f_ref,
  }


def part_path(quick, repeats):
  """8 regularization strengths: batched L-BFGS against scikit-learn, naive vmap and sequential fits."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel

  from linear_jax.datapath import factory as datapath  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import config  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import step  # pylint: disable=import-outside-toplevel
  from linear_jax.solvers import lbfgs as solvers  # pylint: disable=import-outside-toplevel
  from linear_jax.tuning import paths  # pylint: disable=import-outside-toplevel

  n, d, x, y = _synthetic_problem(quick)
  ds = _dataset(x, y, 'synthetic', np.float32)
  tol, max_iter = 1e-4, 1000
  cs = np.logspace(-3, 1, 8)
  regs = 1 / (2 * cs * n)
  cfg = config.TrainConfig(loss='softmax', optimizer='lbfgs', tol=tol, epochs=max_iter, reg=float(regs[0]))
  arrays = datapath.make(cfg, ds, resident=True).arrays
  xt, yt = arrays['train']
  hp = step.hparams(cfg)
  p0 = jax.tree.map(lambda a: a * 0, step.init_state(cfg, d, 10, hp, 1)[0])
  out = {}

  def warm():
    out['warm'] = paths.fit_path(cfg, ds, regs, tol=tol, max_iter=max_iter, method='warm')

  def batched():
    out['batched'] = paths.fit_path(cfg, ds, regs, tol=tol, max_iter=max_iter, method='batched')

  def sequential():
    out['sequential'] = [
      jax.block_until_ready(
        solvers.solve(
          dataclasses.replace(cfg, reg=float(r)), p0, xt, yt, hp._replace(reg=jnp.asarray(r, xt.dtype))
        )
      )
      for r in regs
    ]

  def naive_solve(r, x_, y_, p_):  # the data are arguments, shared by the vmap (in_axes None)
    f = solvers.objective_fn(cfg, x_, y_, hp._replace(reg=r))
    return solvers.minimize(f, p_, jnp.asarray(tol, x_.dtype), max_iter)

  naive_args = (jnp.asarray(regs, xt.dtype), xt, yt, p0)
  # Compiled ahead, not by an untimed call: at full size one run of it takes minutes.
  naive_fn = jax.jit(jax.vmap(naive_solve, in_axes=(0, None, None, None))).lower(*naive_args).compile()

  def naive():
    out['naive'] = jax.block_until_ready(naive_fn(*naive_args))

  def sklearn_cold():
    out['sklearn'] = [linear_model.LogisticRegression(C=c, tol=tol, max_iter=max_iter).fit(x, y) for c in cs]

  def sklearn_warm():
    clf = linear_model.LogisticRegression(tol=tol, max_iter=max_iter, warm_start=True)
    out['sklearn_warm'] = [
      (clf.set_params(C=c).fit(x, y).coef_.copy(), clf.intercept_.copy()) for c in cs
    ]  # strongest regularization first: each fit starts from the previous one

  fns = {
    'warm': warm,
    'batched': batched,
    'sequential': sequential,
    'sklearn': sklearn_cold,
    'sklearn_warm': sklearn_warm,
  }
  with _one_thread():
    times = _median_times(fns, repeats, ['warm', 'batched', 'sequential'])
    times |= _median_times({'naive_vmap': naive}, 1)  # once: at full size it is the slowest by far
  path = out['warm']
  f_ref = [_f(ds, 'softmax', r, m.coef_, m.intercept_) for r, m in zip(regs, out['sklearn'], strict=True)]

  def rel(p):  # objective of each model relative to scikit-learn's, at the same tolerance
    f = [
      _f(ds, 'softmax', r, np.asarray(p.params.W[k]), np.asarray(p.params.b[k])) for k, r in enumerate(regs)
    ]
    return [(a - b) / b for a, b in zip(f, f_ref, strict=True)]

  naive_state = out['naive'][1]
  return {
    'shape': f'{n}×{d}×10 float32',
    'regs': regs.tolist(),
    'tol': tol,
    'seconds': times,
    'speedup_vs_sklearn': times['sklearn'] / times['warm'],
    'speedup_vs_sklearn_warm': times['sklearn_warm'] / times['warm'],
    'speedup_vs_sequential': times['sequential'] / times['warm'],
    'batched_vs_warm': times['batched'] / times['warm'],
    'naive_vmap_vs_sequential': times['naive_vmap'] / times['sequential'],
    'warm_evaluations': path.fevals,
    'warm_iterations': path.iterations.tolist(),
    'batched_evaluations': out['batched'].fevals,
    'batched_iterations': out['batched'].iterations.tolist(),
    'sequential_evaluations': [int(i.fevals) for _, i in out['sequential']],
    'naive_evaluations_max': int(np.max(naive_state.fevals)),
    'max_relative_difference': float(max(abs(v) for v in rel(path))),
    'worst_gap_ours_minus_sklearn': float(max(rel(path))),
    'batched_max_relative_difference': float(max(abs(v) for v in rel(out['batched']))),
  }


def part_default_run(quick):
  """The default command-line run on a 70% training file with the other 30% as its test file."""
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel
  from sklearn import model_selection  # pylint: disable=import-outside-toplevel
  from sklearn import pipeline  # pylint: disable=import-outside-toplevel
  from sklearn import preprocessing  # pylint: disable=import-outside-toplevel

  from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel
  from linear_jax.data.build import from_arrays  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import config  # pylint: disable=import-outside-toplevel
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  rows = []
  for name in ('digits', 'breast_cancer'):
    d = getattr(datasets, f'load_{name}')()
    xtr, xte, ytr, yte = model_selection.train_test_split(d.data, d.target, test_size=0.3, random_state=0)
    raw = from_arrays(xtr, ytr, test=(xte, yte), name=name)
    ds = data.prepare(raw, name)  # the command line's defaults: 10% of the file for validation
    cfg = config.COMMAND_LINE  # the command line's defaults (experiments/train.py)
    t = time.perf_counter()
    result = train.fit(cfg, ds)
    seconds = time.perf_counter() - t
    ours = train.evaluate(cfg, ds, result.params)['test_accuracy']
    ref = pipeline.make_pipeline(
      preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=1000)
    )
    ref_acc = float(ref.fit(xtr, ytr).score(xte, yte))
    rows.append(
      {
        'dataset': name,
        'ours': ours,
        'sklearn': ref_acc,
        'points_behind': 100 * (ref_acc - ours),
        'epochs': len(result.history),
        'stop_reason': result.stop_reason,
        'seconds': seconds,
      }
    )
  return rows


def _in_one_thread(fn, *args):
  with _one_thread():
    return fn(*args)


def run(quick: bool) -> dict:
  """Every number of the section (see the module docstring); float64 is on only while it runs."""
  import os  # pylint: disable=import-outside-toplevel
  import platform  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel

  was = jax.config.jax_enable_x64
  jax.config.update('jax_enable_x64', True)  # f* in float64; the timed fits still run in float32
  try:
    repeats = 1 if quick else 3
    path_repeats = 1  # 8 scikit-learn fits of the full size take minutes
    results = {
      'machine': {
        'cpu': platform.processor() or platform.machine(),
        'cores': os.cpu_count(),
        'device': jax.devices()[0].device_kind,
        'jax': jax.__version__,
      },
      'quick': quick,
      'repeats': repeats,
      'equality': _in_one_thread(part_equality, quick),
      'single_fit': part_single_fit(quick, repeats),
      'path': part_path(quick, path_repeats),
      'default_run': part_default_run(quick),
    }
  finally:
    jax.config.update('jax_enable_x64', was)
  return results


def markdown(results) -> str:
  """The section as markdown: three tables and the ratios, naming the machine."""
  m = results['machine']
  out = [
    '### 8. Reaching the optimum',
    '',
    f'{m["cpu"]}, {m["cores"]} cores, {m["device"]}, jax {m["jax"]}; medians of {results["repeats"]} '
    'alternated runs' + (' (quick sizes)' if results['quick'] else '') + '.',
    '',
    '| dataset | loss | weights | scikit-learn | f* ours | f at scikit-learn | relative difference |',
    '|---|---|---|---|---|---|---|',
  ]
  for r in results['equality']:
    out.append(
      f'| {r["dataset"]} | {r["loss"]} | {r["weights"]} | {r["peer"]} | {r["f_ours"]:.10g} | '
      f'{r["f_sklearn"]:.10g} | {r["relative_difference"]:.1e} |'
    )
  s = results['single_fit']
  out += [
    '',
    f'One fit, {s["shape"]}, tol {s["tol"]:g} on the largest gradient entry: L-BFGS here '
    f'{s["seconds_ours"]:.2f} s ({s["iterations_ours"]} iterations, {s["fevals_ours"]} evaluations), '
    f"LogisticRegression(solver='lbfgs') {s['seconds_sklearn']:.2f} s with one thread "
    f'({s["seconds_sklearn_default_threads"]:.2f} s with its default threads; {s["iterations_sklearn"]} '
    f'iterations): **{s["speedup"]:.1f}×**; objectives differ by {s["relative_difference"]:.1e} (relative).',
    '',
  ]
  p = results['path']
  t = p['seconds']
  out += [
    f'Path of {len(p["regs"])} regs, {p["shape"]}, tol {p["tol"]:g}:',
    '',
    '| contender | seconds | ratio to the warm-started path |',
    '|---|---|---|',
  ]
  names = {
    'warm': "warm-started L-BFGS path (paths.py, method='warm'), one program",
    'batched': 'lock-step batched L-BFGS (paths.py), one program',
    'sequential': '8 L-BFGS fits one after another (optax)',
    'naive_vmap': 'vmap of optax L-BFGS over the 8 regs',
    'sklearn': '8 LogisticRegression fits',
    'sklearn_warm': '8 LogisticRegression fits, warm-started',
  }
  for k, name in names.items():
    out.append(f'| {name} | {t[k]:.2f} | {t[k] / t["warm"]:.1f}× |')
  out += [
    '',
    f'Largest objective difference to scikit-learn along the warm path: {p["max_relative_difference"]:.1e} '
    f'(relative), along the batched path {p.get("batched_max_relative_difference", float("nan")):.1e}. '
    f'Evaluations: warm-started {p["warm_evaluations"]} in all, batched '
    f'{p["batched_evaluations"]} (each of all 8), cold sequential {sum(p["sequential_evaluations"])} in '
    f'all; the naive vmap runs its zoom line search in lock-step, up to {p["naive_evaluations_max"]} '
    'evaluations of every model, and computes both sides of every batched branch.',
    '',
    '| default run, 70% file + 30% test file | test accuracy | LogisticRegression | points behind | epochs |',
    '|---|---|---|---|---|',
  ]
  for r in results['default_run']:
    out.append(
      f'| {r["dataset"]} | {100 * r["ours"]:.1f}% | {100 * r["sklearn"]:.1f}% | {r["points_behind"]:+.1f} | '
      f'{r["epochs"]} ({r["stop_reason"]}) |'
    )
  return '\n'.join(out) + '\n'


def main(argv):
  del argv
  import json  # pylint: disable=import-outside-toplevel

  from experiments import common  # pylint: disable=import-outside-toplevel

  common.quiet_logs()
  global FULL_SIZE  # noqa: PLW0603 - a command-line override of the module's default
  if flags.FLAGS.size:
    FULL_SIZE = tuple(int(v) for v in flags.FLAGS.size.split(','))
  results = run(flags.FLAGS.quick)
  if flags.FLAGS.json_out:
    with open(flags.FLAGS.json_out, 'w') as f:
      json.dump(results, f, indent=1)
  print(markdown(results))


if __name__ == '__main__':
  # Defined here, not at import, so experiments.benchmark can import this section beside its own flags.
  flags.DEFINE_bool('quick', False, 'Small sizes: a smoke test.')
  flags.DEFINE_string('size', None, 'N,D of the synthetic set instead of 50000,512 (e.g. 20000,256).')
  flags.DEFINE_string('json_out', None, 'Also write every number as JSON here.')
  app.run(main)
