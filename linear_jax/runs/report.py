"""The lecture as a report: every viewpoint and experiment, from real runs, in one HTML file.

The library half of `experiments/report.py` (which keeps the flags, the
float64 switch and the printing): `build` runs small versions of the
experiments, one section function each (training on digits with its class
templates, the geometric viewpoint, the gradient-check table, a learning-rate
sweep, search against gradient descent, the hard cases, loss surfaces with
descent paths, SVM against softmax, pixels against histogram features, f − f*
of each optimizer against the L-BFGS optimum), and writes report.html
(pictures embedded, so the file stands alone) with the PNGs beside it. Each
section function takes the `report_page.Report` it adds to, `tiny` (smaller
sizes, for tests) and the seed of every random draw.
"""

from collections.abc import Callable
import dataclasses
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.data import datasets as data
from linear_jax.data.features import histogram_features
from linear_jax.maths import classification
from linear_jax.maths import gradcheck
from linear_jax.maths import losses
from linear_jax.optim import config
from linear_jax.runs import hard_cases
from linear_jax.runs import landscape
from linear_jax.runs import optimizers_run
from linear_jax.runs import plots
from linear_jax.runs import report_page
from linear_jax.training import lbfgs
from linear_jax.training import preemption
from linear_jax.training import train
from linear_jax.tuning import search
from linear_jax.tuning import sweep

TITLE = 'linear_jax: linear classifiers, loss functions and gradient descent'


# The live page of the same library: `linear-jax demo` serves it on this address by default.
DEMO_LINK = (
  '<p>To move the model, the data and the loss by hand, run <code>linear-jax demo</code> and open '
  '<a href="http://127.0.0.1:8000/">http://127.0.0.1:8000/</a>: the lecture you can touch, computed by '
  'this library.</p>'
)


def _pct(v: float) -> str:
  return f'{100 * v:.1f}%'


def training_and_viewpoints(rep: report_page.Report, tiny: bool, seed: int) -> dict[str, float]:
  """Section 1: softmax on digits (curves, class templates) and the regions of 2-D blobs; the test metrics."""
  digits = data.prepare(data.load('digits'), 'digits', seed=seed)
  cfg = config.TrainConfig(epochs=5 if tiny else 30, seed=seed)
  result = train.fit(cfg, digits)
  metrics = train.evaluate(cfg, digits, result.params)
  rep.section(
    '1. Training a softmax classifier on digits (algebraic viewpoint: s = Wx + b)',
    f'{cfg.epochs} epochs of mini-batch SGD reach test accuracy {_pct(metrics["test_accuracy"])}.',
  )
  plots.curves(result.history, os.path.join(rep.workdir, 'curves.png'), 'softmax on digits')
  rep.picture(
    'curves.png',
    'Training and validation loss (log scale) and accuracy per epoch.',
    'The gap between the curves is the generalization gap; both losses still fall at the end.',
  )
  plots.templates(
    np.asarray(result.params.W), (8, 8), os.path.join(rep.workdir, 'templates.png'), digits.class_names
  )
  rep.picture(
    'templates.png',
    'Visual viewpoint: each row of W reshaped to 8×8, one template per class.',
    'Red pixels raise the class score, blue ones lower it: the 0 template is a ring, the 1 a stroke.',
  )
  blobs = data.prepare(data.blobs(400, 2, 3, seed=seed), 'blobs', seed=seed)
  res2 = train.fit(dataclasses.replace(cfg, epochs=20), blobs)
  w, b = train.raw_params(res2.params, blobs)
  plots.decision_regions(
    w, b, blobs.shift + blobs.scale * blobs.x_train, blobs.y_train, os.path.join(rep.workdir, 'regions.png')
  )
  rep.picture(
    'regions.png',
    'Geometric viewpoint: three classes in 2-D, the regions where each score is largest.',
    'Dashed lines are the hyperplanes w_c·x + b_c = 0 of each class; boundaries are where two scores tie.',
  )
  return metrics


