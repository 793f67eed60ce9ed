r"""Optimizers against the optimum: f − f* per epoch and per second, one problem, one budget.

    python -m experiments.optimizers
    python -m experiments.optimizers --dataset=breast_cancer --loss=logistic --epochs=60

Trains sgd, momentum, nesterov and adam (constant learning rate), sgd under
every decaying schedule, full-batch gradient descent and L-BFGS on the same
problem for the same number of passes over the data, with f* from L-BFGS in
float64. Prints a table, and writes optimizers.json and optimizers.png
(f − f* against epochs and against seconds, log scale) to --workdir. The JSON's
"claims" measure two of the lecture's statements on this run: a constant
learning rate stalls at a noise floor that a decaying one goes below, and
mini-batches beat the full batch per epoch (and how they compare per second).
"""

import dataclasses
import json
import os
import sys

from absl import app
from absl import flags
import numpy as np

from . import common

common.define_objective_flags()
common.define_data_flags()
flags.DEFINE_integer(
  'epochs', 100, 'Budget: passes over the training data for every optimizer.', lower_bound=2
)
flags.DEFINE_integer('batch_size', 64, 'Mini-batch size of the stochastic optimizers.', lower_bound=1)
flags.DEFINE_float('learning_rate', 0.3, 'sgd learning rate (momentum methods use lr·(1 − 0.9), adam 0.01).')
flags.DEFINE_float('full_batch_lr', 0.5, 'Learning rate of full-batch gradient descent.')
flags.DEFINE_enum('dtype', 'float64', ('float32', 'float64'), 'Precision (float64 resolves f − f* to 1e-12).')
flags.DEFINE_string('workdir', 'workdir/optimizers', 'Where outputs go.')

FLAGS = flags.FLAGS
# A well-conditioned problem by default, so the budget reaches the regime where noise dominates.
FLAGS.set_default('reg', 1e-2)


def runs(budget, lr, batch, full_lr):
  """`{label: TrainConfig overrides}` of every contender."""
  decay = {'decay_epochs': budget / 5, 'decay_rate': 0.5}
  out = {
    'sgd': {'optimizer': 'sgd', 'learning_rate': lr},
    'momentum': {'optimizer': 'momentum', 'learning_rate': lr * 0.1},
    'nesterov': {'optimizer': 'nesterov', 'learning_rate': lr * 0.1},
    'adam': {'optimizer': 'adam', 'learning_rate': 0.01},
  }
  for schedule in ('step', 'exponential', 'inverse_time', 'cosine'):
    out[f'sgd {schedule}'] = {'optimizer': 'sgd', 'learning_rate': lr, 'schedule': schedule, **decay}
  out['full batch'] = {'optimizer': 'sgd', 'learning_rate': full_lr, 'batch_size': 0}
  out['lbfgs'] = {'optimizer': 'lbfgs', 'tol': 1e-12}
  return {k: {'batch_size': batch, **v} for k, v in out.items()}


def run_one(cfg, dataset, f_star):
  """`(epochs [T], seconds [T], gap [T], note)`: f − f* after each pass (L-BFGS: after each evaluation)."""
  from linear_jax import train  # pylint: disable=import-outside-toplevel

  try:
    train.fit(cfg, dataset)  # compiles: the timed run below measures only the work
    result = train.fit(cfg, dataset)
  except train.Diverged as e:
    return np.array([]), np.array([]), np.array([]), f'diverged: {e}'
  f = np.array([m['train_loss'] for m in result.history])
  if result.solver:  # L-BFGS: one pass over the data per evaluation of f and ∇f
    epochs = np.array([m['fevals'] for m in result.history], float)
    seconds = result.solver['seconds'] * epochs / max(result.solver['fevals'], 1)
    keep = epochs <= cfg.epochs
    return epochs[keep], seconds[keep], f[keep] - f_star, result.stop_reason
  seconds = np.cumsum([m['seconds'] for m in result.history])
  return np.arange(1, len(f) + 1, dtype=float), seconds, f - f_star, result.stop_reason


