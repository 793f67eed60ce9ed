"""Refit: train again on train + validation with the setting chosen on validation (scikit-learn's refit)."""

import dataclasses

import numpy as np

from linear_jax.optim import convergence


def check_refit(dataset):
  """Raises a `ValueError` unless `dataset` has a validation split to choose the setting on."""
  if len(dataset.x_val) == 0:
    raise ValueError(
      '--refit needs a validation split to choose the epoch count (or setting) on, and there is none: give '
      'a --val_fraction > 0 that holds one row at least.'
    )


def train_plus_val(dataset):
  """`dataset` with its validation split appended to the training split and the validation split empty.

  The preprocessing stays the one fitted on the training split, so the saved
  parameters map raw inputs the same way. Sample weights (`w_train`,
  `w_val`), where the dataset has them, are joined the same way.
  """
  changes = {
    'x_train': np.concatenate([dataset.x_train, dataset.x_val]),
    'y_train': np.concatenate([dataset.y_train, dataset.y_val]),
    'x_val': dataset.x_val[:0],
    'y_val': dataset.y_val[:0],
  }
  w_train, w_val = getattr(dataset, 'w_train', None), getattr(dataset, 'w_val', None)
  if w_train is not None or w_val is not None:
    ones = lambda n: np.ones(n, np.float64)
    changes['w_train'] = np.concatenate(
      [
        ones(len(dataset.x_train)) if w_train is None else w_train,
        ones(len(dataset.x_val)) if w_val is None else w_val,
      ]
    )
    changes['w_val'] = None
  return dataclasses.replace(dataset, **changes)


def refit(cfg, dataset, result):
  """Trains `cfg` again on train + validation for the epochs `result` chose on validation.

  Args:
    cfg: the `TrainConfig` of the first run.
    dataset: its `data.Dataset` (with a validation split).
    result: the first run's `FitResult`: its `best_epoch` (best validation
      metric) is the epoch count; L-BFGS runs again to the same `tol`.

  Returns:
    `(FitResult, record)`: the refitted run and a JSON-ready description of it
    for summary.json.
  """
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  check_refit(dataset)
  merged = train_plus_val(dataset)
  if cfg.optimizer == 'lbfgs':
    again = dataclasses.replace(cfg, patience=0)  # train + validation has no validation to stop on
    what = {'setting': 'the same L-BFGS solve (tol, max iterations) on train + validation'}
  else:
    epochs = max(1, int(result.best_epoch))
    again = dataclasses.replace(cfg, epochs=epochs, tol_on='none', patience=0)
    what = {'epochs': epochs, 'chosen_by': 'best validation metric of the first run'}
  out = train.fit(again, merged)
  record = {
    **what,
    'train_examples': len(merged.x_train),
    'stop_reason': out.stop_reason,
    'final': train.evaluate(again, merged, out.params),
  }
  if out.learning_rate_info:  # 'auto': derived on train + validation, as the first run derived its own
    record['learning_rate_found'] = out.learning_rate_info
  return out, record


def refit_path(cfg, dataset, path, tol=None, max_iter=None):
  """Fits the reg that `path` chose on validation again, on train + validation (L-BFGS to the same `tol`).

  Args:
    cfg: the `TrainConfig` of the path (smooth loss; its `reg` is replaced).
    dataset: the path's `data.Dataset` (with a validation split).
    path: its `paths.PathResult`; `path.best_index()` picks the reg.
    tol, max_iter: as given to `paths.fit_path` (defaults the same).

  Returns:
    `(FitResult, record)`: the refitted model and a JSON-ready description.
  """
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  check_refit(dataset)
  reg = float(path.regs[path.best_index()])
  again = dataclasses.replace(cfg, optimizer='lbfgs', reg=reg, patience=0)  # nothing left to stop on
  again = dataclasses.replace(
    again,
    tol=convergence.tol(again) if tol is None else tol,
    epochs=cfg.epochs if max_iter is None else max_iter,
  )
  merged = train_plus_val(dataset)
  out = train.fit(again, merged)
  record = {
    'reg': reg,
    'chosen_by': 'best validation metric of the path',
    'train_examples': len(merged.x_train),
    'stop_reason': out.stop_reason,
    'final': train.evaluate(again, merged, out.params),
  }
  return out, record