def gradient_checks(rep: report_page.Report, tiny: bool, seed: int) -> bool:
  """Section 2: every loss (× every penalty unless `tiny`) checked three ways; whether all pass."""
  rows = []
  for loss in losses.LOSSES:
    for penalty in ('l2',) if tiny else losses.PENALTIES:
      params, x, y = gradcheck.random_problem(jax.random.PRNGKey(seed), loss, 20, 6, 4)
      r = gradcheck.check_gradients(params, x, y, loss=loss, reg=0.1, penalty=penalty, method='central')
      c = r.comparisons
      rows.append(
        [
          loss,
          penalty,
          f'{c[0].max_rel_error:.1e}',
          f'{c[1].max_rel_error:.1e}',
          f'{c[2].max_rel_error:.1e}',
          'OK' if r.passed else 'FAIL',
        ]
      )
  rep.section(
    '2. Hand-derived gradients checked three ways (float64, central differences)',
    'Maximum relative error of each pair over every coordinate; thresholds are in the README.',
  )
  rep.table(
    ['loss', 'penalty', 'analytic vs autodiff', 'analytic vs numerical', 'autodiff vs numerical', 'verdict'],
    rows,
  )
  return all(r[-1] == 'OK' for r in rows)


def sweep_section(rep: report_page.Report, tiny: bool, seed: int) -> None:
  """Section 3: a learning-rate × reg grid on digits trained as one program."""
  digits = data.prepare(data.load('digits'), 'digits', seed=seed)
  lrs = list(np.logspace(-3, 1, 4 if tiny else 12))
  regs = [0.0, 1e-3, 1e-2]
  cfg = config.TrainConfig(epochs=3 if tiny else 15, seed=seed)
  result = sweep.run_sweep(cfg, digits, sweep.grid(lrs, regs))
  shape = (len(lrs), len(regs))
  plots.sweep_heatmap(
    lrs,
    regs,
    result.best['val_accuracy'].reshape(shape).T,
    os.path.join(rep.workdir, 'sweep_heatmap.png'),
    'validation accuracy',
  )
  plots.loss_vs_lr(
    lrs, regs, result.final['train_loss'].reshape(shape).T, os.path.join(rep.workdir, 'loss_vs_lr.png')
  )
  b = result.best_index()
  rep.section(
    f'3. A learning-rate × reg sweep: {len(lrs) * len(regs)} models trained as one program',
    f'Best: learning rate {result.settings[b]["learning_rate"]:.3g}, reg {result.settings[b]["reg"]:g}, '
    f'validation accuracy {_pct(result.best["val_accuracy"][b])} ({result.seconds:.2f} s for all).',
  )
  rep.picture(
    'sweep_heatmap.png',
    'Validation accuracy over log learning rate × reg (× marks a diverged model).',
    'Too small a rate crawls (left), a large reg pulls the weights to 0 (top); the bright band is best.',
  )
  rep.picture(
    'loss_vs_lr.png',
    'Final training loss against the learning rate, one line per reg.',
    'The loss falls as the rate grows until steps overshoot; a gap would be a run that diverged.',
  )


def search_section(rep: report_page.Report, tiny: bool, seed: int) -> None:
  """Section 4: random, local and genetic search against gradient descent on one budget."""
  budget = 300 if tiny else 4000
  cfg = config.TrainConfig(learning_rate=0.1, seed=seed)
  problems, rows = {}, []
  for name, ds in (
    ('2-D blobs', data.prepare(data.blobs(600, 2, 3, seed=seed), 'blobs', seed=seed)),
    ('digits', data.prepare(data.load('digits'), 'digits', seed=seed)),
  ):
    r, curves = search.compare(cfg, ds, budget, population=20 if tiny else 50, name=name)
    problems[f'{name} ({ds.num_features * ds.num_classes + ds.num_classes} weights)'] = curves
    rows += [
      [
        x['problem'],
        x['method'],
        f'{x["best_train_loss"]:.4f}',
        _pct(x['val_metric']),
        x['evaluations'],
        f'{x["seconds"]:.2f}',
      ]
      for x in r
    ]
  plots.search_curves(problems, os.path.join(rep.workdir, 'search.png'))
  rep.section(
    f'4. Learning is search: {budget} loss evaluations for every method',
    'A gradient counts as 2 evaluations (two passes over the data).',
  )
  rep.picture(
    'search.png',
    'Best training loss found against loss evaluations spent, per method.',
    'With 9 weights search finds usable models, behind gradient descent; with 650, random and genetic '
    'search stall while gradients go on.',
  )
  rep.table(['problem', 'method', 'best train loss', 'val accuracy', 'evaluations', 'seconds'], rows)


