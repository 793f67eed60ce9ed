r"""The lecture as a report: every viewpoint and experiment, from real runs, in one HTML file.

    python -m experiments.report --workdir=workdir/report

Runs small versions of the experiments (training on digits with its class
templates, the geometric viewpoint, the gradient-check table, a learning-rate
sweep, search against gradient descent, the hard cases, loss surfaces with
descent paths, SVM against softmax, pixels against histogram features, f − f*
of each optimizer against the L-BFGS optimum) and
writes report.html (pictures embedded, so the file stands alone) and the PNGs
beside it. --tiny runs a smaller version for tests.
"""

import base64
import dataclasses
import html
import os
import time

from absl import app
from absl import flags
import numpy as np

from . import common

flags.DEFINE_string('workdir', 'workdir/report', 'Where report.html and the pictures go.')
flags.DEFINE_bool('tiny', False, 'Tiny sizes: a smoke test of the whole report.')
flags.DEFINE_integer('seed', 0, 'Seed of every random draw.')

FLAGS = flags.FLAGS


class Report:
  """Sections of pictures (each with two lines saying what it shows) and tables."""

  def __init__(self, workdir):
    self.workdir = workdir
    self.parts = []

  def section(self, title, text=''):
    self.parts.append(f'<h2>{html.escape(title)}</h2>')
    if text:
      self.parts.append(f'<p>{html.escape(text)}</p>')

  def picture(self, name, what, how_to_read):
    path = os.path.join(self.workdir, name)
    with open(path, 'rb') as f:
      data = base64.b64encode(f.read()).decode('ascii')
    self.parts.append(
      f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}" '
      f'data-file="{html.escape(name)}">'
      f'<figcaption>{html.escape(what)}<br>{html.escape(how_to_read)}</figcaption></figure>'
    )

  def table(self, header, rows):
    head = ''.join(f'<th>{html.escape(str(h))}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(f'<td>{html.escape(str(c))}</td>' for c in r) + '</tr>' for r in rows)
    self.parts.append(f'<table><tr>{head}</tr>{body}</table>')

  def write(self, title):
    style = (
      'body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}'
      'img{max-width:100%}figure{margin:1em 0}figcaption{color:#444;font-size:0.9em}'
      'table{border-collapse:collapse;margin:1em 0}'
      'td,th{border:1px solid #ccc;padding:3px 8px;font-size:0.9em}'
    )
    page = (
      f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
      f'<style>{style}</style></head><body><h1>{html.escape(title)}</h1>'
      + '\n'.join(self.parts)
      + '</body></html>'
    )
    path = os.path.join(self.workdir, 'report.html')
    with open(path, 'w') as f:
      f.write(page)
    return path


def _pct(v):
  return f'{100 * v:.1f}%'


def training_and_viewpoints(rep, tiny):
  from linear_jax import data  # pylint: disable=import-outside-toplevel
  from linear_jax import plots  # pylint: disable=import-outside-toplevel
  from linear_jax import train  # pylint: disable=import-outside-toplevel

  digits = data.prepare(data.load('digits'), 'digits', seed=FLAGS.seed)
  cfg = train.TrainConfig(epochs=5 if tiny else 30, seed=FLAGS.seed)
  result = train.fit(cfg, digits)
  metrics = train.evaluate(cfg, digits, result.params)
  rep.section(
    '1. Training a softmax classifier on digits (algebraic viewpoint: s = Wx + b)',
    f'30 epochs of mini-batch SGD reach test accuracy {_pct(metrics["test_accuracy"])}.',
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
  blobs = data.prepare(data.blobs(400, 2, 3, seed=FLAGS.seed), 'blobs', seed=FLAGS.seed)
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


def gradient_checks(rep, tiny):
  import jax  # pylint: disable=import-outside-toplevel

  from linear_jax import gradcheck  # pylint: disable=import-outside-toplevel
  from linear_jax import losses  # pylint: disable=import-outside-toplevel

  rows = []
  for loss in losses.LOSSES:
    for penalty in ('l2',) if tiny else losses.PENALTIES:
      params, x, y = gradcheck.random_problem(jax.random.PRNGKey(FLAGS.seed), loss, 20, 6, 4)
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


def sweep_section(rep, tiny):
  from linear_jax import data  # pylint: disable=import-outside-toplevel
  from linear_jax import plots  # pylint: disable=import-outside-toplevel
  from linear_jax import sweep  # pylint: disable=import-outside-toplevel
  from linear_jax import train  # pylint: disable=import-outside-toplevel

  digits = data.prepare(data.load('digits'), 'digits', seed=FLAGS.seed)
  lrs = list(np.logspace(-3, 1, 4 if tiny else 12))
  regs = [0.0, 1e-3, 1e-2]
  cfg = train.TrainConfig(epochs=3 if tiny else 15, seed=FLAGS.seed)
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


def search_section(rep, tiny):
  from linear_jax import data  # pylint: disable=import-outside-toplevel
  from linear_jax import plots  # pylint: disable=import-outside-toplevel
  from linear_jax import search  # pylint: disable=import-outside-toplevel
  from linear_jax import train  # pylint: disable=import-outside-toplevel

  budget = 300 if tiny else 4000
  cfg = train.TrainConfig(learning_rate=0.1, seed=FLAGS.seed)
  problems, rows = {}, []
  for name, ds in (
    ('2-D blobs', data.prepare(data.blobs(600, 2, 3, seed=FLAGS.seed), 'blobs')),
    ('digits', data.prepare(data.load('digits'), 'digits')),
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
    'With 9 weights every method gets there; with 650, random and genetic search stall while gradients win.',
  )
  rep.table(['problem', 'method', 'best train loss', 'val accuracy', 'evaluations', 'seconds'], rows)


def hard_cases_section(rep, tiny):
  from linear_jax import hard_cases  # pylint: disable=import-outside-toplevel
  from linear_jax import plots  # pylint: disable=import-outside-toplevel

  rows = []
  rep.section('5. Hard cases for a linear classifier, and feature maps that solve them')
  for case in hard_cases.CASES:
    accs = {}
    for features in (False, True):
      out = hard_cases.fit_case(case, 300 if tiny else 1000, FLAGS.seed, features, 20 if tiny else 100, 80)
      tag = 'feature_map' if features else 'linear'
      accs[tag] = out['accuracy']
      plots.hard_case(
        out['x'],
        out['y'],
        out['grid_scores'],
        out['extent'],
        os.path.join(rep.workdir, f'{case}_{tag}.png'),
        f'{case}, {"feature map" if features else "linear"}: {_pct(out["accuracy"])}',
      )
    rows.append([case, _pct(out['majority']), _pct(accs['linear']), _pct(accs['feature_map'])])
    rep.picture(
      f'{case}_linear.png',
      f'{case}: the data and the best line a linear classifier finds.',
      'Its accuracy stays near the majority-class rate: no line separates these classes.',
    )
    rep.picture(
      f'{case}_feature_map.png',
      f'{case}: the same classifier on a feature map chosen for the case.',
      'Linear in the features, the boundary is curved in the input, and the classes separate.',
    )
  rep.table(['case', 'majority rate', 'linear', 'feature map'], rows)


def descent_section(rep, tiny):
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from linear_jax import landscape  # pylint: disable=import-outside-toplevel
  from linear_jax import losses  # pylint: disable=import-outside-toplevel
  from linear_jax import plots  # pylint: disable=import-outside-toplevel

  x, y = landscape.two_weight_problem(200, FLAGS.seed)
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
    np.asarray(losses.multiclass_svm(s, labels)),
    np.asarray(losses.softmax_cross_entropy(s, labels)),
    os.path.join(rep.workdir, 'svm_vs_softmax.png'),
    margin_met_at=others.max() + 1,
  )
  rep.picture(
    'svm_vs_softmax.png',
    'SVM and softmax loss as the correct class score moves (other scores 1 and −0.5).',
    'The SVM loss hits 0 once every margin is met; softmax keeps asking for a larger score.',
  )


def features_section(rep, tiny):
  from linear_jax import data  # pylint: disable=import-outside-toplevel
  from linear_jax import train  # pylint: disable=import-outside-toplevel

  raw = data.load('digits')
  cfg = train.TrainConfig(epochs=5 if tiny else 40, learning_rate=0.5, seed=FLAGS.seed)
  rows = []
  for name, r in (
    ('raw pixels (64)', raw),
    ('intensity histogram (16 bins)', data.histogram_features(raw, 16)),
  ):
    ds = data.prepare(r, 'digits', seed=FLAGS.seed)
    acc = train.evaluate(cfg, ds, train.fit(cfg, ds).params)['test_accuracy']
    rows.append([name, _pct(acc)])
  rep.section(
    '7. Input representation: "Data: Image" against "Features: Histogram"',
    'The same softmax classifier on digits, trained on raw pixels or on a histogram of pixel intensities.',
  )
  rep.table(['representation', 'test accuracy'], rows)


def optimum_section(rep, tiny):
  """f − f* of SGD (constant and decaying rate), full-batch descent and L-BFGS on digits, in float64."""
  from linear_jax import data  # pylint: disable=import-outside-toplevel
  from linear_jax import plots  # pylint: disable=import-outside-toplevel
  from linear_jax import solvers  # pylint: disable=import-outside-toplevel
  from linear_jax import train  # pylint: disable=import-outside-toplevel

  ds = data.prepare(data.load('digits'), 'digits', seed=FLAGS.seed)
  budget = 8 if tiny else 60
  base = train.TrainConfig(reg=1e-2, dtype='float64', epochs=budget, tol_on='none', seed=FLAGS.seed)
  f_star = solvers.optimum(base, ds)[0]
  contenders = {
    'sgd, constant lr 0.3': {'learning_rate': 0.3},
    'sgd, inverse_time decay': {'learning_rate': 0.3, 'schedule': 'inverse_time', 'decay_epochs': budget / 5},
    'full-batch descent': {'learning_rate': 0.5, 'batch_size': 0},
    'L-BFGS': {'optimizer': 'lbfgs', 'tol': 1e-12},
  }
  curves, rows = {}, []
  for label, overrides in contenders.items():
    result = train.fit(dataclasses.replace(base, **overrides), ds)
    gap = np.array([m['train_loss'] for m in result.history]) - f_star
    if result.solver:  # one pass over the data per evaluation of f and ∇f
      epochs = np.array([m['fevals'] for m in result.history], float)
      seconds = result.solver['seconds'] * epochs / max(result.solver['fevals'], 1)
    else:
      epochs, seconds = (
        np.arange(1, len(gap) + 1, dtype=float),
        np.cumsum([m['seconds'] for m in result.history]),
      )
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
    'per pass; L-BFGS reaches f* to float64 precision in a few dozen passes.',
  )
  rep.table(['optimizer', 'final f − f*', 'best f − f*', 'passes'], rows)


def main(argv):
  del argv
  common.start(FLAGS)
  import jax  # pylint: disable=import-outside-toplevel

  jax.config.update('jax_enable_x64', True)  # for the gradient checks; training stays float32
  workdir = common.prepare_workdir(FLAGS.workdir)
  rep = Report(workdir)
  t = time.perf_counter()
  training_and_viewpoints(rep, FLAGS.tiny)
  ok = gradient_checks(rep, FLAGS.tiny)
  sweep_section(rep, FLAGS.tiny)
  search_section(rep, FLAGS.tiny)
  hard_cases_section(rep, FLAGS.tiny)
  descent_section(rep, FLAGS.tiny)
  features_section(rep, FLAGS.tiny)
  optimum_section(rep, FLAGS.tiny)
  path = rep.write('linear_jax: linear classifiers, loss functions and gradient descent')
  print(f'{path} written in {time.perf_counter() - t:.0f} s; gradient checks {"all pass" if ok else "FAIL"}')


if __name__ == '__main__':
  app.run(main)
