"""Optimizers against the optimum as one call: f − f* per epoch and per second, optimizers.json and .png.

The library half of `experiments/optimizers.py` (which keeps the flags, the
float64 switch, loading the dataset, the printing and the exit status):
`compare` trains every contender of `runs` on one problem for one budget of
passes over the data, measures f − f* against the L-BFGS optimum, and writes
optimizers.json (the rows and the `claims`) and optimizers.png; `table` and
`claims_text` say the result in text.
"""

from collections.abc import Mapping
import dataclasses
import os

import numpy as np

from linear_jax.data import datasets as data
from linear_jax.maths import losses
from linear_jax.optim import config as config_lib
from linear_jax.optim import results as results_lib
from linear_jax.runs import experiment
from linear_jax.runs import plots
from linear_jax.training import files
from linear_jax.training import lbfgs
from linear_jax.training import train

EXPLODE = 10.0  # a contender's loss above this many times its start: diverged

# `(epochs [T], seconds [T], gap [T], note)` of one contender: f − f* after each pass, why it stopped.
Curve = tuple[np.ndarray, np.ndarray, np.ndarray, str]


def runs(budget: int, lr: float, batch: int, full_lr: float) -> dict[str, dict]:
  """`{label: TrainConfig overrides}` of every contender.

  sgd, momentum and nesterov (at `lr · 0.1`) and adam (at 0.01) with a constant rate, sgd under every
  decaying schedule (decay every `budget / 5` epochs), full-batch descent at `full_lr` and L-BFGS; the
  stochastic ones with mini-batches of `batch`.
  """
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


def run_one(cfg: config_lib.TrainConfig, dataset: data.Dataset, f_star: float) -> Curve:
  """`(epochs [T], seconds [T], gap [T], note)`: f − f* after each pass (L-BFGS: after each evaluation)."""
  try:
    train.fit(cfg, dataset)  # compiles: the timed run below measures only the work
    result = train.fit(cfg, dataset)
  except results_lib.Diverged as e:
    return np.array([]), np.array([]), np.array([]), f'diverged: {e}'
  epochs, seconds, f = passes(result, cfg.epochs)
  return epochs, seconds, f - f_star, result.stop_reason


def passes(result, budget):
  """`(passes [T], seconds [T], f [T])` of a fit's history within `budget` passes over the data: an epoch
  is one pass, and each of L-BFGS's evaluations of f and ∇f is one (those past the budget left out)."""
  f = np.array([m['train_loss'] for m in result.history])
  if not result.solver:
    return np.arange(1, len(f) + 1, dtype=float), np.cumsum([m['seconds'] for m in result.history]), f
  epochs = np.array([m['fevals'] for m in result.history], float)
  seconds = result.solver['seconds'] * epochs / max(result.solver['fevals'], 1)
  keep = epochs <= budget
  return epochs[keep], seconds[keep], f[keep]