def hard_cases_section(rep: report_page.Report, tiny: bool, seed: int) -> None:
  """Section 5: each hard case, linear and with its feature map."""
  rows = []
  rep.section('5. Hard cases for a linear classifier, and feature maps that solve them')
  for case in hard_cases.CASES:
    accs, linear = {}, None
    for features in (False, True):
      out = hard_cases.fit_case(case, 300 if tiny else 1000, seed, features, 20 if tiny else 100, 80)
      tag = 'feature_map' if features else 'linear'
      accs[tag] = out['accuracy']
      linear = out if not features else linear
      plots.hard_case(
        out['x'],
        out['y'],
        out['grid_scores'],
        out['extent'],
        os.path.join(rep.workdir, f'{case}_{tag}.png'),
        f'{case}, {"feature map" if features else "linear"}: {_pct(out["accuracy"])}',
      )
    rows.append([case, _pct(out['majority']), _pct(accs['linear']), _pct(accs['feature_map'])])
    rep.picture(f'{case}_linear.png', *linear_caption(case, linear['grid_scores']))
    rep.picture(
      f'{case}_feature_map.png',
      f'{case}: the same classifier on a feature map chosen for the case.',
      'Linear in the features, the boundary is curved in the input, and the classes separate.',
    )
  rep.table(['case', 'majority rate', 'linear', 'feature map'], rows)


def linear_caption(case: str, grid_scores: np.ndarray) -> tuple[str, str]:
  """The caption of a hard case's linear panel: the line it shows, or why there is none to show.

  The best linear classifier of a ring puts every point in view in one class: its boundary
  `score = 0` lies outside the picture, and the panel shows no line.
  """
  positive = grid_scores >= 0
  if positive.all() or not positive.any():
    return (
      f'{case}: the data; the best linear classifier found puts every point in the picture in one class '
      f'({"1" if positive.all() else "0"}), so its line, score = 0, lies outside it.',
      'Its accuracy is the majority-class rate: no line separates these classes, so the best one '
      'gives up on the smaller class.',
    )
  return (
    f'{case}: the data and the best line a linear classifier finds.',
    'Its accuracy stays near the majority-class rate: no line separates these classes.',
  )


def descent_section(rep: report_page.Report, tiny: bool, seed: int) -> None:
  """Section 6: loss surfaces over two weights with descent paths, and SVM against softmax."""
  x, y = landscape.two_weight_problem(200, seed)
  w1 = np.linspace(-3, 5, 60 if tiny else 120)
  w2 = np.linspace(-3, 5, 60 if tiny else 120)
  start = np.array([-2.5, 4.0])
  steps = 30 if tiny else 60
  panels = {}
  for title, loss, rates in (
    ('SVM (hinge)', 'hinge', (0.05, 1.0, 15.0)),
    ('softmax (logistic)', 'logistic', (0.1, 4.0, 30.0)),
  ):
    z = landscape.surface(loss, x, y, w1, w2, reg=0.01)
    paths = {
      f'GD lr={r:g} ({k})': landscape.descent_path(loss, x, y, start, r, steps, reg=0.01)
      for r, k in zip(rates, ('too small', 'good', 'too large'), strict=True)
    }
    paths[f'SGD lr={rates[1]:g}, batch 8'] = landscape.descent_path(
      loss, x, y, start, rates[1], steps, 8, reg=0.01
    )
    panels[title] = (w1, w2, z, paths)
  plots.landscapes(panels, os.path.join(rep.workdir, 'landscapes.png'))
  rep.section('6. Gradient descent made visible on two weights')
  rep.picture(
    'landscapes.png',
    'Loss contours over (w₁, w₂) for the SVM and softmax losses, with descent paths.',
    'Too small a rate barely moves, a good one walks down, too large a one zig-zags; SGD is the noisy path.',
  )
  scores = np.linspace(-3, 6, 200)
  others = np.array([1.0, -0.5])
  s = jnp.asarray(np.column_stack([scores, np.tile(others, (200, 1))]))
  labels = np.zeros(200, np.int32)
  plots.svm_vs_softmax(
    scores,
    np.asarray(classification.multiclass_svm(s, labels)),
    np.asarray(classification.softmax_cross_entropy(s, labels)),
    os.path.join(rep.workdir, 'svm_vs_softmax.png'),
    margin_met_at=others.max() + 1,
  )
  rep.picture(
    'svm_vs_softmax.png',
    'SVM and softmax loss as the correct class score moves (other scores 1 and −0.5).',
    'The SVM loss hits 0 once every margin is met; softmax keeps asking for a larger score.',
  )