def claims(results, budget):
  """The lecture's statements, measured on `results` (`{label: (epochs, seconds, gap, note)}`)."""
  tail = max(2, budget // 4)
  const = results['sgd'][2]
  floor = float(np.median(const[-tail:]))  # where constant-lr sgd hovers at the end
  decaying = {k: float(v[2][-1]) for k, v in results.items() if k.startswith('sgd ') and len(v[2])}
  best_decay = min(decaying, key=decaying.get)
  full = results['full batch']
  mini = results['sgd']
  out = {
    'constant_lr_noise_floor': floor,
    'decaying_final': decaying,
    'best_decaying': best_decay,
    'decaying_goes_below_the_floor': decaying[best_decay] < floor,
    'gap_after_budget': {'mini-batch sgd': float(mini[2][-1]), 'full batch': float(full[2][-1])}
    if len(full[2])
    else None,
  }
  if len(full[2]):
    out['mini_batch_better_per_epoch'] = bool(mini[2][-1] < full[2][-1])
    target = float(full[2][-1])  # full batch's final gap: how long does each take to reach it?
    reach = lambda r: float(r[1][np.argmax(r[2] <= target)]) if (r[2] <= target).any() else None
    out['seconds_to_full_batch_final_gap'] = {'mini-batch sgd': reach(mini), 'full batch': reach(full)}
    out['seconds_per_epoch'] = {
      'mini-batch sgd': float(mini[1][-1] / len(mini[1])),
      'full batch': float(full[1][-1] / len(full[1])),
    }
  return out


def run(workdir):
  from linear_jax import plots  # pylint: disable=import-outside-toplevel
  from linear_jax import solvers  # pylint: disable=import-outside-toplevel
  from linear_jax import train  # pylint: disable=import-outside-toplevel

  dataset = common.load_dataset(FLAGS)
  base = train.TrainConfig(
    loss=FLAGS.loss,
    loss_hparams=common.loss_hparams_for(FLAGS, FLAGS.loss),
    penalty=FLAGS.penalty,
    reg=FLAGS.reg,
    seed=FLAGS.seed,
  )
  base = dataclasses.replace(base, dtype=FLAGS.dtype, epochs=FLAGS.epochs, tol_on='none')
  f_star, _, info = solvers.optimum(base, dataset)
  results, rows = {}, []
  for label, overrides in runs(
    FLAGS.epochs, FLAGS.learning_rate, FLAGS.batch_size, FLAGS.full_batch_lr
  ).items():
    cfg = dataclasses.replace(base, **overrides)
    results[label] = run_one(cfg, dataset, f_star)
    epochs, seconds, gap, note = results[label]
    rows.append(
      {
        'optimizer': label,
        'learning_rate': overrides.get('learning_rate'),
        'final_gap': float(gap[-1]) if len(gap) else None,
        'best_gap': float(gap.min()) if len(gap) else None,
        'epochs': float(epochs[-1]) if len(epochs) else None,
        'seconds': float(seconds[-1]) if len(seconds) else None,
        'stop': note,
      }
    )
  out = {
    'dataset': dataset.name,
    'loss': FLAGS.loss,
    'reg': FLAGS.reg,
    'budget_epochs': FLAGS.epochs,
    'f_star': f_star,
    'f_star_grad_norm': float(info.grad_norm),
    'rows': rows,
    'claims': claims(results, FLAGS.epochs),
    'versions': common.versions(),
  }
  with open(os.path.join(workdir, 'optimizers.json'), 'w') as f:
    json.dump(out, f, indent=1, allow_nan=False)
  plots.optimality_gap(
    {k: v[:3] for k, v in results.items() if len(v[2])},
    os.path.join(workdir, 'optimizers.png'),
    f'f − f* on {dataset.name} ({FLAGS.loss}, reg={FLAGS.reg:g}); f* = {f_star:.6g}',
  )
  return out


def table(out):
  lines = [
    '| optimizer | lr | f − f* after budget | best f − f* | epochs | seconds |',
    '|---|---|---|---|---|---|',
  ]
  for r in out['rows']:
    fmt = lambda v, spec: '—' if v is None else format(v, spec)
    lines.append(
      f'| {r["optimizer"]} | {fmt(r["learning_rate"], "g")} | {fmt(r["final_gap"], ".3g")} | '
      f'{fmt(r["best_gap"], ".3g")} | {fmt(r["epochs"], "g")} | {fmt(r["seconds"], ".3f")} |'
    )
  return '\n'.join(lines)


def main(argv):
  del argv
  common.start(FLAGS)
  import jax  # pylint: disable=import-outside-toplevel

  jax.config.update('jax_enable_x64', True)  # f* in float64
  workdir = common.prepare_workdir(FLAGS.workdir)
  try:
    out = run(workdir)
  except ValueError as e:
    sys.exit(f'Error: {e}')
  print(table(out))
  c = out['claims']
  print(
    f'constant-lr sgd noise floor {c["constant_lr_noise_floor"]:.3g}; best decaying ({c["best_decaying"]}) '
    f'ends at {c["decaying_final"][c["best_decaying"]]:.3g}; '
    f'below the floor: {c["decaying_goes_below_the_floor"]}'
  )
  if 'mini_batch_better_per_epoch' in c:
    print(
      f'per epoch: mini-batch {c["gap_after_budget"]["mini-batch sgd"]:.3g} vs full batch '
      f'{c["gap_after_budget"]["full batch"]:.3g}; seconds per epoch {c["seconds_per_epoch"]}'
    )
  print(f'outputs in {workdir}')


if __name__ == '__main__':
  app.run(main)