def claims(results: Mapping[str, Curve], budget: int) -> dict:
  """The lecture's statements, measured on `results` (`{label: (epochs, seconds, gap, note)}`).

  The floor of constant-rate sgd is the median gap of its last quarter of `budget`; a decaying schedule
  goes below it if its final gap is smaller. Mini-batch against full batch: the gap after the budget,
  the seconds each takes to reach full batch's final gap, and the seconds per epoch.
  """
  tail = max(2, budget // 4)
  const = results['sgd'][2]
  decaying = {k: float(v[2][-1]) for k, v in results.items() if k.startswith('sgd ') and len(v[2])}
  if not len(const) or not decaying:
    which = 'constant-rate sgd' if not len(const) else 'every decaying schedule of sgd'
    raise ValueError(f'{which} diverged, and the claims are measured on it: lower --learning_rate.')
  floor = float(np.median(const[-tail:]))  # where constant-lr sgd hovers at the end
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


def batch_note(batch_size: int, num_train: int) -> dict:
  """`{'note': ...}` when `batch_size` (0: the full batch) covers all `num_train` training rows: every
  stochastic contender then takes one full-batch step an epoch, and "mini-batch against full batch"
  compares two learning rates, not two methods. `{}` otherwise."""
  if 0 < batch_size < num_train:
    return {}
  return {
    'note': f'--batch_size={batch_size} covers all {num_train} training rows, so every "mini-batch" '
    'contender took full-batch steps: mini-batch against full batch compares two learning rates here '
    f'(a --batch_size below {num_train} compares the methods)'
  }


def compare(
  config: config_lib.TrainConfig,
  dataset: data.Dataset,
  workdir: str,
  learning_rate: float = 0.3,
  batch_size: int = 64,
  full_batch_lr: float = 0.5,
) -> dict:
  """Every contender of `runs` on `dataset` for `config.epochs` passes; writes optimizers.json and .png.

  Args:
    config: the objective (`loss`, `loss_hparams`, `penalty`, `reg`), `seed`, `dtype` (float64 resolves
      f − f* to 1e-12; it needs `jax_enable_x64`) and the budget `epochs`. Every contender runs the whole
      budget (`tol_on='none'`).
    dataset: a prepared `data.Dataset`.
    workdir: an existing folder for optimizers.json and optimizers.png.
    learning_rate: sgd's rate (momentum methods use `learning_rate · 0.1`, adam 0.01).
    batch_size: the mini-batch size of the stochastic optimizers.
    full_batch_lr: the rate of full-batch gradient descent.

  Returns:
    What optimizers.json holds: the dataset, loss, reg, budget, f*, the norm of ∇f at f*, one row per
    contender (final and best gap, epochs, seconds, why it stopped), the `claims` and the versions.
  """
  # A contender whose loss rises past EXPLODE times its start has diverged for the comparison (the
  # library's limit, 10⁴, let sgd hover at 10⁴ on diabetes, and claims were measured on it).
  base = dataclasses.replace(config, tol_on='none', explode_factor=EXPLODE)
  _check_smooth(base)
  f_star, _, info = lbfgs.optimum(base, dataset)
  results, rows = {}, []
  for label, overrides in runs(base.epochs, learning_rate, batch_size, full_batch_lr).items():
    results[label] = run_one(dataclasses.replace(base, **overrides), dataset, f_star)
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
    'loss': base.loss,
    'reg': base.reg,
    'budget_epochs': base.epochs,
    'f_star': f_star,
    'f_star_grad_norm': float(info.grad_norm),
    'rows': rows,
    'claims': {**claims(results, base.epochs), **batch_note(batch_size, len(dataset.y_train))},
    'versions': experiment.versions(),
  }
  files.write_json(os.path.join(workdir, 'optimizers.json'), out)
  plots.optimality_gap(
    {k: v[:3] for k, v in results.items() if len(v[2])},
    os.path.join(workdir, 'optimizers.png'),
    f'f − f* on {dataset.name} ({base.loss}, reg={base.reg:g}); f* = {f_star:.6g}',
  )
  return out


def _check_smooth(cfg):
  """Raises a `ValueError` for an objective f* cannot be solved for: there is no comparison without it
  (the solver's own advice, to drop the reference, is not this command's to follow)."""
  spec = losses.get_loss(cfg.loss)
  if spec.smooth and (cfg.penalty == 'l2' or cfg.reg == 0):
    return
  if not spec.smooth:
    smooth = ', '.join(sorted(n for n, s in losses.LOSSES.items() if s.smooth))
    why, use = f'--loss={cfg.loss} is not differentiable at its kinks', f'a smooth loss ({smooth})'
  else:
    why, use = f'--penalty={cfg.penalty} is not differentiable at W = 0', '--penalty=l2, or --reg=0'
  raise ValueError(
    f'optimizers measures every contender by f − f*, and f* is an L-BFGS solve, which needs a smooth '
    f'objective: {why}. Use {use}.'
  )


def table(out: Mapping) -> str:
  """The rows of `compare`'s result as a Markdown table; `—` where a contender diverged."""
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


def claims_text(out: Mapping) -> str:
  """The claims of `compare`'s result in one or two lines."""
  c = out['claims']
  lines = [
    f'constant-lr sgd noise floor {c["constant_lr_noise_floor"]:.3g}; best decaying ({c["best_decaying"]}) '
    f'ends at {c["decaying_final"][c["best_decaying"]]:.3g}; '
    f'below the floor: {c["decaying_goes_below_the_floor"]}'
  ]
  if c['gap_after_budget'] is None:
    lines.append('full batch diverged (lower --full_batch_lr): no per-epoch comparison with it')
  if 'mini_batch_better_per_epoch' in c:
    lines.append(
      f'per epoch: mini-batch {c["gap_after_budget"]["mini-batch sgd"]:.3g} vs full batch '
      f'{c["gap_after_budget"]["full batch"]:.3g}; seconds per epoch {c["seconds_per_epoch"]}'
    )
  if 'note' in c:
    lines.append(f'note: {c["note"]}')
  return '\n'.join(lines)