def features_section(rep: report_page.Report, tiny: bool, seed: int) -> None:
  """Section 7: softmax on raw pixels against an intensity histogram."""
  raw = data.load('digits')
  cfg = config.TrainConfig(epochs=5 if tiny else 40, learning_rate=0.5, seed=seed)
  rows = []
  for name, r in (
    ('raw pixels (64)', raw),
    ('intensity histogram (16 bins)', histogram_features(raw, 16)),
  ):
    ds = data.prepare(r, 'digits', seed=seed)
    acc = train.evaluate(cfg, ds, train.fit(cfg, ds).params)['test_accuracy']
    rows.append([name, _pct(acc)])
  rep.section(
    '7. Input representation: "Data: Image" against "Features: Histogram"',
    'The same softmax classifier on digits, trained on raw pixels or on a histogram of pixel intensities.',
  )
  rep.table(['representation', 'test accuracy'], rows)


def optimum_section(rep: report_page.Report, tiny: bool, seed: int) -> None:
  """f − f* of SGD (constant and decaying rate), full-batch descent and L-BFGS on digits, in float64."""
  ds = data.prepare(data.load('digits'), 'digits', seed=seed)
  budget = 8 if tiny else 60
  base = config.TrainConfig(reg=1e-2, dtype='float64', epochs=budget, tol_on='none', seed=seed)
  f_star = lbfgs.optimum(base, ds)[0]
  contenders = {
    'sgd, constant lr 0.3': {'learning_rate': 0.3},
    'sgd, inverse_time decay': {'learning_rate': 0.3, 'schedule': 'inverse_time', 'decay_epochs': budget / 5},
    'full-batch descent': {'learning_rate': 0.5, 'batch_size': 0},
    'L-BFGS': {'optimizer': 'lbfgs', 'tol': 1e-12},
  }
  curves, rows = {}, []
  for label, overrides in contenders.items():
    result = train.fit(dataclasses.replace(base, **overrides), ds)
    epochs, seconds, f = optimizers_run.passes(result, budget)  # L-BFGS too within the budget
    gap = f - f_star
    curves[label] = (epochs, seconds, gap)
    rows.append([label, f'{gap[-1]:.2e}', f'{gap.min():.2e}', f'{epochs[-1]:g}'])
  plots.optimality_gap(
    curves, os.path.join(rep.workdir, 'optimality_gap.png'), f'f − f* on digits; f* = {f_star:.6g}'
  )
  rep.section(
    '8. How far from the optimum',
    "The softmax objective on digits (reg 1e-2): f* from L-BFGS in float64, and each optimizer's f − f*.",
  )
  rep.picture(
    'optimality_gap.png',
    'f − f* against passes over the data (left) and seconds (right), log scale.',
    'A constant rate stalls at a noise floor that a decaying one goes below; full batch is smooth but slow '
    f'per pass; L-BFGS ends {curves["L-BFGS"][2][-1]:.2e} above f* after {curves["L-BFGS"][0][-1]:g} passes.',
  )
  rep.table(['optimizer', 'final f − f*', 'best f − f*', 'passes'], rows)


# The sections in order: what each does (the progress line says it) and the function that adds it.
SECTIONS = (
  ('softmax on the digits: curves, class templates, regions of 2-D blobs', training_and_viewpoints),
  ("every loss's hand-derived gradient checked three ways, in float64", gradient_checks),
  ('a learning-rate × reg sweep on digits, trained as one program', sweep_section),
  ('random, local and genetic search against gradient descent', search_section),
  ('the hard cases (parity, ring, three modes), linear and with a feature map', hard_cases_section),
  ('loss surfaces over two weights with descent paths; SVM against softmax', descent_section),
  ('raw pixels against an intensity histogram', features_section),
  ('f − f* of four optimizers against the L-BFGS optimum, in float64', optimum_section),
)
# Seconds the whole report takes on 2 free CPU cores (measured; a busy machine takes longer).
SECONDS = {False: 30, True: 15}


def header(workdir: str, tiny: bool = False) -> str:
  """What `build` is about to do, on which data and models, where it writes, and about how long it takes."""
  seconds = SECONDS[tiny]
  took = f'{seconds} s' if seconds < 120 else f'{round(seconds / 60)} minutes'
  return (
    f'report: {len(SECTIONS)} sections{" at tiny sizes (a smoke test)" if tiny else ""}, each training '
    'linear models (softmax, SVM, logistic) here on the 8×8 digits that ship with scikit-learn or on '
    f'random 2-D data; writes {os.path.join(workdir, "report.html")} and its pictures. About {took} on '
    '2 free CPU cores (longer on a busy machine); one line per section as it starts.'
  )


def progress_line(index: int, what: str, elapsed: float) -> str:
  """`[3/8] a learning-rate × reg sweep …  (12 s so far)`: the line of a section as it starts."""
  return f'[{index}/{len(SECTIONS)}] {what}  ({elapsed:.0f} s so far)'


class Built(NamedTuple):
  """What `build` made: the path of report.html, and whether every gradient check of section 2 passed."""

  path: str
  gradient_checks_passed: bool


def build(
  workdir: str, tiny: bool = False, seed: int = 0, progress: Callable[[str], None] | None = None
) -> Built:
  """Runs every section in order and writes `workdir`/report.html and its PNGs.

  Nothing is printed per epoch: every training run of the report is given no `on_epoch`.

  Args:
    workdir: an existing folder; report.html and every picture go there.
    tiny: smaller sizes (fewer epochs, examples and grid points): a smoke test of the whole report.
    seed: the seed of every random draw.
    progress: called with one line (`progress_line`) as each section starts.

  Returns:
    `Built(path, gradient_checks_passed)`. The gradient checks and the optimum section run in float64:
    the caller turns on `jax_enable_x64` first (training stays float32).

  Raises:
    Stopped: on SIGINT or SIGTERM, at the end of the section it came in (which stops early), before
      report.html is written.
  """
  if not jax.config.jax_enable_x64:
    raise ValueError('report.build needs float64: turn on jax_enable_x64 first.')
  check_outputs(workdir)
  rep = report_page.Report(workdir)
  rep.parts.append(DEMO_LINK)
  start, ok = time.perf_counter(), True
  # A signal stops the fits, sweeps and searches it reaches, and no report is written; a second stops at once.
  with preemption.handling(second='quit'):
    for i, (what, section) in enumerate(SECTIONS, 1):
      if progress:
        progress(progress_line(i, what, time.perf_counter() - start))
      try:
        out = section(rep, tiny, seed)
      except preemption.Stopped:
        out = None
      if preemption.requested():
        raise Stopped(f'{preemption.signal_name()} during section {i} of {len(SECTIONS)}: no report written.')
      if section is gradient_checks:
        ok = out
  return Built(rep.write(TITLE), ok)


def outputs():
  """The names of the files `build` writes: report.html and every picture."""
  cases = [f'{case}_{tag}.png' for case in hard_cases.CASES for tag in ('linear', 'feature_map')]
  pictures = ['curves', 'templates', 'regions', 'sweep_heatmap', 'loss_vs_lr', 'search', 'landscapes']
  return ['report.html', *(f'{p}.png' for p in pictures), *cases, 'svm_vs_softmax.png', 'optimality_gap.png']


def check_outputs(workdir):
  """Raises a `ValueError` naming an output of the report that is a folder in `workdir` (a link is
  replaced, as every output's is), before any section runs: the write failed after all the work."""
  for name in outputs():
    path = os.path.join(workdir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      raise ValueError(
        f'{path} is a folder, where the report writes {name}; move it or use another --workdir.'
      )


class Stopped(Exception):  # noqa: N818 - a stop, not an error
  """A stop signal came while the report was built: the section it reached stopped early, its numbers
  are no result, and report.html is not written."""
